"""The training objective: every term behind one interface (:mod:`.terms`: :class:`LossTerm`,
:class:`LossContext`, :func:`config_terms`) and the loss functions themselves (:mod:`.functions`:
data loss, FreeNeRF occlusion, RegNeRF depth smoothness, Zip-NeRF grid decay, opacity entropy,
distortion and interlevel through rfkernels)."""

from .functions import (
    add_grid_decay_grad_,
    charbonnier,
    data_loss,
    depth_smoothness,
    distortion,
    grid_decay,
    interlevel,
    occlusion_loss,
    opacity_entropy,
)
from .terms import LossContext, LossTerm, config_terms

__all__ = [
    "LossContext",
    "LossTerm",
    "add_grid_decay_grad_",
    "charbonnier",
    "config_terms",
    "data_loss",
    "depth_smoothness",
    "distortion",
    "grid_decay",
    "interlevel",
    "occlusion_loss",
    "opacity_entropy",
]
