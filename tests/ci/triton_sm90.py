"""Offline sm_90 compile check of every Triton kernel variant the test suite launches (no GPU needed).

The interpreter (``TRITON_INTERPRET=1``, how CI runs the Triton tests) does not enforce block shapes,
dtypes or masks; the real compiler does. So:

1. record: run the Triton tests in the interpreter with a hook on the interpreter's launch that
   notes each launch's kernel, argument types, constexpr values, launch options and which arguments
   a real launch specializes as divisible by 16 (aligned pointers, integers; deduplicated);
2. compile: in a fresh process (``TRITON_INTERPRET`` unset, so the kernels are real ``JITFunction``s)
   compile each variant with ``triton.compile`` for sm_90 and assemble its PTX with ``ptxas -v``
   for the register / spill report.

Usage: ``python -m tests.ci.triton_sm90 [--max-spill BYTES] [--json OUT] [--also-triton DIR] [pytest args]``
(``--also-triton``: compile the same variants with another triton, e.g. the GPU machines' 3.6).
Exit 0: all variants compiled (spills within ``--max-spill`` when given); 1: a compile failed or a
kernel spilled more; 2: cannot check here (no offline compile API).
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

RECORD_ENV = "RFKERNELS_TRITON_RECORD"
_TORCH_TYPES = {
    "float32": "fp32",
    "float16": "fp16",
    "bfloat16": "bf16",
    "float64": "fp64",
    "int64": "i64",
    "int32": "i32",
    "int16": "i16",
    "int8": "i8",
    "uint8": "u8",
    "bool": "i1",
}


# ------------------------------------------------------------------------------------------ record
def _arg_type(value) -> tuple[str, object]:
    """("type", None) for a runtime argument, or ("constexpr", value) where the JIT specializes it."""
    if value is None:
        return "constexpr", None
    if hasattr(value, "data_ptr") and hasattr(value, "dtype"):
        return "*" + _TORCH_TYPES[str(value.dtype).replace("torch.", "")], None
    if isinstance(value, bool):
        return "i1", None
    if isinstance(value, int):
        if value == 1:  # the JIT specializes integers equal to 1 as constants
            return "constexpr", 1
        return ("i32" if -(2**31) <= value < 2**31 else "i64"), None
    if isinstance(value, float):
        return "fp32", None
    raise TypeError(f"unsupported kernel argument {value!r}")


def _is_constexpr(param: inspect.Parameter) -> bool:
    return "constexpr" in str(param.annotation)


def _divisible_by_16(value) -> bool:
    """Whether a real launch specializes this argument as 16-divisible (a pointer 16-byte aligned, an
    integer a multiple of 16), by triton's own rule: the compiler then vectorizes and folds index math,
    so a compile without it reports other registers than the launch runs with."""
    from triton.backends.compiler import BaseBackend

    if hasattr(value, "data_ptr") and hasattr(value, "dtype"):
        return BaseBackend.get_tensor_specialization(value, align=True) == "D"
    if isinstance(value, int) and not isinstance(value, bool):
        return BaseBackend.get_int_specialization(value, align=True) == "D"
    return False


def install_recorder(path: str) -> None:
    """Hook the interpreter's launch; write the distinct variants to ``path`` at exit."""
    from triton.runtime.interpreter import InterpretedFunction

    seen: dict[str, dict] = {}
    run = InterpretedFunction.run

    def recording_run(self, *args, grid, warmup, **kwargs):
        spec, options = launch_variant(self, args, kwargs)
        seen.setdefault(json.dumps(spec, sort_keys=True, default=repr), spec)
        return run(self, *args, grid=grid, warmup=warmup, **kwargs, **options)

    InterpretedFunction.run = recording_run
    atexit.register(lambda: Path(path).write_text(json.dumps(list(seen.values()), indent=1, default=repr)))


