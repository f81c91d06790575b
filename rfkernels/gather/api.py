"""The gather's public function :func:`gather_features`: argument checks, then the backend chosen by
:mod:`rfkernels._dispatch`."""

from __future__ import annotations

import torch

from .. import _checks, _dispatch
from .contract import CONVENTIONS, REDUCTIONS, GatherOutput


def _validate(points, features, intrinsics, extrinsics, image_size, convention, reduce, near_eps):
    """Shape/dtype/device checks (+ value checks of the intrinsics); returns (H_img, W_img)."""
    _checks.check_tensor("features", features, ndim=5)
    B, V, C, H, W = features.shape
    if min(V, C, H, W) < 1:
        raise ValueError(f"`features` [B, V, C, H, W] needs V, C, H, W >= 1, got {list(features.shape)}")
    device = features.device
    _checks.check_tensor("points", points, shape=[B, None, 3], device=device)
    _checks.check_tensor("intrinsics", intrinsics, ndim=4, device=device)
    _checks.check_tensor("extrinsics", extrinsics, ndim=4, device=device)
    for name, t, tails in (("intrinsics", intrinsics, ((3, 3),)), ("extrinsics", extrinsics, ((3, 4), (4, 4)))):
        if t.shape[0] != B or t.shape[1] != V or tuple(t.shape[2:]) not in tails:
            want = " or ".join(f"[{B}, {V}, {a}, {b}]" for a, b in tails)
            raise ValueError(f"`{name}` must have shape {want} (B and V of `features`), got {list(t.shape)}")
    if convention not in CONVENTIONS:
        raise ValueError(f"`convention` must be one of {CONVENTIONS}, got {convention!r}")
    if reduce not in REDUCTIONS:
        raise ValueError(f"`reduce` must be one of {REDUCTIONS}, got {reduce!r}")
    if not isinstance(near_eps, (int, float)) or near_eps != near_eps:
        raise ValueError(f"`near_eps` must be a number, got {near_eps!r}")
    if image_size is None:
        image_size = (H, W)
    try:
        ok = len(tuple(image_size)) == 2 and all(int(s) == s and s >= 1 for s in image_size)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"`image_size` must be (H_img, W_img) positive ints, got {image_size!r}")
    _checks.check_no_nan("points", points, _checks.reads_values(points))
    _checks.check_no_nan("features", features, _checks.reads_values(features))
    if _checks.reads_values(intrinsics) and intrinsics.numel():
        K = intrinsics.detach().double()
        if not bool(torch.isfinite(K).all()) or not bool(torch.isfinite(extrinsics).all()):
            raise ValueError("`intrinsics` / `extrinsics` contain non-finite values")
        last = K[..., 2, :]
        if not bool((last == last.new_tensor([0.0, 0.0, 1.0])).all()):
            raise ValueError("`intrinsics` must have last row [0, 0, 1] (pinhole K)")
        if bool((torch.linalg.det(K).abs() < 1e-12).any()):
            raise ValueError("`intrinsics` is singular (fx * fy == 0) for some camera")
    return int(image_size[0]), int(image_size[1])


def gather_features(
    points: torch.Tensor,
    features: torch.Tensor,
    intrinsics: torch.Tensor,
    extrinsics: torch.Tensor,
    *,
    image_size: tuple[int, int] | None = None,
    convention: str = "opencv",
    reduce: str = "none",
    near_eps: float = 1e-4,
    return_camera_coords: bool = False,
    deterministic: bool | None = None,
    backend: str | None = None,
) -> GatherOutput:
    """Project world points into V source cameras and bilinearly sample their feature maps.

    Args:
        points: ``[B, N, 3]`` world-space points.
        features: ``[B, V, C, H, W]`` per-view feature maps (any float dtype; fused backends compute
            in float32 and return ``features.dtype``).
        intrinsics: ``[B, V, 3, 3]`` pinhole K (last row ``[0, 0, 1]``) in pixels of an image of
            ``image_size`` (default: the feature size ``(H, W)``). Pixel edges are at integers: pixel
            column ``i`` spans ``[i, i + 1)`` (centred principal point ``cx = W_img / 2``); add 0.5 to
            ``cx, cy`` of intrinsics whose pixel centres are at integers.
        extrinsics: ``[B, V, 3, 4]`` or ``[B, V, 4, 4]`` world-to-camera ``[R | t]`` (last row ignored).
        convention: ``"opencv"`` (camera looks along +z, y down) or ``"opengl"`` (looks along -z,
            y up; the camera space is flipped to opencv as ``(x, -y, -z)`` before projecting).
        reduce: ``"none"`` -> ``[B, N, V, C]``; ``"mean"`` / ``"max"`` over valid views -> ``[B, N, C]``;
            ``"mean_var"`` -> ``[B, N, 2C]`` = ``cat(mean, population variance)`` (IBRNet). Points no
            view sees get zeros.
        near_eps: a point is in front of a camera iff its depth ``z > near_eps``.
        return_camera_coords: also return camera-space coordinates ``[B, N, V, 3]`` (in ``convention``)
            for every point and view, valid or not (PixelNeRF feeds them to its MLP).
        deterministic: fused backends only: accumulate the feature-map gradient as int64 fixed point
            (bitwise reproducible; each addend is truncated to a multiple of 2^-k, about 2^-60 of the
            summed gradient magnitude) instead of float atomics. ``None`` follows
            ``torch.are_deterministic_algorithms_enabled()``.

    Sampling equals ``F.grid_sample(align_corners=False, padding_mode="zeros")`` at
    ``grid = (2u / W_img - 1, 2v / H_img - 1)``; a view is valid (``mask``) iff the point is in front
    and ``-1 <= grid <= 1`` on both axes; invalid views sample exactly 0 (also for gradients).

    Returns:
        :class:`GatherOutput` ``(features, mask, camera_coords)``.
    """
    image_size = _validate(points, features, intrinsics, extrinsics, image_size, convention, reduce, near_eps)
    if deterministic is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
    impl = _dispatch.implementation("gather", backend, features)
    return impl.gather(
        points,
        features,
        intrinsics,
        extrinsics,
        image_size,
        convention,
        reduce,
        near_eps,
        return_camera_coords,
        bool(deterministic),
    )
