"""What the registry stores for the gather: :class:`Reference` (the ``torch`` backend) and
:class:`Fused` (a :class:`~.contract.GatherKernels` object behind the :mod:`.ops` operators), with
:func:`pack_cameras`, the fused kernels' per-view camera layout."""

from __future__ import annotations

import torch

from .. import _checks
from . import ops, reference
from .contract import OPENGL_FLIP, GatherKernels, GatherOutput


def pack_cameras(intrinsics, extrinsics, image_size, feature_hw, convention) -> torch.Tensor:
    """-> [B, V, CAM_STRIDE] float32: world->camera [R|t] in the opencv convention (rows flipped for
    opengl), then the first two rows of K rescaled to feature pixels with centres at integers:
    ``x_feat = (k0 . x_cam) / z = u * W / W_img - 0.5`` (and the same for y)."""
    E = extrinsics[..., :3, :4].float()
    if convention == "opengl":
        E = E * E.new_tensor(OPENGL_FLIP)[:, None]
    (H_img, W_img), (H, W) = image_size, feature_hw
    K = intrinsics[..., :2, :].float() * intrinsics.new_tensor([W / W_img, H / H_img]).float()[:, None]
    K = K - K.new_tensor([0.0, 0.0, 0.5])  # row . (x, y, z) / z - 0.5
    return torch.cat([E.reshape(*E.shape[:2], 12), K.reshape(*K.shape[:2], 6)], dim=-1).contiguous()


class Reference:
    """The ``torch`` backend: :func:`.reference.gather` (``F.grid_sample``), autograd for gradients
    (also w.r.t. the cameras); ``deterministic`` does not apply. Mixed dtypes: computes in float32
    (float64 if every input is), returns ``features.dtype`` / ``points.dtype`` like the fused ones."""

    def gather(
        self,
        points,
        features,
        intrinsics,
        extrinsics,
        image_size,
        convention,
        reduce,
        near_eps,
        want_cam,
        deterministic,
    ) -> GatherOutput:
        cd = _checks.compute_dtype(points, features, intrinsics, extrinsics)  # float32 unless all float64
        out, mask, cam = reference.gather(
            points.to(cd),
            features.to(cd),
            intrinsics.to(cd),
            extrinsics.to(cd),
            image_size,
            convention,
            reduce,
            near_eps,
            want_cam,
        )
        return GatherOutput(out.to(features.dtype), mask, None if cam is None else cam.to(points.dtype))


class Fused:
    """A fused backend (``triton``/``cuda``): :class:`~.contract.GatherKernels` behind
    the :mod:`.ops` operators on float32 channels-last copies; no gradient w.r.t. the cameras."""

    def __init__(self, kernels: GatherKernels, name: str):
        self.kernels, self.name = kernels, name

    def gather(
        self,
        points,
        features,
        intrinsics,
        extrinsics,
        image_size,
        convention,
        reduce,
        near_eps,
        want_cam,
        deterministic,
    ) -> GatherOutput:
        if torch.is_grad_enabled() and (intrinsics.requires_grad or extrinsics.requires_grad):
            raise ValueError(
                f"backend={self.name!r} does not differentiate w.r.t. `intrinsics`/`extrinsics`: "
                "detach them or use backend='torch'"
            )
        cams = pack_cameras(intrinsics, extrinsics, image_size, features.shape[-2:], convention)
        feats = features.permute(0, 1, 3, 4, 2).float().contiguous()  # [B, V, H, W, C]
        out, mask, cam, _ = ops.gather(
            points.float().contiguous(), feats, cams, float(near_eps), reduce, want_cam, deterministic, self.name
        )
        cam = cam if want_cam else None
        if cam is not None:
            if convention == "opengl":
                cam = cam * cam.new_tensor(OPENGL_FLIP)
            cam = cam.to(points.dtype)
        return GatherOutput(out.to(features.dtype), mask, cam)
