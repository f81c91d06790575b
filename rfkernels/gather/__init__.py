"""PixelNeRF feature gather (op family 4): project world points into every source camera,
bilinearly sample that view's feature map, and optionally reduce across views.

The ``torch`` backend is :mod:`.reference` (``F.grid_sample``) differentiated by autograd. The
``triton`` and ``cuda`` backends run one fused kernel (transform, project, sample, reduce) on a
channels-last float32 copy of the feature maps, never materializing the per-view tensor for the
reduced outputs; their backward recomputes the projection and scatters into the feature-map
gradient with atomics (float: summation order varies; ``deterministic``: int64 fixed point, bitwise
reproducible), and differentiates w.r.t. the points (not w.r.t. the cameras).
"""
from __future__ import annotations

from typing import NamedTuple, Protocol

import torch

from .. import _checks, _dispatch
from . import reference
from .reference import REDUCTIONS

CONVENTIONS = ("opencv", "opengl")
REDUCE_CODE = {name: i for i, name in enumerate(REDUCTIONS)}  # kernel constant: none=0 mean=1 mean_var=2 max=3
CAM_STRIDE = 18  # packed per-view camera: 12 floats world->camera [R|t] (opencv) + 6 floats of K_feat


class GatherOutput(NamedTuple):
    features: torch.Tensor  # [B, N, V, C] (none) | [B, N, C] (mean, max) | [B, N, 2C] (mean_var)
    mask: torch.Tensor  # [B, N, V] bool: in front of the camera (z > near_eps) and inside the image
    camera_coords: torch.Tensor | None  # [B, N, V, 3] camera-space points (in `convention`) or None


Tensor = torch.Tensor


