"""reconfusion's few-view recipe as a nerfstudio ``Model``: a thin wrapper, no re-implementation.

The wrapped pieces are reconfusion's own: the model (:func:`~reconfusion.reconstruct.build_model`:
field, proposal sampler, renderer on rfkernels), the objective (:func:`~reconfusion.losses.config_terms`:
data loss and regularizers, plus the diffusion sample loss of
:func:`~reconfusion.prior.sample_loss.prior_loss_term` when ``prior`` is given), the learning-rate
schedule (:func:`~reconfusion.reconstruct.learning_rate`) and the evaluation metrics. nerfstudio
supplies the trainer, the ray batches and the checkpoints. Per training step, as
``reconfusion reconstruct``'s loop does it: the learning rate (and Adam's betas and epsilon) are set
from the recipe before the step; the loss is the sum of the active terms' weighted values; after
backward and before the optimizer step, the terms that add their gradient in place (grid decay) do
so, then the gradient is clipped if the recipe says so. rfkernels' value checks run in the first
step only, then stay off until training ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import tyro
from nerfstudio.cameras.rays import RayBundle as NerfstudioRays
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps

import rfkernels

from ..app.runs import make_config
from ..losses import LossContext, config_terms
from ..metrics import image_metrics
from ..reconstruct import build_model, learning_rate
from ..unseen import unseen_patches
from .dataparser import INTRINSICS

PARAM_GROUP = "fields"  # the one optimizer of the recipe (all parameters, as reconstruct's Adam)


def scene_rays(scene, ray_bundle: NerfstudioRays):
    """nerfstudio's rays ``[..., 3]`` -> ``scene``'s :class:`reconfusion.rays.RayBundle` ``[R]``: the
    origin and unit-depth direction reconfusion would generate, then NDC and radii by the scene.
    Cameras without the dataparser's intrinsics (the viewer's) get a focal length of
    ``1 / sqrt(pixel_area)``, exact at the image centre (it sets the anti-aliasing radius only)."""
    o = ray_bundle.origins.reshape(-1, 3)
    d = ray_bundle.directions.reshape(-1, 3) * ray_bundle.metadata["directions_norm"].reshape(-1, 1)
    intr = ray_bundle.metadata.get(INTRINSICS)
    if intr is None:
        f = ray_bundle.pixel_area.reshape(-1).rsqrt()
        intr = torch.stack([f, f, torch.zeros_like(f), torch.zeros_like(f)], -1)
    return scene.rays_from(o, d, intr.reshape(-1, 4))


@dataclass
class FewViewModelConfig(ModelConfig):
    """reconfusion's few-view recipe: a preset, ``--set``-style overrides, and an optional diffusion prior."""

    _target: type = field(default_factory=lambda: FewViewModel)
    enable_collider: bool = False
    """reconfusion's rays carry their own bounds (NDC: [0, 1])."""
    preset: str = "tiny"
    """tiny | base (reconfusion's presets)."""
    overrides: tuple[str, ...] = ()
    """Config settings as key=value, like reconfusion reconstruct --set (dotted keys reach nested ones)."""
    iterations: tyro.conf.Suppress[int] = 1500
    """The recipe's run length (its schedule and warm-up): the method sets it to --max-num-iterations."""
    prior: Path | None = None
    """A saved diffusion prior directory: turns the sample loss on."""
    prior_every: int = 10
    """Sample loss every k iterations."""
    prior_weight: float = 1.0
    """Sample loss weight."""
    prior_steps: int = 10
    """DDIM steps per sample."""
    prior_guidance: float = 3.0
    """Classifier-free guidance scale."""
    prior_lpips_weight: float | None = None
    """LPIPS part of the sample loss (default: reconfusion's, by the kind of scene)."""
    lpips_weights: Path | None = None
    """Local LPIPS weights for the sample loss (never downloaded)."""


