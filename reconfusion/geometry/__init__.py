"""Few-view geometry from the training views themselves: features matched between them (OpenCV SIFT,
optional dependency), triangulated with the known cameras and filtered, as sparse depth targets for
:mod:`reconfusion.losses.sparse_depth`."""

from .matching import GeometryDependencyError
from .sparse_points import SparsePoints, load_or_triangulate, triangulate_views
from .triangulate import RejectionRules, projection_matrix, triangulate_checked, triangulate_dlt

__all__ = [
    "GeometryDependencyError",
    "RejectionRules",
    "SparsePoints",
    "load_or_triangulate",
    "projection_matrix",
    "triangulate_checked",
    "triangulate_dlt",
    "triangulate_views",
]
