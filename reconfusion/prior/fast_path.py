"""How the prior runs in the reconstruction loop: one choice, made by :func:`select_fast_path`.

On CUDA (the regularization step is the loop's most expensive term):

- precision: the UNet in bfloat16 where the GPU computes it natively (compute capability >= 8.0),
  else float16. The VAE in bfloat16 on the same GPUs (bfloat16 has float32's exponent range, so the
  decoder's large activations cannot overflow), else in float32: Stable Diffusion's VAE decoder
  overflows float16 (NaN/black images). PixelNeRF and CLIP stay float32 (their features are made
  once per step or once per view set; the UNet casts them);
- attention (the UNet's): xformers' memory-efficient attention where its compiled extension loads,
  else PyTorch's ``scaled_dot_product_attention`` (flash / memory-efficient kernels). An xformers whose
  extension does not load (e.g. wheels linking ``libcudart.so.12`` under a CUDA 13 torch) would run
  PyTorch's flash kernel anyway: that case is detected, said once with the reason, and runs SDPA;
- the DDIM step captured in a CUDA graph (:class:`~reconfusion.prior.sampler.DDIMSampler`).

Elsewhere (CPU): float32, SDPA, no CUDA graphs, as before. ``benchmarks/bench_prior.py`` times the
prior prepared by :func:`prepare_prior`, the function :func:`~reconfusion.prior.sample_loss.prior_loss_term`
calls.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from .attention import set_attention_backend, xformers_status

log = logging.getLogger(__name__)
_said: set[str] = set()
DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


@dataclass(frozen=True)
class FastPath:
    """What :func:`select_fast_path` chose for a device, and why (``reason``, one line)."""

    dtype: torch.dtype  # the UNet's weights and activations
    vae_dtype: torch.dtype
    attention: str  # "xformers" | "sdpa" (a FastAttnProcessor backend)
    cuda_graphs: bool  # the DDIM step captured and replayed
    reason: str

    @property
    def label(self) -> str:
        """Short name, e.g. ``bf16-sdpa-graph``; just the attention for float32 without graphs."""
        if self.dtype == torch.float32 and not self.cuda_graphs:
            return self.attention
        return f"{DTYPE_NAMES[self.dtype]}-{self.attention}" + ("-graph" if self.cuda_graphs else "")

    def describe(self) -> str:
        return (
            f"UNet {DTYPE_NAMES[self.dtype]}, VAE {DTYPE_NAMES[self.vae_dtype]}, {self.attention} attention, "
            f"CUDA graphs {'on' if self.cuda_graphs else 'off'}"
        )


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (CUDA compute capability >= 8.0: Ampere on)."""
    return torch.cuda.get_device_capability(device) >= (8, 0)


def select_fast_path(device) -> FastPath:
    """The precision, attention and sampler of the prior on ``device`` (see the module docstring).
    The xformers fallback is logged once per reason."""
    device = torch.device(device)
    if device.type != "cuda":
        return FastPath(torch.float32, torch.float32, "sdpa", False, f"{device.type}: float32, SDPA, no CUDA graphs")
    if bf16_native(device):
        dtype, vae_dtype, why = torch.bfloat16, torch.bfloat16, "bfloat16 is native (compute capability >= 8.0)"
    else:
        dtype, vae_dtype = torch.float16, torch.float32
        why = "no native bfloat16: UNet float16, VAE float32 (its decoder overflows float16)"
    loads, status = xformers_status()
    attention = "xformers" if loads else "sdpa"
    if not loads:
        _say_once(f"prior attention: PyTorch SDPA, not xformers: {status}")
    return FastPath(dtype, vae_dtype, attention, True, f"{why}; attention: {status}")


def apply_fast_path(prior, path: FastPath):
    """Cast ``prior``'s UNet and VAE to ``path``'s dtypes and install its attention on the UNet (in
    place); returns ``prior``. The VAE keeps diffusers' processor (SDPA): its one attention block has
    a single 512-wide head, past the flash kernels' head size, and SDPA picks a kernel that takes it."""
    prior.unet.to(path.dtype)
    prior.vae.to(path.vae_dtype)
    set_attention_backend(prior.unet, path.attention)
    return prior


def prepare_prior(prior, device) -> tuple[object, FastPath]:
    """Move ``prior`` to ``device`` and put it on :func:`select_fast_path`'s path; -> (prior, path).
    What the reconstruction loop runs (and what the prior benchmark times)."""
    path = select_fast_path(device)
    prior = apply_fast_path(prior.to(device), path)
    log.info("prior on %s: %s (%s)", torch.device(device), path.describe(), path.reason)
    return prior, path


def _say_once(msg: str) -> None:
    if msg not in _said:
        _said.add(msg)
        log.warning(msg)


__all__ = ["FastPath", "apply_fast_path", "bf16_native", "prepare_prior", "select_fast_path"]
