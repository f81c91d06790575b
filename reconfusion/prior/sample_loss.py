"""ReconFusion's sample loss: the diffusion prior as a regularizer of NeRF optimization.

Every ``k`` iterations (a :class:`reconfusion.losses.LossTerm`): draw a novel camera from the
*training* cameras only (:func:`sample_novel_pose`), render it at the prior's resolution, encode it,
noise it to ``t ~ U[t_min, t_max]`` (``t_max = 1``, ``t_min`` annealed linearly 1 -> 0 over the
run), run ``steps`` guided DDIM steps, decode, and use the sample as a target:
``(L1 + lpips_weight * LPIPS)(render, sample) / n_input_views``. The input views given to the
prior are the training views nearest to the novel camera.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

from reconfusion.cameras import look_at

from .depths import depth_bounds, focus_point  # noqa: F401 (focus_point re-exported)
from .examples import square_resize
from .fast_path import FastPath, prepare_prior
from .model import Cameras, ReconFusionPrior
from .sampler import DDIMSampler

log = logging.getLogger(__name__)
LPIPS_WEIGHT_NDC = 0.25  # default LPIPS weight of the sample loss on forward-facing (NDC) scenes; 0 otherwise
_LPIPS_WARNED: set[str] = set()  # cases already warned about (once per process)


# ------------------------------------------------------------------------------- novel poses
def orbit_up(c2w: torch.Tensor) -> torch.Tensor:
    """Axis of the orbit: the normal of the plane through >= 3 camera centres (oriented like the
    cameras' mean up vector), else the mean up vector."""
    up = F.normalize(c2w[:, :3, 1].mean(0), dim=0)
    centers = c2w[:, :3, 3].double()
    if len(centers) >= 3:
        evals, evecs = torch.linalg.eigh((centers - centers.mean(0)).T @ (centers - centers.mean(0)))
        if evals[1] > 1e-8 and evals[0] < 0.1 * evals[1]:  # centres span a plane
            n = evecs[:, 0].float()
            return n if float(n @ up) >= 0 else -n
    return up


def sample_novel_pose(
    train_c2w: torch.Tensor,
    forward_facing: bool,
    generator: torch.Generator | None = None,
    focus_depth: float | None = None,
    jitter: float = 0.5,
) -> torch.Tensor:
    """A random OpenGL camera ``[4, 4]`` looking at the training cameras' focus point.

    - forward-facing: a random convex combination of the training camera centres, perturbed by
      ``jitter`` x their spread (or x 10% of the focus distance for one camera);
    - 360: a random angle on the orbit (around the mean up axis through the focus point) at a
      radius and height drawn between the training cameras' extremes.
    """
    c2w = train_c2w.float()
    focus = focus_point(c2w, focus_depth)
    centers = c2w[:, :3, 3]
    up = F.normalize(c2w[:, :3, 1].mean(0), dim=0) if forward_facing else orbit_up(c2w)
    rand = lambda *s: torch.rand(*s, generator=generator)  # noqa: E731
    if forward_facing:
        w = -torch.log(rand(len(centers)).clamp_min(1e-6))  # Dirichlet(1): uniform in the hull
        center = (w / w.sum()) @ centers
        spread = float((centers - centers.mean(0)).norm(dim=-1).max())
        scale = spread if spread > 1e-6 else 0.1 * float((focus - center).norm())
        center = center + jitter * scale * (2 * rand(3) - 1)
    else:
        rel = centers - focus
        h = rel @ up
        flat = rel - h[:, None] * up
        if flat[0].norm() > 1e-6:
            a = F.normalize(flat[0], dim=0)
        else:  # the first camera sits on the axis: any perpendicular direction
            a = F.normalize(torch.linalg.cross(up, torch.tensor([1.0, 0, 0])), dim=0)
        b = torch.linalg.cross(up, a)
        theta = 2 * math.pi * float(rand(1))
        r = float(flat.norm(dim=-1).min() + rand(1) * (flat.norm(dim=-1).max() - flat.norm(dim=-1).min()))
        height = float(h.min() + rand(1) * (h.max() - h.min()))
        center = focus + r * (math.cos(theta) * a + math.sin(theta) * b) + height * up
    return look_at(focus - center, up, center)


def nearest_views(train_c2w: torch.Tensor, target_c2w: torch.Tensor, k: int) -> list[int]:
    """Indices (into ``train_c2w``) of the ``k`` cameras nearest the target: centre distance,
    normalized by the camera spread, plus viewing-direction disagreement."""
    centers = train_c2w[:, :3, 3]
    scale = (centers - centers.mean(0)).norm(dim=-1).max().clamp_min(1e-6)
    d = (centers - target_c2w[:3, 3]).norm(dim=-1) / scale
    d = d + (1 - (train_c2w[:, :3, 2] * target_c2w[:3, 2]).sum(-1))
    return d.argsort()[: min(k, len(d))].tolist()


def annealed_t_range(progress: float, t_max: float = 1.0) -> tuple[float, float]:
    """``(t_min, t_max)`` with ``t_min`` going linearly 1 -> 0 over ``progress`` in [0, 1]."""
    p = min(max(progress, 0.0), 1.0)
    return min(1.0 - p, t_max), t_max


# ------------------------------------------------------------------------------- the loss
@torch.no_grad()
def prior_sample(
    prior, sampler: DDIMSampler, render, views, null_views, cams: Cameras, t: float, steps: int, generator=None
):
    """The prior's part of one regularization step (what the sample loss runs after rendering, and
    what ``benchmarks/bench_prior.py`` times): the PixelNeRF conditioning of the novel camera
    ``cams`` for the branches guidance needs, then ``sampler.regularize`` of ``render``
    ``[B, 3, S, S]`` from noise level ``t`` in ``steps`` DDIM steps -> the sample ``[B, 3, S, S]``."""
    S = prior.cfg.image_size
    cond = prior.condition(views, cams, (S, S)) if sampler.guidance != 0 else None
    null = prior.condition(null_views, cams, (S, S)) if sampler.guidance != 1 else None
    return sampler.regularize(render.detach(), cond, null, t, steps, generator)


class SampleLoss:
    """Callable ``(ctx: reconfusion.losses.LossContext) -> loss``; see the module docstring.

    Args:
        prior: a :class:`ReconFusionPrior` (moved to the context's device on first use).
        scene: the few-view :class:`~reconfusion.data.scene.Scene` (only ``train_ids`` are used).
        steps: DDIM steps per sample (paper: 10, whatever ``t``).
        guidance: classifier-free guidance scale.
        lpips: ``None``, a path to LPIPS weights (see :class:`reconfusion.metrics.LPIPS`) or a
            differentiable callable ``f(x, y)`` on NCHW images in [-1, 1].
        lpips_weight: default ``LPIPS_WEIGHT_NDC`` = 0.25 for forward-facing (NDC) scenes, 0 otherwise.
            Without LPIPS weights the term is off: a warning says so once per process (not silently).
        cuda_graph: replay the DDIM step from a CUDA graph where the fast path allows it.
        fast_path: on first use on a device, put the prior on
            :func:`~reconfusion.prior.fast_path.select_fast_path`'s path (on CUDA: half precision,
            the fastest attention that loads, CUDA graphs; elsewhere float32 as given). False: run
            the prior as given.
    """

    def __init__(
        self,
        prior: ReconFusionPrior,
        scene,
        steps: int = 10,
        guidance: float = 3.0,
        t_max: float = 1.0,
        lpips=None,
        lpips_weight: float | None = None,
        seed: int = 0,
        cuda_graph: bool = True,
        chunk: int = 1 << 16,
        fast_path: bool = True,
    ):
        if not scene.train_ids:
            raise ValueError("scene has no training views: call select_views first")
        self.prior = prior.eval().requires_grad_(False)
        self.scene = scene
        self.steps, self.t_max, self.chunk = steps, t_max, chunk
        self.forward_facing = scene.space == "ndc"
        self.sampler = DDIMSampler(self.prior, guidance, cuda_graph=cuda_graph)
        self.use_fast_path, self.fast_path = fast_path, None  # (device, FastPath) chosen on first use
        self.cuda_graph = cuda_graph
        self.gen = torch.Generator().manual_seed(seed)
        self.lpips = self._lpips(lpips)
        self.lpips_weight = (LPIPS_WEIGHT_NDC if self.forward_facing else 0.0) if lpips_weight is None else lpips_weight
        self._say_lpips_once(scene.space)
        S = prior.cfg.image_size
        ids = list(scene.train_ids)
        self.train_c2w = scene.c2w[ids].float()
        self.depths = depth_bounds(self.train_c2w, scene.near, scene.far, scene.space, scene.focus_depth)
        self.images, self.K = square_resize(scene.images[ids], scene.intrinsics[ids], S)
        self.weight = 1.0 / len(ids)
        self._views: dict = {}
        self.last = {}  # the latest render / sample / t (for logging and tests)

    def _say_lpips_once(self, space: str) -> None:
        """A loud warning (once per process and case) whenever the LPIPS term is off."""
        if self.lpips is not None and self.lpips_weight > 0:
            return
        if self.lpips is None and self.lpips_weight > 0:
            key, msg = (
                "no-weights",
                (
                    "sample loss: LPIPS term OFF, no LPIPS weights given (--lpips-weights): "
                    "the prior's sample is matched with L1 only (LPIPS weight would be "
                    f"{self.lpips_weight:g})"
                ),
            )
        elif self.lpips is not None:
            key, msg = (
                f"zero-weight-{space}",
                (
                    f"sample loss: LPIPS weights given but the LPIPS weight is 0 on "
                    f"this {space!r} scene (default: {LPIPS_WEIGHT_NDC:g} for NDC "
                    "scenes, 0 otherwise): L1 only; pass lpips_weight to use it"
                ),
            )
        else:
            return  # no weights and weight 0: nothing would be used, nothing lost
        if key not in _LPIPS_WARNED:
            _LPIPS_WARNED.add(key)
            log.warning(msg)

    @staticmethod
    def _lpips(lpips):
        if lpips is None or callable(lpips):
            return lpips
        from reconfusion.metrics import LPIPS

        model = LPIPS(lpips).model.eval()
        for p in model.parameters():  # a fixed metric: gradients go to the render only
            p.requires_grad_(False)
        return model

    def novel_camera(self) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (c2w ``[4, 4]``, K ``[3, 3]`` for the prior's square image size)."""
        c2w = sample_novel_pose(self.train_c2w, self.forward_facing, self.gen, self.scene.focus_depth)
        S = self.prior.cfg.image_size
        f = float(self.K[:, 0, 0].mean())
        K = torch.tensor([[f, 0.0, S / 2], [0.0, f, S / 2], [0.0, 0.0, 1.0]])
        return c2w, K

    def _encodings(self, ids: list[int], device):
        key = tuple(ids)
        if key not in self._views:
            imgs = self.images[ids][None].to(device)
            with torch.no_grad():
                self._views[key] = (self.prior.encode_views(imgs), self.prior.null_views(imgs))
        return self._views[key]

    def _prior_on(self, device) -> ReconFusionPrior:
        """The prior on ``device``, on the fast path chosen for it (once per device)."""
        device = torch.device(device)
        if not self.use_fast_path:
            return self.prior.to(device)
        if self.fast_path is None or self.fast_path[0] != device:
            self.prior, path = prepare_prior(self.prior, device)
            self.fast_path = (device, path)
            self.sampler.cuda_graph = self.cuda_graph and path.cuda_graphs
        return self.prior

    @property
    def path(self) -> FastPath | None:
        """The :class:`~reconfusion.prior.fast_path.FastPath` in use (None before the first step)."""
        return None if self.fast_path is None else self.fast_path[1]

    def __call__(self, ctx) -> torch.Tensor:
        device = ctx.device
        prior = self._prior_on(device)
        S = prior.cfg.image_size
        c2w, K = self.novel_camera()
        ids = nearest_views(self.train_c2w, c2w, prior.cfg.max_views)
        intr = torch.stack([K[0, 0], K[1, 1], K[0, 2], K[1, 2]])
        rays = self.scene.camera_rays(c2w, intr, height=S, width=S)
        rgb = torch.cat([ctx.render(rays[i : i + self.chunk]).rgb for i in range(0, S * S, self.chunk)])
        render = rgb.view(S, S, 3).permute(2, 0, 1)[None].clamp(0, 1)
        t_min, t_max = annealed_t_range(ctx.progress, self.t_max)
        t = t_min + float(torch.rand(1, generator=self.gen)) * (t_max - t_min)
        views, null_views = self._encodings(ids, device)
        near, mid, far = (torch.tensor([v], device=device) for v in self.depths)
        cams = Cameras(
            self.train_c2w[ids][None].to(device),
            self.K[ids][None].to(device),
            c2w[None].to(device),
            K[None].to(device),
            near,
            far,
            mid,
        )
        gen = torch.Generator(device=device).manual_seed(int(torch.randint(1 << 30, (1,), generator=self.gen)))
        sample = prior_sample(prior, self.sampler, render, views, null_views, cams, t, self.steps, gen)
        loss = (render - sample).abs().mean()
        if self.lpips is not None and self.lpips_weight > 0:
            if isinstance(self.lpips, torch.nn.Module):
                self.lpips.to(device)
            loss = loss + self.lpips_weight * self.lpips(render * 2 - 1, sample * 2 - 1).mean()
        self.last = {"render": render.detach(), "sample": sample, "t": t, "ids": ids, "c2w": c2w}
        return loss * self.weight


def prior_loss_term(prior_path: str, scene, every: int = 10, weight: float = 1.0, device="cpu", **kw):
    """Load a saved prior, put it on the fast path for ``device`` (:func:`~reconfusion.prior.fast_path.prepare_prior`)
    and wrap its :class:`SampleLoss` as the loop's ``prior`` term (a :class:`reconfusion.losses.LossTerm`
    evaluated every ``every`` steps)."""
    from reconfusion.losses import LossTerm

    prior = ReconFusionPrior.load(prior_path, device=device)
    return LossTerm("prior", SampleLoss(prior, scene, **kw), weight=weight, every=every)


__all__ = [
    "SampleLoss",
    "annealed_t_range",
    "focus_point",
    "nearest_views",
    "orbit_up",
    "prior_loss_term",
    "prior_sample",
    "sample_novel_pose",
]
