"""rfkernels: fused kernels for few-view NeRF with diffusion priors.

Every op takes ``backend="auto" | "torch" | "triton" | "cuda"`` (``None`` = the process default,
see :func:`set_backend`). ``torch`` is the readable reference and ground truth of the tests.
"""

from ._checks import set_validation, validation_enabled
from ._compile import set_torch_compile, torch_compile_enabled, use_torch_compile
from ._dispatch import BACKENDS, BackendUnavailableError, available_backends, get_backend, set_backend, use_backend
from ._info import info
from ._packing import offsets_to_ray_indices, ray_indices_to_offsets
from ._version import __version__
from .gather import GatherOutput, gather_features
from .hashgrid import hash_grid_encode
from .hashgrid.module import HashGridEncoding
from .occgrid import Traversal, ray_aabb_intersect, traverse_grids
from .sampling import SpaceMap, interlevel_loss, s_to_t, sample_pdf, t_to_s
from .volrend import VolumeRenderOutput, distortion_loss, render_weights, volume_render

__all__ = [
    "BACKENDS",
    "__version__",
    "BackendUnavailableError",
    "HashGridEncoding",
    "SpaceMap",
    "Traversal",
    "GatherOutput",
    "VolumeRenderOutput",
    "available_backends",
    "distortion_loss",
    "gather_features",
    "get_backend",
    "hash_grid_encode",
    "info",
    "interlevel_loss",
    "offsets_to_ray_indices",
    "ray_aabb_intersect",
    "ray_indices_to_offsets",
    "render_weights",
    "s_to_t",
    "sample_pdf",
    "set_backend",
    "set_torch_compile",
    "set_validation",
    "t_to_s",
    "traverse_grids",
    "torch_compile_enabled",
    "use_backend",
    "use_torch_compile",
    "validation_enabled",
    "volume_render",
]
