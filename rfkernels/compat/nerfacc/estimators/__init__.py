"""nerfacc.estimators: the proposal-network estimator (the occupancy grid is not provided)."""

from .base import AbstractEstimator
from .prop_net import PropNetEstimator, get_proposal_requires_grad_fn

__all__ = ["AbstractEstimator", "PropNetEstimator", "get_proposal_requires_grad_fn"]
