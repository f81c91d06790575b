"""One interface for every term of the training objective.

A :class:`LossTerm` has a name, a weight and a schedule (every ``every`` steps from ``start`` until
``stop``). Each step the loop (:func:`reconfusion.reconstruct.train`) asks every active term for its
unweighted value (``compute(ctx)``, a scalar tensor through autograd, or ``None`` to skip), sums
``weight * value``, runs backward, then lets each active term add a gradient of its own in place
(``add_grad(ctx, weight)``: for a term whose gradient is cheaper by hand than through autograd, like
the hash-grid decay). Values are logged by the loop, under the term's name, weighted.

:func:`config_terms` builds the terms a :class:`~reconfusion.config.Config` asks for; a user's own
terms (the diffusion sample loss of :mod:`reconfusion.prior.sample_loss`, a probe) are more
``LossTerm`` objects passed to ``train(extra_terms=...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from . import functions as F


@dataclass
class LossContext:
    """What a term sees at one step: the model, the scene, the step's batch and main render, and a
    way to render more rays (training-mode sampling)."""

    model: torch.nn.Module
    scene: object  # reconfusion.data.scene.Scene
    iteration: int
    config: object  # reconfusion.config.Config
    device: torch.device
    progress: float  # iteration / iterations, in [0, 1]
    out: object = None  # the main batch's RenderOutput
    target: torch.Tensor | None = None  # the main batch's pixel colours [R, 3]
    unseen_rays: Callable | None = None  # (n_patches, patch) -> RayBundle of patches from unseen views
    extras: dict = field(default_factory=dict)

    def render(self, rays):
        """Differentiable render of ``rays`` (moved to the model's device), training-mode sampling."""
        return self.model(rays.to(self.device), progress=self.progress)


@dataclass
class LossTerm:
    """``name``; ``fn(ctx) -> Tensor | None`` the unweighted value; ``weight``; active at steps
    ``start <= step < stop`` (``stop`` None: to the end) with ``step % every == 0``; optional
    ``grad_fn(ctx, weight)`` adding its gradient in place after backward, and ``log_fn(ctx) -> float``
    the value logged for a gradient-only term (unweighted; the loop multiplies by ``weight``)."""

    name: str
    fn: Callable[[LossContext], torch.Tensor | None] | None = None
    weight: float = 1.0
    every: int = 1
    start: int = 0
    stop: int | None = None
    grad_fn: Callable[[LossContext, float], None] | None = None
    log_fn: Callable[[LossContext], float] | None = None

    def active(self, step: int) -> bool:
        return (
            self.every > 0 and step % self.every == 0 and step >= self.start and (self.stop is None or step < self.stop)
        )

    def compute(self, ctx: LossContext) -> torch.Tensor | None:
        return None if self.fn is None else self.fn(ctx)

    def add_grad(self, ctx: LossContext) -> None:
        if self.grad_fn is not None:
            self.grad_fn(ctx, self.weight)


# ----------------------------------------------------------------------- the config's terms
def _data(ctx):
    cfg = ctx.config
    return F.data_loss(ctx.out.rgb, ctx.target, cfg.data_loss, cfg.charbonnier_eps)


def _interlevel(ctx):
    out, blurs = ctx.out, ctx.config.interlevel_blurs
    if not out.proposals:
        return None
    if len(out.proposals) != len(blurs):  # a level must never fall back to an unblurred loss
        raise ValueError(
            f"config `interlevel_blurs` has {len(blurs)} half-width(s) but the "
            f"sampler returned {len(out.proposals)} histogram(s): give one per level"
        )
    return sum(F.interlevel(out.s_edges, out.weights, e, w, blur) for (e, w), blur in zip(out.proposals, blurs))


def _occlusion(ctx):
    s_mid = 0.5 * (ctx.out.s_edges[:, :-1] + ctx.out.s_edges[:, 1:])
    return F.occlusion_loss(ctx.out.sigmas, s_mid, ctx.config.occlusion_s)


def _depth_smoothness(ctx):
    cfg, scene = ctx.config, ctx.scene
    p = min(cfg.depth_smoothness_patch_size, scene.height, scene.width)  # capped for tiny images
    depth = ctx.render(ctx.unseen_rays(cfg.depth_smoothness_patches, p)).depth
    return F.depth_smoothness(depth.view(-1, p, p))


def config_terms(cfg) -> list[LossTerm]:
    """The terms ``cfg`` turns on, in the loop's fixed order (which is also the order of their random
    draws): data, interlevel, distortion, entropy, occlusion, depth smoothness, grid decay."""
    terms = [LossTerm("data", _data)]
    if cfg.interlevel_weight > 0:
        terms.append(LossTerm("interlevel", _interlevel, cfg.interlevel_weight))
    if cfg.distortion_weight > 0:
        terms.append(
            LossTerm("distortion", lambda ctx: F.distortion(ctx.out.weights, ctx.out.s_edges), cfg.distortion_weight)
        )
    if cfg.entropy_weight > 0:
        terms.append(LossTerm("entropy", lambda ctx: F.opacity_entropy(ctx.out.opacity), cfg.entropy_weight))
    if cfg.occlusion_weight > 0:
        terms.append(LossTerm("occlusion", _occlusion, cfg.occlusion_weight))
    if cfg.depth_smoothness_weight > 0:
        terms.append(LossTerm("depth_smoothness", _depth_smoothness, cfg.depth_smoothness_weight))
    if cfg.grid_decay_weight > 0:  # its gradient added in place: one pass over the tables, no autograd graph
        terms.append(
            LossTerm(
                "grid_decay",
                weight=cfg.grid_decay_weight,
                grad_fn=lambda ctx, w: F.add_grid_decay_grad_(ctx.model, w),
                log_fn=lambda ctx: float(F.grid_decay(ctx.model).detach()),
            )
        )
    return terms