def launch_variant(kernel, args: tuple, kwargs: dict) -> tuple[dict, dict]:
    """The compiled variant one launch of ``kernel`` (an interpreted ``triton.jit`` function) selects:
    ``(spec, options)``; ``kwargs`` loses the compile/launch options, returned as ``options``."""
    sig = inspect.signature(kernel.fn)
    # a keyword that is no parameter of the kernel is a compile/launch option (num_warps,
    # enable_fp_fusion, ...): triton.compile takes the same names in ``options``
    options = {k: kwargs.pop(k) for k in list(kwargs) if k not in sig.parameters}
    bound = sig.bind(*args, **kwargs)
    bound.apply_defaults()
    signature, constexprs, divisible = {}, {}, []
    # triton.jit(do_not_specialize=[...]): neither the 1-constant nor the 16-divisibility specialization
    plain = set(kernel.kwargs.get("do_not_specialize") or ())
    for name, value in bound.arguments.items():
        if _is_constexpr(sig.parameters[name]):
            signature[name], constexprs[name] = "constexpr", value
        elif name in plain and isinstance(value, int) and not isinstance(value, bool):
            signature[name] = "i32" if -(2**31) <= value < 2**31 else "i64"
        else:
            signature[name], const = _arg_type(value)
            if signature[name] == "constexpr":
                constexprs[name] = const
            elif _divisible_by_16(value):
                divisible.append(name)
    spec = {
        "module": kernel.fn.__module__,
        "kernel": kernel.fn.__name__,
        "signature": signature,
        "constexprs": constexprs,
        "divisible": divisible,
        "options": options,
    }
    return spec, options


if os.environ.get(RECORD_ENV):  # loaded as a pytest plugin (-p tests.ci.triton_sm90) by record()
    install_recorder(os.environ[RECORD_ENV])


def record(pytest_args: list[str], path: str) -> int:
    env = {**os.environ, RECORD_ENV: path, "TRITON_INTERPRET": "1"}
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "tests.ci.triton_sm90",
        "-m",
        "not slow",
        "-k",
        "triton",
        *pytest_args,
    ]
    return subprocess.run(cmd, env=env).returncode


def default_tests() -> list[str]:
    """The test file of every registered op family: tests/rfkernels/<family>/test_<family>.py."""
    import rfkernels  # noqa: F401 - registers every family (this process runs no kernel)
    from rfkernels import _dispatch

    return [f"tests/rfkernels/{f}/test_{f}.py" for f in _dispatch.families()]


# ----------------------------------------------------------------------------------------- compile
def _ptxas() -> str | None:
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        return get_ptxas(90).path
    except Exception:  # noqa: BLE001 - another triton layout: any ptxas on PATH
        return shutil.which("ptxas")


def variant_name(spec: dict) -> str:
    """``BLOCK=128, F=2, num_warps=4``: the variant's constexprs and launch options, in call order."""
    items = [*spec["constexprs"].items(), *spec["options"].items()]
    return ", ".join(f"{k}={v}" for k, v in items)


