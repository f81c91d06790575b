"""nerfacc 0.5.3's API on rfkernels' kernels (any backend, CPU included).

``from rfkernels.compat import nerfacc`` (or :func:`rfkernels.compat.install` so that unmodified
``import nerfacc`` resolves here). Each function's docstring says whether it runs a fused
rfkernels kernel or is composed from torch. The occupancy grid (``OccGridEstimator``,
``traverse_grids``, ``ray_aabb_intersect``) runs on the ``occgrid`` family; the camera utilities
(``nerfacc.cameras``) are PyTorch.
"""

from . import cameras, data_specs, estimators, grid, losses, pack, pdf, scan, volrend  # noqa: F401 (submodules)
from .data_specs import RayIntervals, RaySamples
from .estimators.occ_grid import OccGridEstimator
from .estimators.prop_net import PropNetEstimator
from .grid import ray_aabb_intersect, traverse_grids
from .losses import distortion
from .pack import pack_info
from .pdf import importance_sampling, searchsorted
from .scan import exclusive_prod, exclusive_sum, inclusive_prod, inclusive_sum
from .volrend import (
    accumulate_along_rays,
    render_transmittance_from_alpha,
    render_transmittance_from_density,
    render_visibility_from_alpha,
    render_visibility_from_density,
    render_weight_from_alpha,
    render_weight_from_density,
    rendering,
)

__version__ = "0.5.3"  # the nerfacc API version this layer follows

__all__ = [
    "__version__",
    "inclusive_prod",
    "exclusive_prod",
    "inclusive_sum",
    "exclusive_sum",
    "pack_info",
    "render_visibility_from_alpha",
    "render_visibility_from_density",
    "render_weight_from_alpha",
    "render_weight_from_density",
    "render_transmittance_from_alpha",
    "render_transmittance_from_density",
    "accumulate_along_rays",
    "rendering",
    "importance_sampling",
    "searchsorted",
    "RayIntervals",
    "RaySamples",
    "PropNetEstimator",
    "OccGridEstimator",
    "ray_aabb_intersect",
    "traverse_grids",
    "distortion",
]
