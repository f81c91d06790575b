"""Offline compile check of the sampling Triton kernels for sm_90 (no GPU needed): compiles every
kernel variant with ``triton.compile`` and re-assembles its PTX with ptxas (``-v``) for the
register / spill report. Exit 0: all compiled; 1: a compile failed; 2: cannot check here.
Run with TRITON_INTERPRET unset: ``python -m tests.sampling_triton_sm90``."""
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    try:
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError as exc:
        print(f"no offline triton compile API: {exc}")
        return 2
    from rfkernels.sampling import triton as st

    f32, f64, i64, i32 = "*fp32", "*fp64", "*i64", "i32"
    B = st.BLOCK
    variants = [(st._cdf_kernel, dict(t_ptr=f32, w_ptr=f32, off_ptr=i64, cdf_ptr=f32, padding="fp32"), dict(BLOCK=B)),
                (st._knots_kernel, dict(t_ptr=f32, cdf_ptr=f32, off_ptr=i64, blur_ptr=f32, kx_ptr=f32, kp_ptr=f32,
                                        N_ITER=i32), dict(BLOCK=B)),
                (st._knot_cdf_kernel, dict(kx_ptr=f32, kp_ptr=f32, kf_ptr=f32, off_ptr=i64), dict(BLOCK=B))]
    inv = dict(t_ptr=f32, cdf_ptr=f32, kx_ptr=f32, kf_ptr=f32, kp_ptr=f32, off_ptr=i64, jit_ptr=f32, out_ptr=f32,
               n=i32, n_out=i32, N_ITER=i32)
    for jmode in range(3):
        for blur in (False, True):
            for edges in (False, True):
                variants.append((st._invert_kernel, inv, dict(JMODE=jmode, BLUR=blur, EDGES=edges, BLOCK=B)))
    # the JIT specializes integer arguments equal to 1 (n_samples=1, N_ITER=1) as constants
    one = {k: v for k, v in inv.items() if k not in ("n", "N_ITER")}
    variants.append((st._invert_kernel, one, dict(n=1, N_ITER=1, JMODE=1, BLUR=False, EDGES=True, BLOCK=B)))
    for blur in (False, True):
        variants.append((st._hist_prefix_kernel, dict(t_ptr=f32, w_ptr=f32, off_ptr=i64, cy_ptr=f64, g_ptr=f64),
                         dict(BLUR=blur, BLOCK=B)))
    outer = dict(t_ptr=f32, w_ptr=f32, off_ptr=i64, tp_ptr=f32, offp_ptr=i64, cy_ptr=f64)
    variants += [
        (st._outer_fwd_kernel, dict(**outer, loss_ptr=f32, eps="fp32", N_ITER=i32), dict(BLOCK=B)),
        (st._outer_scatter_kernel, dict(g_loss_ptr=f32, **outer, u_ptr=f64, eps="fp32", N_ITER=i32), dict(BLOCK=B)),
        (st._suffix_kernel, dict(offp_ptr=i64, u_ptr=f64, gwp_ptr=f32), dict(BLOCK=B)),
        (st._blurred_fwd_kernel, dict(t_ptr=f32, w_ptr=f32, off_ptr=i64, tp_ptr=f32, wp_ptr=f32, offp_ptr=i64,
                                      cy_ptr=f64, g_ptr=f64, blur_ptr=f32, loss_ptr=f32, dwp_ptr=f32, eps="fp32",
                                      N_ITER=i32), dict(BLOCK=B)),
    ]
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        ptxas = get_ptxas(90).path
    except Exception:
        ptxas = shutil.which("ptxas")
    failed = False
    for kern, sig, consts in variants:
        name = f"{kern.fn.__name__}{consts}"
        try:
            src = ASTSource(kern, {**sig, **{k: "constexpr" for k in consts}}, constexprs=consts)
            k = triton.compile(src, target=GPUTarget("cuda", 90, 32))
        except TypeError as exc:
            print(f"offline compile API differs: {exc}")
            return 2
        except Exception as exc:  # a real compile error
            print(f"FAILED {name}: {exc}")
            failed = True
            continue
        report = "(no ptxas)"
        if ptxas:
            with tempfile.TemporaryDirectory() as d:
                (Path(d) / "k.ptx").write_text(k.asm["ptx"])
                proc = subprocess.run([ptxas, "-arch=sm_90a", "-v", "k.ptx", "-o", "k.cubin"], cwd=d,
                                      capture_output=True, text=True)
            report = " ".join(re.findall(r"(\d+ bytes spill stores|Used \d+ registers)", proc.stderr)) \
                or proc.stderr.strip()[-200:]
        print(f"ok {name}: {report}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
