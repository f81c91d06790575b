"""The ReconFusion diffusion prior: model, fast sampler, training and the sample loss.

See the README section "reconfusion.prior" for the API at a glance.
"""

from .attention import FastAttnProcessor, set_attention_backend
from .dataset import PriorExamples, Source
from .model import Cameras, Conditioning, PriorConfig, ReconFusionPrior, ViewEncoding
from .pixelnerf import PixelNeRF, PixelNeRFConfig
from .run_config import TrainConfig
from .sample_loss import SampleLoss, prior_loss_term, sample_novel_pose
from .sampler import DDIMSampler

__all__ = [
    "Cameras",
    "Conditioning",
    "DDIMSampler",
    "FastAttnProcessor",
    "PixelNeRF",
    "PixelNeRFConfig",
    "PriorConfig",
    "PriorExamples",
    "ReconFusionPrior",
    "SampleLoss",
    "Source",
    "TrainConfig",
    "ViewEncoding",
    "prior_loss_term",
    "sample_novel_pose",
    "set_attention_backend",
]
