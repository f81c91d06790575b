"""s-space: the normalized ray distance of mip-NeRF 360 / Zip-NeRF.

``s = (f(t) - f(near)) / (f(far) - f(near))`` maps ``[near, far]`` onto ``[0, 1]`` for a monotone
``f``; samplers place bins uniformly in ``s`` and render at ``t = s_to_t(s)``. Kinds:

- ``"linear"``: ``f(t) = t``.
- ``"inverse"`` (disparity, mip-NeRF 360): ``f(t) = 1 / t`` (needs ``near > 0``).
- ``"power"`` (Zip-NeRF's power ladder): ``f(t) = P(premult * t, lam)`` with
  ``P(x, lam) = |lam - 1| / lam * ((x / |lam - 1| + 1) ** lam - 1)``; the paper uses ``lam=-1.5``,
  ``premult=2``: close to linear near the camera, disparity-like far away.

Plain element-wise torch (differentiable, any device); ``near`` / ``far`` are floats or tensors
broadcastable against the leading dims of ``t`` (e.g. ``[R]`` for ``t`` of shape ``[R, K]``).
``near`` is finite; ``far = inf`` (an unbounded scene) is allowed where ``f(inf)`` is finite:
``"inverse"`` and ``"power"`` with ``lam < 0`` (then ``s = 1`` is ``t = inf``).
"""

from __future__ import annotations

import torch

from .._checks import validation_enabled

KINDS = ("linear", "inverse", "power")


def _power(x, lam):
    a = abs(lam - 1.0)
    return a / lam * ((x / a + 1.0) ** lam - 1.0)


def _power_inv(y, lam):
    a = abs(lam - 1.0)
    return ((y * lam / a + 1.0) ** (1.0 / lam) - 1.0) * a


def _bounded_at_infinity(kind: str, lam: float) -> bool:
    """Whether f(inf) is finite, so that ``far = inf`` maps to s = 1: 1/t (``"inverse"``) and the power
    ladder with lam < 0 are bounded; f(t) = t and the ladder with lam > 0 are not."""
    return kind == "inverse" or (kind == "power" and lam < 0)


def _align(v, t: torch.Tensor, name: str, t_name: str):
    """A per-ray value [R] (or scalar, or ``t``'s shape) broadcast against ``t`` [R, ...]."""
    if isinstance(v, torch.Tensor) and v.dim():
        if v.dim() > t.dim() or tuple(v.shape) != tuple(t.shape[: v.dim()]):
            raise ValueError(
                f"`{name}` must be a scalar or per-ray [R] = {list(t.shape[:1])} (or shaped like `{t_name}` "
                f"{list(t.shape)}), got shape {list(v.shape)}"
            )
        return v.reshape(tuple(v.shape) + (1,) * (t.dim() - v.dim()))
    return v


class SpaceMap:
    """Bijection between metric distance ``t`` in ``[near, far]`` and ``s`` in ``[0, 1]``.

    >>> m = SpaceMap("inverse", near=0.5, far=100.0)
    >>> s = torch.linspace(0, 1, 65).expand(8, 65)    # uniform bins in s
    >>> t = m.s_to_t(s)                               # metric bin edges, t[:, 0] = 0.5
    """

    def __init__(self, kind: str = "linear", near=0.0, far=1.0, lam: float = -1.5, premult: float = 2.0):
        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}")
        if kind == "power" and (lam == 0.0 or lam == 1.0):
            raise ValueError("`lam` must not be 0 or 1 (the power ladder degenerates; use 'linear')")
        if kind == "power" and premult <= 0:
            raise ValueError(f"`premult` must be > 0, got {premult}")
        near_t = torch.as_tensor(near, dtype=torch.float64)
        far_t = torch.as_tensor(far, dtype=torch.float64)
        if near_t.dim() and far_t.dim() and near_t.shape != far_t.shape:
            raise ValueError(
                f"`near` {list(near_t.shape)} and `far` {list(far_t.shape)} must have the same shape (or be scalars)"
            )
        # value checks read tensor bounds (a host sync on a GPU): while validation is on, as for the ops
        if not (isinstance(near, torch.Tensor) or isinstance(far, torch.Tensor)) or validation_enabled():
            if bool(near_t.isnan().any()) or bool(far_t.isnan().any()):
                raise ValueError("`near` and `far` must not be NaN")
            if bool((far_t <= near_t).any()):
                raise ValueError("`far` must be > `near`")
            if kind == "inverse" and bool((near_t <= 0).any()):
                raise ValueError("`near` must be > 0 for kind='inverse' (f(t) = 1/t)")
            if kind == "power" and bool((near_t < 0).any()):
                raise ValueError("`near` must be >= 0 for kind='power'")
            if bool(near_t.isinf().any()):
                raise ValueError("`near` must be finite")
            if bool(far_t.isinf().any()) and not _bounded_at_infinity(kind, lam):
                raise ValueError(
                    f"`far` must be finite for kind={kind!r}{'' if kind == 'linear' else f' with lam={lam}'} "
                    "(f(far) = inf: t_to_s is 0 for every finite t, s_to_t inf or NaN); unbounded scenes use "
                    "kind='inverse' or 'power' with lam < 0"
                )
        self.kind, self.near, self.far, self.lam, self.premult = kind, near, far, float(lam), float(premult)

    def _f(self, t):
        if self.kind == "linear":
            return t
        if self.kind == "inverse":
            return 1.0 / t
        return _power(self.premult * t, self.lam)

    def _f_inv(self, y):
        if self.kind == "linear":
            return y
        if self.kind == "inverse":
            return 1.0 / y
        return _power_inv(y, self.lam) / self.premult

    def t_to_s(self, t: torch.Tensor) -> torch.Tensor:
        """Metric ``t`` (any shape) -> normalized ``s`` (same shape)."""
        f0, f1 = self._f(_align(self.near, t, "near", "t")), self._f(_align(self.far, t, "far", "t"))
        return (self._f(t) - f0) / (f1 - f0)

    def s_to_t(self, s: torch.Tensor) -> torch.Tensor:
        """Normalized ``s`` (any shape) -> metric ``t`` (same shape)."""
        f0, f1 = self._f(_align(self.near, s, "near", "s")), self._f(_align(self.far, s, "far", "s"))
        return self._f_inv(s * f1 + (1.0 - s) * f0)

    def __repr__(self) -> str:
        extra = f", lam={self.lam}, premult={self.premult}" if self.kind == "power" else ""
        return f"SpaceMap({self.kind!r}, near={self.near}, far={self.far}{extra})"


def t_to_s(t: torch.Tensor, near, far, kind: str = "linear", lam: float = -1.5) -> torch.Tensor:
    """Functional form of :meth:`SpaceMap.t_to_s`."""
    return SpaceMap(kind, near, far, lam).t_to_s(t)


def s_to_t(s: torch.Tensor, near, far, kind: str = "linear", lam: float = -1.5) -> torch.Tensor:
    """Functional form of :meth:`SpaceMap.s_to_t`."""
    return SpaceMap(kind, near, far, lam).s_to_t(s)
