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
    rays: object = None  # the main batch's RayBundle (on the device)

    def render(self, rays):
        """Differentiable render of ``rays`` (moved to the model's device), training-mode sampling."""
        return self.model(rays.to(self.device), progress=self.progress)


@dataclass
class LossTerm:
    """``name``; ``fn(ctx) -> Tensor | None`` the unweighted value; ``weight``; active at steps
    ``start <= step < stop`` (``stop`` None: to the end) with ``step % every == 0``; optional
    ``grad_fn(ctx, weight)`` adding its gradient in place after backward, ``log_fn(ctx) -> float | Tensor``
    the value logged for a gradient-only term (unweighted; the loop multiplies by ``weight``), and
    ``rays_fn`` the pixels it adds to the step's main batch."""

    name: str
    fn: Callable[[LossContext], torch.Tensor | None] | None = None
    weight: float = 1.0
    every: int = 1
    start: int = 0
    stop: int | None = None
    grad_fn: Callable[[LossContext, float], None] | None = None
    log_fn: Callable[[LossContext], float | torch.Tensor] | None = None  # a 0-dim tensor: read with the record
    # () -> (RayBundle [M], colours [M, 3]): training pixels this term wants in the step's main batch, in
    # place of M random ones; the loop renders them with the batch and names their rows in
    # ctx.extras["rows"][name]. A loop that does not (the nerfstudio plugin) leaves the rows out.
    rays_fn: Callable[[], tuple] | None = None

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


def _backdrop_opacity(ctx):
    """Opacity of the rays whose target shows the scene's uniform backdrop, summed over them and
    divided by the batch's rays (None for a scene without a white or black backdrop)."""
    from ..data.space import backdrop_pixels

    on = backdrop_pixels(ctx.target, getattr(ctx.scene, "background", None))
    if on is None:
        return None
    return (ctx.out.opacity * on).sum() / max(ctx.out.opacity.shape[0], 1)  # a mask product: no host sync


def _depth_smoothness(ctx):
    cfg, scene = ctx.config, ctx.scene
    p = min(cfg.depth_smoothness_patch_size, scene.height, scene.width)  # capped for tiny images
    depth = ctx.render(ctx.unseen_rays(cfg.depth_smoothness_patches, p)).depth
    return F.depth_smoothness(depth.view(-1, p, p))


def sparse_depth_term(cfg, scene, run_dir: str | None = None, log: Callable[[str], None] = print) -> LossTerm | None:
    """The sparse-depth term of ``cfg`` (resolved) for ``scene``: its training views matched and
    triangulated (cached in ``run_dir``), ``cfg.sparse_depth_rays`` target rays per step (at most
    half of ``cfg.batch_rays``; drawn by a generator of their own) in place of as many random pixels
    of the main batch (they are training pixels too, so the data loss covers them and no extra
    render is needed); weight ``cfg.sparse_depth_weight`` faded by ``min(1, points /
    cfg.sparse_depth_full_points)``; ``None`` when no target is left. A loop that does not merge
    the rays into its batch gets them rendered separately."""
    from ..geometry import RejectionRules, load_or_triangulate
    from . import sparse_depth as SD

    rules = RejectionRules(cfg.sparse_depth_max_reprojection_px, cfg.sparse_depth_min_angle_deg)
    points = load_or_triangulate(
        scene, run_dir, rules, upsample=cfg.sparse_depth_upsample, epipolar_px=cfg.sparse_depth_epipolar_px, log=log
    )
    targets = SD.depth_targets(
        scene, points, cfg.spacing, cfg.sparse_depth_min_sigma, cfg.sparse_depth_backdrop_margin_px
    )
    n_points = points.stats.get("kept_points", 0)
    fade = SD.fade_factor(n_points, cfg.sparse_depth_full_points)
    log(f"sparse depth: {len(targets)} target rays, {n_points} points, weight x {fade:.2f}")
    if len(targets) == 0 or fade == 0.0:
        return None
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    drawn = []  # the rows drawn for this step's batch

    def draw():
        n = min(cfg.sparse_depth_rays, len(targets), cfg.batch_rays // 2)
        idx = torch.randint(len(targets), (n,), generator=gen)
        drawn[:] = [idx]
        return targets.rays[idx], targets.colors[idx]

    def value(ctx):
        rows = ctx.extras.get("rows", {}).get("sparse_depth")
        if rows is None:  # not merged into the main batch: render the target rays here
            out = ctx.render(draw()[0])
        else:
            out = ctx.out.rows(rows)
        idx = drawn[0]
        s, sigma = targets.s[idx].to(ctx.device), targets.sigma[idx].to(ctx.device)
        return SD.sparse_depth_value(out, s, sigma, cfg.sparse_depth_loss, cfg.sparse_depth_proposals)

    stop = None if cfg.sparse_depth_stop >= 1.0 else int(cfg.sparse_depth_stop * cfg.iterations)
    return LossTerm("sparse_depth", value, cfg.sparse_depth_weight * fade, stop=stop, rays_fn=draw)


def covisibility_term(cfg, scene) -> LossTerm:
    """The covisibility term of ``cfg`` (resolved) for ``scene``'s training cameras, on the main
    batch's rays (:mod:`.covisibility`)."""
    from . import covisibility as C

    frusta = {}  # built on the first step's device

    def value(ctx):
        if ctx.rays is None:
            raise ValueError("the covisibility term needs the main batch's rays: LossContext(..., rays=...)")
        if ctx.device not in frusta:
            frusta[ctx.device] = C.TrainingFrusta(scene, ctx.device)
        return C.covisibility_value(
            ctx.out, ctx.rays, scene, frusta[ctx.device], cfg.spacing, cfg.covisibility_min_views
        )

    return LossTerm("covisibility", value, cfg.covisibility_weight)


def config_terms(cfg, scene=None, run_dir: str | None = None, log: Callable[[str], None] = print) -> list[LossTerm]:
    """The terms ``cfg`` turns on, in the loop's fixed order (which is also the order of their random
    draws): data, interlevel, distortion, entropy, occlusion, depth smoothness, backdrop opacity,
    covisibility (needs the ``scene``), grid decay, sparse depth (needs the ``scene``; its points
    are cached in ``run_dir``)."""
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
    if cfg.backdrop_opacity_weight > 0:
        terms.append(LossTerm("backdrop_opacity", _backdrop_opacity, cfg.backdrop_opacity_weight))
    if cfg.covisibility_weight > 0:
        if scene is None:
            raise ValueError("config `covisibility_weight` > 0 needs the scene: config_terms(cfg, scene)")
        terms.append(covisibility_term(cfg, scene))
    if cfg.grid_decay_weight > 0:  # its gradient added in place: one pass over the tables, no autograd graph
        terms.append(
            LossTerm(
                "grid_decay",
                weight=cfg.grid_decay_weight,
                grad_fn=lambda ctx, w: F.add_grid_decay_grad_(ctx.model, w),
                log_fn=lambda ctx: F.grid_decay(ctx.model).detach(),
            )
        )
    if cfg.sparse_depth_weight > 0:
        if scene is None:
            raise ValueError("config `sparse_depth_weight` > 0 needs the scene: config_terms(cfg, scene)")
        term = sparse_depth_term(cfg, scene, run_dir, log)
        if term is not None:
            terms.append(term)
    return terms