def compile_spec(spec: dict, ptxas: str | None) -> dict:
    """Compile one recorded variant for sm_90: its report row (``tests/ci/sm90_report.py``; without a
    ptxas the resource fields are None)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from tests.ci.sm90_parse import parse_ptx, parse_ptxas, summarize_atomics

    kernel = getattr(importlib.import_module(spec["module"]), spec["kernel"])
    divisible = spec.get("divisible", [])
    # the launch's specialization, as the JIT passes it: tt.divisibility 16 on each such argument
    attrs = {(kernel.arg_names.index(n),): [["tt.divisibility", 16]] for n in divisible}
    src = ASTSource(kernel, spec["signature"], constexprs=spec["constexprs"], attrs=attrs)
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=spec["options"])
    ptx = compiled.asm["ptx"]
    func = parse_ptx(ptx).get(compiled.metadata.name)
    row = {
        "backend": "triton",
        "compiler": f"triton {triton.__version__}",
        "family": spec["module"].split(".")[1],
        "source": spec["module"].replace(".", "/") + ".py",
        "kernel": spec["kernel"],
        "variant": variant_name(spec),
        # triton's notation: ``*fp32:16`` is a 16-byte aligned pointer, ``i32:16`` a multiple of 16
        "signature": ",".join(
            t + (":16" if n in divisible else "") for n, t in spec["signature"].items() if t != "constexpr"
        ),
        "threads": compiled.metadata.num_warps * 32,
        "smem": compiled.metadata.shared,
        "atomics": summarize_atomics(func.atomics) if func else {},
        "fences": dict(sorted(func.fences.items())) if func else {},
        **dict.fromkeys(("registers", "spill_stores", "spill_loads", "stack"), None),
    }
    if not ptxas:
        return row
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "k.ptx").write_text(ptx)
        proc = subprocess.run(
            [ptxas, "-arch=sm_90a", "-v", "k.ptx", "-o", "k.cubin"], cwd=d, capture_output=True, text=True
        )
    if proc.returncode:
        raise RuntimeError(f"ptxas failed: {proc.stderr.strip()[-300:]}")
    (res,) = [r for r in parse_ptxas(proc.stderr) if r.name == compiled.metadata.name]
    row.update(registers=res.registers, spill_stores=res.spill_stores, spill_loads=res.spill_loads, stack=res.stack)
    row["smem"] = max(row["smem"], res.smem)
    return row


def _summary(row: dict) -> str:
    if row["registers"] is None:
        return "compiled (no ptxas for a register report)"
    return (
        f"{row['registers']} registers, {row['spill_stores']} B spill stores, {row['spill_loads']} B spill loads, "
        f"{row['smem']} B smem, {row['threads']} threads" + "".join(f"; {n} x {k}" for k, n in row["atomics"].items())
    )


def compile_all(specs: list[dict], max_spill: int | None, rows_out: str | None = None) -> int:
    """Compile every variant; print one line each; write the report rows to ``rows_out`` (JSON) if given."""
    try:
        from triton.backends.compiler import GPUTarget  # noqa: F401
        from triton.compiler import ASTSource  # noqa: F401
    except ImportError as exc:
        print(f"cannot check here: no offline triton compile API ({exc})")
        return 2
    ptxas, failed, rows = _ptxas(), 0, []
    for spec in sorted(specs, key=lambda s: (s["module"], s["kernel"], json.dumps(s["constexprs"], default=repr))):
        name = f"{spec['module'].rsplit('.', 2)[-2]}.{spec['kernel']}({variant_name(spec)})"
        try:
            row = compile_spec(spec, ptxas)
        except Exception as exc:  # noqa: BLE001 - report every failing variant, not just the first
            failed += 1
            print(f"FAIL {name}: {type(exc).__name__}: {str(exc).strip()[:2000]}")
            continue
        rows.append(row)
        spill = None if row["registers"] is None else row["spill_stores"]
        over = max_spill is not None and spill is not None and spill > max_spill
        failed += over
        print(f"{'SPILL' if over else 'ok  '} {name}: {_summary(row)}")
    print(f"{len(specs)} kernel variants, {failed} failed")
    if rows_out:
        Path(rows_out).write_text(json.dumps(rows, indent=1))
    return 1 if failed else 0


def compile_in_fresh_process(
    specs: list[dict], max_spill: int | None, triton_dir: str | None, rows_out: str | None = None
) -> int:
    """Compile without TRITON_INTERPRET (kernels are real JITFunctions), optionally with another
    triton installed in ``triton_dir`` (e.g. ``pip install --target DIR triton==3.6.0``); the report
    rows go to ``rows_out`` (JSON) when given."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    if triton_dir:
        rest = [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []
        env["PYTHONPATH"] = os.pathsep.join([triton_dir, os.getcwd(), *rest])
    code = (
        "import sys, json, triton; from tests.ci.triton_sm90 import compile_all; "
        "print('== triton', triton.__version__, flush=True); "
        f"sys.exit(compile_all(json.loads(sys.stdin.read()), {max_spill!r}, {rows_out!r}))"
    )
    return subprocess.run([sys.executable, "-c", code], input=json.dumps(specs), text=True, env=env).returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-spill", type=int, default=None, help="fail a variant spilling more bytes")
    p.add_argument("--json", default=None, help="keep the recorded variants here")
    p.add_argument(
        "--also-triton",
        action="append",
        default=[],
        metavar="DIR",
        help="compile again with the triton installed in DIR (repeatable)",
    )
    p.add_argument("pytest_args", nargs="*", help="tests to record (default: every registered op family's)")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        path = a.json or os.path.join(d, "variants.json")
        rc = record(a.pytest_args or default_tests(), path)
        if rc not in (0, 5) or not os.path.exists(path):
            print(f"recording run failed (pytest exit {rc})")
            return 1
        specs = json.loads(Path(path).read_text())
    codes = [compile_in_fresh_process(specs, a.max_spill, t) for t in [None, *a.also_triton]]
    return 1 if 1 in codes else max(codes)


if __name__ == "__main__":
    sys.exit(main())
