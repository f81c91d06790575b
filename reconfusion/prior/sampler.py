"""DDIM sampling with classifier-free guidance, one batched UNet call per step, CUDA-graph replay.

A regularization step (ReconFusion's sample loss): encode the current NeRF render, noise it to
timestep ``t``, run ``K`` DDIM steps (eta = 0) down to 0 with guidance, decode.

Guidance: ``g == 1`` runs the conditional branch only, ``g == 0`` the unconditional branch only,
otherwise both branches as ONE UNet call on a doubled batch ``[uncond; cond]``, combined as
``u + g (c - u)``.

Speed: on CUDA the whole DDIM step (UNet + guidance + update) is captured once per
(mode, shapes, dtype) in a ``torch.cuda.CUDAGraph`` with static input buffers and replayed for
every step and every later regularization step of the same shape; if capture fails the sampler logs
one line and runs that shape eagerly. ``compile=True`` wraps the step in ``torch.compile``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from .model import Conditioning, ReconFusionPrior

log = logging.getLogger(__name__)


def ddim_timesteps(t_start: int, steps: int) -> list[tuple[int, int]]:
    """Pairs ``(t, t_prev)`` from ``t_start`` down to 0; the last ``t_prev`` is -1 (= clean).

    ``max(1, min(steps, t_start))`` pairs with strictly decreasing ``t``: a low ``t_start`` gets fewer
    steps instead of repeated ``(t, t)`` pairs (each a wasted UNet call that changes nothing).
    """
    if steps < 1:
        raise ValueError(f"`steps` must be >= 1, got {steps}")
    if t_start < 0:
        raise ValueError(f"`t_start` must be >= 0, got {t_start}")
    n = max(1, min(steps, t_start))  # spacing t_start / n >= 1: rounded timesteps stay distinct
    ts = torch.floor(torch.linspace(float(t_start), 0.0, n + 1, dtype=torch.float64) + 0.5).long().tolist()
    ts[-1] = -1  # the last step goes to the clean image
    return list(zip(ts[:-1], ts[1:]))


def guidance_mode(guidance: float) -> str:
    """``"cond"`` (g == 1), ``"uncond"`` (g == 0) or ``"cfg"`` (both branches, one batched call)."""
    return "cond" if guidance == 1.0 else "uncond" if guidance == 0.0 else "cfg"


def make_step_fn(prior: ReconFusionPrior, mode: str) -> Callable:
    """The pure tensor function of one DDIM step (what gets captured in a CUDA graph).

    ``(x [B,4,h,w], t [B] long, a_t, a_prev [B,1,1,1], features [B' ,F,h,w], tokens [B',V,D],
    guidance [1]) -> x_prev``; ``B' = 2B`` for ``"cfg"`` (uncond first), else ``B``.
    """

    def step(x, t, a_t, a_prev, features, tokens, guidance):
        if mode == "cfg":
            out = prior.denoise(torch.cat([x, x]), torch.cat([t, t]), features, tokens).float()
            u, c = out.chunk(2)
            out = u + guidance * (c - u)
        else:
            out = prior.denoise(x, t, features, tokens).float()
        x0, eps = prior.split_prediction(out, x, a_t)
        return a_prev.sqrt() * x0 + (1.0 - a_prev).sqrt() * eps

    return step


class CudaGraphStep:
    """A function of fixed-shape tensors captured in a CUDA graph; calls copy the inputs into static
    buffers, replay, and return a clone of the static output."""

    def __init__(self, fn: Callable, inputs: dict[str, torch.Tensor], warmup: int = 2):
        self.static = {k: v.clone() for k, v in inputs.items()}
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(warmup):  # cuBLAS/cuDNN/allocator warm-up outside the capture
                fn(**self.static)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = fn(**self.static)

    def __call__(self, **inputs) -> torch.Tensor:
        for k, v in inputs.items():
            self.static[k].copy_(v)
        self.graph.replay()
        return self.out.clone()


class DDIMSampler:
    """Guided DDIM for a :class:`ReconFusionPrior` (use under ``torch.no_grad``; it sets it itself).

    Args:
        guidance: classifier-free guidance scale.
        cuda_graph: capture/replay the step on CUDA (ignored with one log line on CPU).
        compile: wrap the step in ``torch.compile``.
    """

    def __init__(self, prior: ReconFusionPrior, guidance: float = 3.0, cuda_graph: bool = True, compile: bool = False):
        self.prior = prior
        self.guidance = float(guidance)
        self.cuda_graph = cuda_graph
        self.compile = compile
        self._fns: dict[str, Callable] = {}
        self._graphs: dict[tuple, CudaGraphStep | None] = {}  # None: capture failed, run eagerly
        self.last_path = None  # "graph" | "eager" (for tests and benchmarks)

    def _fn(self, mode: str) -> Callable:
        if mode not in self._fns:
            fn = make_step_fn(self.prior, mode)
            self._fns[mode] = torch.compile(fn, dynamic=False) if self.compile else fn
        return self._fns[mode]

    def _graph(self, mode: str, inputs: dict) -> CudaGraphStep | None:
        w = self.prior.unet.conv_in.weight  # a moved / recast model invalidates captured graphs
        key = (mode, w.data_ptr(), w.dtype) + tuple(
            (k, tuple(v.shape), v.dtype, str(v.device)) for k, v in inputs.items()
        )
        if key not in self._graphs:
            try:
                self._graphs[key] = CudaGraphStep(self._fn(mode), inputs)
                log.info("captured a CUDA graph for the DDIM step (%s, x %s)", mode, list(inputs["x"].shape))
            except Exception as exc:  # noqa: BLE001 - any capture failure -> eager, said once per shape
                log.warning(
                    "CUDA graph capture of the DDIM step failed (%s: %s); running it eagerly", type(exc).__name__, exc
                )
                self._graphs[key] = None
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
        return self._graphs[key]

    @staticmethod
    def graph_supported(x: torch.Tensor) -> bool:
        """CUDA graphs need CUDA tensors."""
        return x.device.type == "cuda"

    def step(self, mode: str, **inputs) -> torch.Tensor:
        """One DDIM step (see :func:`make_step_fn`), replayed from a CUDA graph when possible."""
        graph = None
        if self.cuda_graph:
            if self.graph_supported(inputs["x"]):
                graph = self._graph(mode, inputs)
            elif self.last_path is None:
                log.info(
                    "CUDA graphs need CUDA tensors (x on %s); running the DDIM step eagerly", inputs["x"].device.type
                )
        self.last_path = "graph" if graph is not None else "eager"
        return graph(**inputs) if graph is not None else self._fn(mode)(**inputs)

    @torch.no_grad()
    def sample(
        self, x_t: torch.Tensor, t_start: int, cond: Conditioning | None, null: Conditioning | None, steps: int
    ) -> torch.Tensor:
        """Run ``steps`` DDIM steps from latents ``x_t`` at integer timestep ``t_start``; -> clean latents."""
        mode = guidance_mode(self.guidance)
        need = {"cfg": (cond, null), "cond": (cond,), "uncond": (null,)}[mode]
        if any(c is None for c in need):
            raise ValueError(f"guidance={self.guidance} needs {'both conditionings' if mode == 'cfg' else mode}")
        if mode == "cfg":
            features = torch.cat([null.features, cond.features])
            tokens = torch.cat([null.tokens, cond.tokens])
        else:
            src = cond if mode == "cond" else null
            features, tokens = src.features, src.tokens
        B, dev = x_t.shape[0], x_t.device
        g = torch.tensor([self.guidance], device=dev)
        ac = self.prior.alphas_cumprod
        x = x_t.float()
        for t, t_prev in ddim_timesteps(int(t_start), steps):
            a_t = ac[t].expand(B).reshape(B, 1, 1, 1)
            a_prev = (ac[t_prev] if t_prev >= 0 else torch.ones((), device=dev)).expand(B).reshape(B, 1, 1, 1)
            tt = torch.full((B,), t, device=dev, dtype=torch.long)
            x = self.step(mode, x=x, t=tt, a_t=a_t, a_prev=a_prev, features=features, tokens=tokens, guidance=g)
        return x

    @torch.no_grad()
    def regularize(
        self,
        render: torch.Tensor,
        cond: Conditioning | None,
        null: Conditioning | None,
        t: float,
        steps: int = 10,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One regularization sample: encode ``render`` ``[B, 3, H, W]`` in [0, 1], noise to level
        ``t`` in [0, 1], ``steps`` guided DDIM steps, decode -> ``[B, 3, H, W]``."""
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"`t` must be in [0, 1], got {t}")
        prior = self.prior
        z0 = prior.encode(render.detach())
        t_int = int(round(t * (prior.cfg.num_train_timesteps - 1)))
        noise = torch.randn(z0.shape, generator=generator, device=z0.device, dtype=torch.float32)
        x = prior.add_noise(z0.float(), noise, torch.tensor([t_int], device=z0.device))
        return prior.decode(self.sample(x, t_int, cond, null, steps))


__all__ = ["CudaGraphStep", "DDIMSampler", "ddim_timesteps", "guidance_mode", "make_step_fn"]