class FewViewModel(Model):
    """nerfstudio's view of :class:`reconfusion.field.ZipNeRF` (``self.recipe``) on the dataparser's scene."""

    config: FewViewModelConfig

    def populate_modules(self):
        super().populate_modules()
        c = self.config
        self.scene = self.kwargs["metadata"]["scene"]
        cfg = make_config(c.preset, c.iterations, overrides=list(c.overrides))
        with torch.random.fork_rng(devices=[]):  # the initial weights reconstruct's seed gives
            torch.manual_seed(cfg.seed)
            self.recipe = build_model(cfg, self.scene)
        self.cfg = self.recipe.cfg
        self.terms = config_terms(self.cfg, self.scene)
        if c.prior is not None:
            from ..prior.sample_loss import prior_loss_term

            lpips = str(c.lpips_weights) if c.lpips_weights is not None else None
            self.terms.append(
                prior_loss_term(
                    str(c.prior),
                    self.scene,
                    every=c.prior_every,
                    weight=c.prior_weight,
                    device=self.kwargs.get("device", "cpu"),
                    steps=c.prior_steps,
                    guidance=c.prior_guidance,
                    lpips=lpips,
                    lpips_weight=c.prior_lpips_weight,
                )
            )
        ids = list(self.scene.train_ids)
        self.train_c2w, self.train_intrinsics = self.scene.c2w[ids], self.scene.intrinsics[ids]
        self.unseen_gen = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.pending_grads = None  # (ctx, active terms) of the step whose optimizer step comes next
        self.validating = None  # rfkernels' value-check setting before training, restored after it

    # ------------------------------------------------------------------------------ rays
    def unseen_rays(self, n_patches: int, patch: int):
        """The depth-smoothness term's patches from viewpoints between the training cameras."""
        rays = unseen_patches(self.scene, self.train_c2w, self.train_intrinsics, n_patches, patch, self.unseen_gen)
        return rays.to(self.device)

    @property
    def progress(self) -> float:
        return self.step / max(self.cfg.iterations, 1)

    # ------------------------------------------------------------------------------ nerfstudio's Model
    def get_param_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        return {PARAM_GROUP: list(self.recipe.parameters())}

    def get_outputs(self, ray_bundle: NerfstudioRays) -> dict:
        """``rgb [R, 3]`` (clamped to [0, 1] in evaluation), ``accumulation``, ``depth`` (normalized
        distance s) ``[R, 1]``; ``render``: the recipe's RenderOutput and ``rays`` its RayBundle, for the loss."""
        rays = scene_rays(self.scene, ray_bundle)
        with rfkernels.use_backend(self.cfg.backend):
            out = self.recipe(rays, progress=self.progress if self.training else None)
        rgb = out.rgb if self.training else out.rgb.float().clamp(0, 1)
        return {
            "rgb": rgb,
            "accumulation": out.opacity[:, None],
            "depth": out.depth[:, None],
            "render": out,
            "rays": rays,
        }

    def get_metrics_dict(self, outputs, batch) -> dict[str, torch.Tensor]:
        mse = (outputs["rgb"].detach().float() - batch["image"][..., :3].to(self.device)).square().mean()
        return {"psnr": -10.0 * torch.log10(mse)}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> dict[str, torch.Tensor]:
        """Each active term's weighted value (nerfstudio sums them); in evaluation the data term only
        (no extra renders, no draws from the training's generators)."""
        target = batch["image"][..., :3].to(self.device)
        ctx = LossContext(
            self.recipe, self.scene, self.step, self.cfg, self.device, self.progress, outputs["render"], target,
            unseen_rays=self.unseen_rays, rays=outputs.get("rays"),
        )  # fmt: skip
        active = [t for t in self.terms if t.active(self.step)] if self.training else self.terms[:1]
        losses = {}
        with rfkernels.use_backend(self.cfg.backend):
            for term in active:
                value = term.compute(ctx)
                if value is not None:
                    losses[term.name] = term.weight * value
        if self.training:
            self.pending_grads = (ctx, active)
        return losses

    def get_image_metrics_and_images(self, outputs, batch) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        """reconfusion's metrics (PSNR, SSIM: :func:`reconfusion.metrics.image_metrics`) of one held-out view."""
        gt = batch["image"][..., :3].to(outputs["rgb"].device)
        metrics = image_metrics(outputs["rgb"], gt)
        depth = colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"])
        return metrics, {"img": torch.cat([gt, outputs["rgb"]], dim=1), "depth": depth}

    def update_to_step(self, step: int) -> None:
        self.step = step

    # ------------------------------------------------------------------------------ the training step
    def get_training_callbacks(self, attributes: TrainingCallbackAttributes) -> list[TrainingCallback]:
        optimizer = attributes.optimizers.optimizers[PARAM_GROUP]
        optimizer.register_step_pre_hook(lambda opt, args, kwargs: self.before_optimizer_step())
        every = dict(update_every_num_iters=1)
        return [
            TrainingCallback(
                [TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], self.begin_step, **every, args=[optimizer]
            ),
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self.end_step, **every),
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN], self.end_training),
        ]

    def begin_step(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        """The recipe's learning rate for ``step`` and its Adam settings."""
        self.step = step
        if self.validating is None:
            self.validating = rfkernels.validation_enabled()
        lr = learning_rate(step, self.cfg)
        for group in optimizer.param_groups:
            group.update(lr=lr, betas=(self.cfg.beta1, self.cfg.beta2), eps=self.cfg.adam_eps)

    def before_optimizer_step(self) -> None:
        """After backward: the in-place gradients of the step's terms, then clipping."""
        if self.pending_grads is None:
            return
        ctx, active = self.pending_grads
        self.pending_grads = None
        for term in active:
            term.add_grad(ctx)
        if self.cfg.grad_max_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.recipe.parameters(), self.cfg.grad_max_norm)

    def end_step(self, step: int) -> None:
        rfkernels.set_validation(False)  # the first step ran the value checks

    def end_training(self, step: int) -> None:
        if self.validating is not None:
            rfkernels.set_validation(self.validating)


__all__ = ["FewViewModel", "FewViewModelConfig", "scene_rays"]
