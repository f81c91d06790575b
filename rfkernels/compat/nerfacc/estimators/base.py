"""nerfacc.estimators.base: ``AbstractEstimator`` (an ``nn.Module`` that knows its device)."""

from typing import Any

import torch
from torch import nn


class AbstractEstimator(nn.Module):
    """Base of the transmittance estimators; ``device`` follows ``.to()``."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("_dummy", torch.empty(0), persistent=False)

    @property
    def device(self) -> torch.device:
        return self._dummy.device

    def sampling(self, *args, **kwargs) -> Any:
        raise NotImplementedError

    def update_every_n_steps(self, *args, **kwargs) -> None:
        raise NotImplementedError
