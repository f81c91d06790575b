"""nerfacc.data_specs: the ``RayIntervals`` / ``RaySamples`` containers (same fields as nerfacc)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class RaySamples:
    """Samples along rays: ``vals`` batched ``[R, S]`` or flat ``[N]`` with ``packed_info [R, 2]``
    and/or ``ray_indices [N]``."""

    vals: torch.Tensor
    packed_info: Optional[torch.Tensor] = None
    ray_indices: Optional[torch.Tensor] = None
    is_valid: Optional[torch.Tensor] = None

    @property
    def device(self) -> torch.device:
        return self.vals.device


@dataclass
class RayIntervals:
    """Interval edges along rays: ``vals`` batched ``[R, E]`` or flat ``[N_edges]`` with
    ``packed_info``/``ray_indices`` and the ``is_left``/``is_right`` edge masks."""

    vals: torch.Tensor
    packed_info: Optional[torch.Tensor] = None
    ray_indices: Optional[torch.Tensor] = None
    is_left: Optional[torch.Tensor] = None
    is_right: Optional[torch.Tensor] = None

    @property
    def device(self) -> torch.device:
        return self.vals.device


__all__ = ["RayIntervals", "RaySamples"]
