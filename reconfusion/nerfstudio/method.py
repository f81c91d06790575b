"""``reconfusion-fewview``: the ``MethodSpecification`` that ``setup.py`` registers with nerfstudio.

``ns-train reconfusion-fewview --data SCENE [--max-num-iterations N] [--pipeline.model.prior DIR]``
trains reconfusion's few-view recipe (``tiny`` preset, 3 views by default) in nerfstudio's trainer;
``ns-eval`` reports reconfusion's PSNR/SSIM on the held-out views.
"""

from __future__ import annotations

from dataclasses import dataclass

from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from ..config import tiny
from .dataparser import FewViewDataManagerConfig
from .model import PARAM_GROUP, FewViewModelConfig


@dataclass
class FewViewTrainerConfig(TrainerConfig):
    """nerfstudio's trainer config; ``--max-num-iterations`` is also the recipe's run length."""

    def __post_init__(self):
        self.pipeline.model.iterations = self.max_num_iterations


_TINY = tiny()
reconfusion_fewview = MethodSpecification(
    config=FewViewTrainerConfig(
        method_name="reconfusion-fewview",
        max_num_iterations=_TINY.iterations,
        steps_per_eval_batch=500,
        steps_per_eval_image=500,
        steps_per_save=500,
        mixed_precision=False,
        pipeline=VanillaPipelineConfig(
            datamanager=FewViewDataManagerConfig(
                train_num_rays_per_batch=_TINY.batch_rays, eval_num_rays_per_batch=_TINY.batch_rays
            ),
            model=FewViewModelConfig(eval_num_rays_per_chunk=_TINY.eval_chunk),
        ),
        # the model sets the learning rate, betas and epsilon from its recipe every step
        optimizers={
            PARAM_GROUP: {"optimizer": AdamOptimizerConfig(lr=_TINY.lr_init, eps=_TINY.adam_eps), "scheduler": None}
        },
    ),
    description="reconfusion's few-view recipe (Zip-NeRF-style field, proposal sampler, regularizers; "
    "optional diffusion sample loss) on rfkernels",
)

__all__ = ["FewViewTrainerConfig", "reconfusion_fewview"]
