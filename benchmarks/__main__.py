"""Run the benchmark suite: every family's cases, side by side, in one process.

Prints a table (op, size, mode, backend, ms, speedup vs the torch reference, ours / peer ratios,
throughput, achieved GB/s and % of the device-to-device copy bandwidth measured in the same run, peak
memory on CUDA, the H200 roofline prediction and, on a GPU, the fraction of it achieved) and writes
JSON with the device, versions and date. The cases are the ones ``pytest benchmarks/ --benchmark-only``
runs (``bench_<family>.cases``); each is checked against the torch reference before it is timed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path

import torch

from . import roofline
from .common import (
    ALL_OPS,
    FAMILIES,
    PEERS,
    SCALES,
    copy_bandwidth_gbs,
    family_cases,
    peak_memory_mb,
    select_families,
    time_fn,
)


def _env(device: torch.device) -> dict:
    import rfkernels

    info = rfkernels.info()
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu"),
        "cpu_threads": torch.get_num_threads(),
        "python": info["python"],
        "torch": info["torch"],
        "cuda": info["torch_cuda"],
        "triton": info["triton"],
        "xformers": info["xformers"],
        "diffusers": info["diffusers"],
        "triton_interpreter": os.environ.get("TRITON_INTERPRET") == "1",
    }


def run(families, scale: str, device: torch.device, reps: int | None = None, save=None) -> dict:
    """Time every case of ``families``; ``save(report)`` (if given) is called after each case, so a
    run cut short by a time limit leaves every finished row on disk. A case that raises is recorded
    with its error and the run goes on."""
    bandwidth = copy_bandwidth_gbs(device)
    report = {
        "env": _env(device),
        "copy_bandwidth_gb_per_s": bandwidth,
        "scale": scale,
        "roofline": roofline_constants(),
        "results": [],
    }
    rows = report["results"]
    for fam in families:
        for case in family_cases(fam, device, scale):
            row = {"op": case.op, "size": case.size, "mode": case.mode, "backend": case.backend}
            if case.traffic is not None:
                row.update(case.traffic.record())
            try:
                if case.check is not None:  # correctness gate: a mismatch is this row's error
                    row["max_abs_err_vs_reference"] = case.check()
                ms = time_fn(case.fn, device, max_reps=reps) if reps else time_fn(case.fn, device)
                row.update(
                    {
                        "ms": ms,
                        "bytes_moved": case.bytes_moved,
                        "items_per_s": case.items / (ms * 1e-3) if case.items else None,
                        "item_name": case.item_name,
                        "gb_per_s": case.bytes_moved / (ms * 1e-3) / 1e9 if case.bytes_moved else None,
                        "peak_mem_mb": peak_memory_mb(case.fn, device),
                        **case.extra,
                    }
                )
                row["pct_of_copy_bw"] = 100 * row["gb_per_s"] / bandwidth if row["gb_per_s"] else None
                row["pct_of_h200_limit"] = pct_of_limit(row, device)
                print(_fmt(row), flush=True)
            except Exception as exc:  # noqa: BLE001 - report it and time the rest
                row.update(ms=None, error=f"{type(exc).__name__}: {exc}")
                print(
                    f"{case.op:<22} {case.size:<48} {case.mode:<16} {case.backend:<13} ERROR {row['error']}", flush=True
                )
            rows.append(row)
            add_ratios(rows)
            if save:
                save(report)
    return report


def roofline_constants() -> dict:
    """The rates the predictions use (recorded with every report)."""
    return {
        "hbm_bytes_per_s": roofline.HBM_BYTES_PER_S,
        "l2_sectors_per_s": roofline.L2_SECTORS_PER_S,
        "l2_note": "yardstick: A100 whitepaper L2 read width (5120 B/clk) at the H200 boost clock (1.98 GHz)",
    }


def pct_of_limit(row: dict, device: torch.device) -> float | None:
    """100 x predicted H200 time / measured time, for a measurement on a GPU only (a CPU time is no
    H200 time); None without a prediction."""
    if device.type != "cuda" or not row.get("predicted_h200_ms") or not row.get("ms"):
        return None
    return 100 * row["predicted_h200_ms"] / row["ms"]


def add_ratios(rows: list[dict]) -> None:
    """speedup_vs_torch = torch ms / ms; for our backends, ours_over_<peer> = ms / peer ms (< 1: we are faster)."""
    key = lambda r: (r["op"], r["size"], r["mode"])  # noqa: E731
    ref = {key(r): r["ms"] for r in rows if r["backend"] == "torch" and r.get("ms")}
    peers = {(key(r), r["backend"]): r["ms"] for r in rows if r["backend"] in PEERS and r.get("ms")}
    for r in rows:
        base = ref.get(key(r))
        r["speedup_vs_torch"] = base / r["ms"] if base and r.get("ms") else None
        if r["backend"] not in PEERS and r.get("ms"):
            for (k, peer), ms in peers.items():
                if k == key(r):
                    r[f"ours_over_{peer}"] = r["ms"] / ms


def _fmt(r: dict) -> str:
    tp = f"{r['items_per_s'] / 1e6:9.2f} M{r['item_name']}/s" if r["items_per_s"] else " " * 18
    bw = (
        f"{r['bytes_moved'] / 1e6:9.2f} MB min {r['gb_per_s']:8.1f} GB/s ({r['pct_of_copy_bw']:5.1f}% of copy)"
        if r["gb_per_s"]
        else ""
    )
    mem = f" peak {r['peak_mem_mb']:.0f} MB" if r.get("peak_mem_mb") is not None else ""
    return (
        f"{r['op']:<22} {r['size']:<48} {r['mode']:<16} {r['backend']:<13} {r['ms']:9.3f} ms {tp} {bw}{mem}"
        f"{_fmt_roofline(r)}"
    )


def _fmt_roofline(r: dict) -> str:
    """`` H200 >= 12.3 us (HBM)`` and, measured on a GPU, `` 45.6% of limit``."""
    if not r.get("predicted_h200_ms"):
        return ""
    pct = f" {r['pct_of_h200_limit']:5.1f}% of limit" if r.get("pct_of_h200_limit") else ""
    return f" H200 >= {1e3 * r['predicted_h200_ms']:.3g} us ({r['bound']}){pct}"


def print_table(report: dict) -> None:
    print(
        f"\n# {report['env']['device']}  torch {report['env']['torch']}  triton {report['env']['triton']}  "
        f"copy bandwidth {report['copy_bandwidth_gb_per_s']:.1f} GB/s  {report['env']['date']}"
    )
    print(
        "# H200 roofline: HBM 4.8 TB/s; L2 gathers + atomics at a yardstick of "
        f"{roofline.L2_SECTORS_PER_S:.3g} 32-byte sectors/s (benchmarks/roofline.py); "
        "'% lim' = predicted / measured, on a GPU only"
    )
    print(
        f"{'op':<22} {'size':<48} {'mode':<16} {'backend':<13} {'ms':>9}    {'speedup':>8}  {'GB/s':>8} {'%bw':>6}"
        f"  {'B/item':>8} {'L2/item':>7} {'atom/it':>7} {'H200 us':>9} {'bound':>5} {'% lim':>6}  ours/peer"
    )
    for r in report["results"]:
        if r.get("error"):
            print(f"{r['op']:<22} {r['size']:<48} {r['mode']:<16} {r['backend']:<13} ERROR {r['error'][:80]}")
            continue
        sp = f"{r['speedup_vs_torch']:7.2f}x" if r["speedup_vs_torch"] else "       -"
        bw = f"{r['gb_per_s']:8.1f} {r['pct_of_copy_bw']:5.1f}%" if r["gb_per_s"] else " " * 15
        vs = " ".join(f"{k[len('ours_over_') :]} {v:.2f}" for k, v in r.items() if k.startswith("ours_over_"))
        print(
            f"{r['op']:<22} {r['size']:<48} {r['mode']:<16} {r['backend']:<13} {r['ms']:9.3f} ms {sp}  {bw}  "
            f"{_table_roofline(r)}  {vs}"
        )


def _table_roofline(r: dict) -> str:
    """The roofline columns of one table row (blank without a traffic model)."""
    if not r.get("predicted_h200_ms"):
        return " " * 48
    pct = f"{r['pct_of_h200_limit']:5.1f}%" if r.get("pct_of_h200_limit") else "     -"
    return (
        f"{r['bytes_per_item']:8.0f} {r['l2_gathers_per_item']:7.1f} {r['atomics_per_item']:7.1f} "
        f"{1e3 * r['predicted_h200_ms']:9.3g} {r['bound']:>5} {pct}"
    )


def _write_json(path: Path, report: dict) -> None:
    """Replace ``path`` atomically: a run killed mid-write leaves the previous complete file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="one size per op (scale 'one'; 'tiny' on CPU)")
    p.add_argument(
        "--scale",
        choices=SCALES,
        default=None,
        help="tiny (CPU default) | one (headline size per op) | all (GPU default)",
    )
    p.add_argument(
        "--only",
        default=",".join(FAMILIES),
        help=f"comma-separated families of {', '.join(FAMILIES)}; {ALL_OPS!r}: every op family",
    )
    p.add_argument(
        "--reps",
        type=int,
        default=None,
        help="CPU only: at most this many timed calls per case after one warm-up (dry runs: 1)",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/<device>-<date>.json)")
    args = p.parse_args(argv)
    try:
        families = select_families(args.only)
    except ValueError as exc:
        p.error(f"--only: {exc}")
    device = torch.device(args.device)
    scale = args.scale or ("tiny" if device.type == "cpu" else "one" if args.quick else "all")
    env = _env(device)
    out = (
        Path(args.out)
        if args.out
        else Path(__file__).parent
        / "results"
        / (f"{env['device'].replace(' ', '_')}-{env['date'][:10]}{'' if scale == 'all' else '-quick'}.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    report = run(families, scale, device, args.reps, save=lambda rep: _write_json(out, rep))
    print_table(report)
    _write_json(out, report)
    print(f"wrote {out}", file=sys.stderr)
    return 1 if any(r.get("error") for r in report["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