class GatherKernels(Protocol):
    """What a fused gather backend (``triton.py``, ``cuda.py``) provides. ``points`` ``[B, N, 3]``,
    ``feats`` ``[B, V, H, W, C]`` (channels last), ``cams`` ``[B, V, 18]`` (:func:`pack_cameras`), all
    float32 contiguous; ``reduce`` is a :data:`REDUCE_CODE`."""

    def gather_forward(self, points: Tensor, feats: Tensor, cams: Tensor, near_eps: float, reduce: int,
                       want_cam: bool) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """-> features (shape by ``reduce``), mask [B, N, V] bool, camera coords [B, N, V, 3] | None,
        argmax view [B, N, C] int32 (``max`` only) | None."""

    def gather_backward(self, g_out: Tensor, g_cam: Tensor | None, points: Tensor, feats: Tensor, cams: Tensor,
                        out: Tensor | None, mask: Tensor, arg: Tensor | None, near_eps: float, reduce: int,
                        need_points: bool, scale: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """-> d feats [B, V, H, W, C], d points [B, N, 3] | None. ``out``: the forward output
        (``mean_var`` only); ``scale`` [1]: int64 fixed-point accumulation with this scale
        (deterministic) instead of float atomics."""


# ----------------------------------------------------------------------------------- validation
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
    _checks.check_no_nan("points", points, _checks.validation_enabled())
    _checks.check_no_nan("features", features, _checks.validation_enabled())
    if _checks.validation_enabled() and intrinsics.numel():
        K = intrinsics.detach().double()
        if not bool(torch.isfinite(K).all()) or not bool(torch.isfinite(extrinsics).all()):
            raise ValueError("`intrinsics` / `extrinsics` contain non-finite values")
        last = K[..., 2, :]
        if not bool((last == last.new_tensor([0.0, 0.0, 1.0])).all()):
            raise ValueError("`intrinsics` must have last row [0, 0, 1] (pinhole K)")
        if bool((torch.linalg.det(K).abs() < 1e-12).any()):
            raise ValueError("`intrinsics` is singular (fx * fy == 0) for some camera")
    return int(image_size[0]), int(image_size[1])


def pack_cameras(intrinsics, extrinsics, image_size, feature_hw, convention) -> torch.Tensor:
    """-> [B, V, 18] float32: world->camera [R|t] in the opencv convention (rows flipped for
    opengl), then the first two rows of K rescaled to feature pixels with centres at integers:
    ``x_feat = (k0 . x_cam) / z = u * W / W_img - 0.5`` (and the same for y)."""
    E = extrinsics[..., :3, :4].float()
    if convention == "opengl":
        E = E * E.new_tensor(reference._OPENGL_FLIP)[:, None]
    (H_img, W_img), (H, W) = image_size, feature_hw
    K = intrinsics[..., :2, :].float() * intrinsics.new_tensor([W / W_img, H / H_img]).float()[:, None]
    K = K - K.new_tensor([0.0, 0.0, 0.5])  # row . (x, y, z) / z - 0.5
    return torch.cat([E.reshape(*E.shape[:2], 12), K.reshape(*K.shape[:2], 6)], dim=-1).contiguous()


def fixed_point_scale(g_out: torch.Tensor, feats: torch.Tensor, reduce: str) -> torch.Tensor:
    """[1] float32 power of two ``2^k`` for the deterministic backward, without a device sync.

    Every per-view sample gradient scattered to the feature maps is bounded, summed over all points
    and views, by ``S = sum |g|`` (``+ 4 sum |g_var| max |f|`` for mean_var), so with ``2^k <= 2^61 / S``
    the int64 fixed-point sums ``sum trunc(w g 2^k)`` cannot overflow; each addend loses < 2^-k."""
    g = g_out.double().abs()
    if reduce == "mean_var":
        C = feats.shape[-1]
        bound = g[..., :C].sum() + 4.0 * g[..., C:].sum() * feats.abs().max().double()
    else:
        bound = g.sum()
    k = torch.floor(61.0 - torch.log2(bound.clamp(min=1e-30))).clamp(-100.0, 100.0)
    return torch.exp2(k).float().reshape(1)


# -------------------------------------------------------------------------- autograd function
class _Gather(torch.autograd.Function):
    """(points [B,N,3] f32, feats [B,V,H,W,C] f32 channels-last, cams [B,V,18]) -> (out, mask, cam)."""

    @staticmethod
    def forward(ctx, points, feats, cams, near_eps, reduce, want_cam, deterministic, kernels):
        out, mask, cam, argmax = kernels.gather_forward(points, feats, cams, float(near_eps), REDUCE_CODE[reduce],
                                                    want_cam)
        ctx.save_for_backward(points, feats, cams, out if reduce == "mean_var" else None, mask, argmax)
        ctx.near_eps, ctx.reduce, ctx.deterministic, ctx.kernels = float(near_eps), reduce, deterministic, kernels
        ctx.mark_non_differentiable(mask)
        return out, mask, cam

    @staticmethod
    def backward(ctx, g_out, g_mask, g_cam):
        points, feats, cams, out, mask, argmax = ctx.saved_tensors
        need_points = ctx.needs_input_grad[0]  # grads of unused outputs arrive as zeros (materialized)
        g_out = g_out.contiguous()
        scale = fixed_point_scale(g_out, feats, ctx.reduce) if ctx.deterministic else None
        g_feats, g_points = ctx.kernels.gather_backward(
            g_out, g_cam.contiguous() if (g_cam is not None and need_points) else None,
            points, feats, cams, out, mask, argmax, ctx.near_eps, REDUCE_CODE[ctx.reduce], need_points, scale,
        )
        return g_points, g_feats, None, None, None, None, None, None


# ------------------------------------------------------------------------------ public function
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
    return impl.gather(points, features, intrinsics, extrinsics, image_size, convention, reduce, near_eps,
                       return_camera_coords, bool(deterministic))


# ------------------------------------------------------------------------------ implementations
class Reference:
    """The ``torch`` backend: :func:`.reference.gather` (``F.grid_sample``), autograd for gradients
    (also w.r.t. the cameras); ``deterministic`` does not apply. Mixed dtypes: computes in float32
    (float64 if every input is), returns ``features.dtype`` / ``points.dtype`` like the fused ones."""

    def gather(self, points, features, intrinsics, extrinsics, image_size, convention, reduce, near_eps,
               want_cam, deterministic) -> GatherOutput:
        cd = _checks.compute_dtype(points, features, intrinsics, extrinsics)  # float32 unless all float64
        out, mask, cam = reference.gather(points.to(cd), features.to(cd), intrinsics.to(cd), extrinsics.to(cd),
                                          image_size, convention, reduce, near_eps, want_cam)
        return GatherOutput(out.to(features.dtype), mask, None if cam is None else cam.to(points.dtype))


class Fused:
    """A fused backend (``triton``/``cuda``): :class:`GatherKernels` behind :class:`_Gather` on
    float32 channels-last copies; no gradient w.r.t. the cameras."""

    def __init__(self, kernels: GatherKernels, name: str):
        self.kernels, self.name = kernels, name

    def gather(self, points, features, intrinsics, extrinsics, image_size, convention, reduce, near_eps,
               want_cam, deterministic) -> GatherOutput:
        if torch.is_grad_enabled() and (intrinsics.requires_grad or extrinsics.requires_grad):
            raise ValueError(f"backend={self.name!r} does not differentiate w.r.t. `intrinsics`/`extrinsics`: "
                             "detach them or use backend='torch'")
        cams = pack_cameras(intrinsics, extrinsics, image_size, features.shape[-2:], convention)
        feats = features.permute(0, 1, 3, 4, 2).float().contiguous()  # [B, V, H, W, C]
        out, mask, cam = _Gather.apply(points.float().contiguous(), feats, cams, near_eps, reduce, want_cam,
                                       deterministic, self.kernels)
        if cam is not None:
            if convention == "opengl":
                cam = cam * cam.new_tensor(reference._OPENGL_FLIP)
            cam = cam.to(points.dtype)
        return GatherOutput(out.to(features.dtype), mask, cam)


__all__ = ["GatherOutput", "fixed_point_scale", "gather_features"]

_dispatch.register_family("gather", GatherKernels, torch=Reference(), fused=Fused,
                          triton="rfkernels.gather.triton", cuda="rfkernels.gather.cuda")
