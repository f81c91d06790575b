"""nerfacc.data_specs: the ``RayIntervals`` / ``RaySamples`` containers (same fields as nerfacc)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RaySamples:
    """Samples along rays: ``vals`` batched ``[R, S]`` or flat ``[N]`` with ``packed_info [R, 2]``
    and/or ``ray_indices [N]``."""

    vals: torch.Tensor
    packed_info: torch.Tensor | None = None
    ray_indices: torch.Tensor | None = None
    is_valid: torch.Tensor | None = None

    @property
    def device(self) -> torch.device:
        return self.vals.device


@dataclass
class RayIntervals:
    """Interval edges along rays: ``vals`` batched ``[R, E]`` or flat ``[N_edges]`` with
    ``packed_info``/``ray_indices`` and the ``is_left``/``is_right`` edge masks."""

    vals: torch.Tensor
    packed_info: torch.Tensor | None = None
    ray_indices: torch.Tensor | None = None
    is_left: torch.Tensor | None = None
    is_right: torch.Tensor | None = None

    @property
    def device(self) -> torch.device:
        return self.vals.device


__all__ = ["RayIntervals", "RaySamples"]
