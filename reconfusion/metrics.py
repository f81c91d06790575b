"""Image metrics: PSNR, SSIM (Gaussian window, Wang et al. 2004) and LPIPS from local weights only.

Images are ``[H, W, 3]`` float tensors in [0, 1].
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

LPIPS_ABSENT = "LPIPS not computed: no local weights given (pass --lpips-weights PATH; nothing is downloaded)"


def psnr(pred: torch.Tensor, gt: torch.Tensor) -> float:
    return psnr_from_mse((pred.float() - gt.float()).square().mean().item())


def psnr_from_mse(mse: float) -> float:
    """PSNR (dB) of images in [0, 1] with mean squared error ``mse``; ``inf`` for 0."""
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def _gaussian_taps(size: int, sigma: float, device) -> torch.Tensor:
    """The normalized 1-D Gaussian ``[size]`` (float64); the 2-D window is its outer product."""
    x = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2.0
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    pred: torch.Tensor, gt: torch.Tensor, window: int = 11, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03
) -> float:
    """Mean SSIM over channels and 'valid' window positions (11x11 Gaussian, sigma 1.5, L = 1),
    as in the reference implementation and mip-NeRF's ``compute_ssim``. The separable window runs
    as a column then a row pass over the five moments at once (float64)."""
    x = pred.double().permute(2, 0, 1)[None]
    y = gt.double().permute(2, 0, 1)[None]
    C = x.shape[1]
    if min(x.shape[-2:]) < window:
        raise ValueError(f"SSIM needs images of at least {window}x{window}, got {list(pred.shape[:2])}")
    g = _gaussian_taps(window, sigma, x.device)
    moments = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # [1, 5C, H, W]
    n = moments.shape[1]
    blurred = F.conv2d(
        F.conv2d(moments, g.view(1, 1, -1, 1).expand(n, 1, -1, 1), groups=n),
        g.view(1, 1, 1, -1).expand(n, 1, 1, -1),
        groups=n,
    )
    mx, my, exx, eyy, exy = blurred.split(C, dim=1)
    sxx = exx - mx * mx
    syy = eyy - my * my
    sxy = exy - mx * my
    c1, c2 = k1**2, k2**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean())


class LPIPS:
    """LPIPS from a local file: a TorchScript module ``f(x, y)`` on NCHW images in [-1, 1], or a
    full state dict of ``lpips.LPIPS(net=...)`` as ``.safetensors`` (needs the ``lpips`` package; its
    backbone is built without pretrained weights and everything is loaded from the file). A pickled
    state dict (``.pth``) is not loaded: convert it once with ``safetensors.torch.save_file``."""

    def __init__(self, path: str, net: str = "alex", device="cpu"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"LPIPS weights not found: {path}")
        self.device = device
        if not path.endswith(".safetensors"):
            try:
                self.model = torch.jit.load(path, map_location=device)
                return
            except (RuntimeError, ValueError) as exc:
                raise ValueError(
                    f"{path} is not a TorchScript module; give LPIPS weights as a TorchScript "
                    "module or an lpips.LPIPS state dict in .safetensors"
                ) from exc
        try:
            import lpips  # noqa: PLC0415
        except ImportError as exc:
            raise ValueError(f"{path}: loading an LPIPS state dict needs the `lpips` package") from exc
        from safetensors.torch import load_file

        model = lpips.LPIPS(net=net, pretrained=False, pnet_rand=True, verbose=False)
        model.load_state_dict(load_file(path))
        self.model = model.to(device).eval()

    @torch.no_grad()
    def __call__(self, pred: torch.Tensor, gt: torch.Tensor) -> float:
        to = lambda z: z.float().permute(2, 0, 1)[None].to(self.device) * 2.0 - 1.0  # noqa: E731
        return float(self.model(to(pred), to(gt)).mean())


def image_metrics(pred: torch.Tensor, gt: torch.Tensor, lpips_fn: LPIPS | None = None) -> dict:
    out = {"psnr": psnr(pred, gt), "ssim": ssim(pred, gt)}
    if lpips_fn is not None:
        out["lpips"] = lpips_fn(pred, gt)
    return out


__all__ = ["LPIPS", "LPIPS_ABSENT", "image_metrics", "psnr", "ssim"]
