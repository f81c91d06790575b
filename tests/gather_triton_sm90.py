"""Offline compile check of the gather Triton kernels for sm_90 (no GPU needed): compiles every
(reduction, flag, block shape) variant with ``triton.compile`` and re-assembles its PTX with the
ptxas Triton uses (``-v``) for the register / spill report. Exit 0: all compiled with at most
MAX_SPILL_BYTES of spill stores (ptxas sometimes spills a word to keep 80 registers); 1: more;
2: cannot check here (skip).
Run with TRITON_INTERPRET unset: ``python -m tests.gather_triton_sm90``."""
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MAX_SPILL_BYTES = 32


def main() -> int:
    try:
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError as exc:
        print(f"no offline triton compile API: {exc}")
        return 2
    from rfkernels.gather import triton as gt

    ptr, i32 = "*fp32", "i32"
    fwd = dict(points_ptr=ptr, feat_ptr=ptr, cam_ptr=ptr, out_ptr=ptr, mask_ptr="*u8", camc_ptr=ptr, arg_ptr="*i32",
               N=i32, V=i32, C=i32, H=i32, W=i32, near_eps="fp32")
    bwd = dict(g_out_ptr=ptr, g_cam_ptr=ptr, points_ptr=ptr, feat_ptr=ptr, cam_ptr=ptr, out_ptr=ptr, mask_ptr="*u8",
               arg_ptr="*i32", g_feat_ptr=ptr, g_points_ptr=ptr, scale_ptr=ptr, N=i32, V=i32, C=i32, H=i32, W=i32, near_eps="fp32")
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        ptxas = get_ptxas(90).path
    except Exception:  # another triton layout: fall back to any ptxas on PATH
        ptxas = shutil.which("ptxas")
    failed = False
    for C in (1, 64, 150):
        block_n, block_c = gt._blocks(C)
        for reduce in range(4):
            for kern, sig, flags in ((gt._gather_fwd_kernel, fwd, dict(WRITE_CAM=True)),
                                     (gt._gather_bwd_kernel, bwd, dict(HAS_GCAM=True, NEED_GP=True, FIXED=False)),
                                     (gt._gather_bwd_kernel, {**bwd, "g_feat_ptr": "*i64"},
                                      dict(HAS_GCAM=True, NEED_GP=True, FIXED=True))):
                consts = dict(REDUCE=reduce, **flags, BLOCK_N=block_n, BLOCK_C=block_c)
                try:
                    src = ASTSource(kern, {**sig, **{k: "constexpr" for k in consts}}, constexprs=consts)
                    k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": gt.NUM_WARPS})
                except TypeError as exc:  # another triton's ASTSource signature
                    print(f"offline compile API differs: {exc}")
                    return 2
                report = "(no ptxas)"
                if ptxas:
                    with tempfile.TemporaryDirectory() as d:
                        (Path(d) / "k.ptx").write_text(k.asm["ptx"])
                        proc = subprocess.run([ptxas, "-arch=sm_90a", "-v", "k.ptx", "-o", "k.cubin"], cwd=d,
                                              capture_output=True, text=True)
                    report = " ".join(re.findall(r"(\d+ bytes spill stores|Used \d+ registers)", proc.stderr)) \
                        or proc.stderr.strip()[-200:]
                    spills = [int(x) for x in re.findall(r"(\d+) bytes spill stores", proc.stderr)]
                    failed |= not spills or max(spills) > MAX_SPILL_BYTES
                fixed = " fixed" if flags.get("FIXED") else ""
                print(f"{kern.__name__:<20} C={C:<4} reduce={reduce}{fixed} BLOCK={block_n}x{block_c}: {report}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
