"""Pinhole cameras, axis conventions and pose normalization.

Conventions (camera-to-world matrices ``c2w`` ``[..., 4, 4]`` or ``[..., 3, 4]``):

- ``opengl`` (also Blender, NeRF, nerfstudio): camera axes x right, y up, z backwards; the camera
  looks along -z. This is the convention of every :class:`~reconfusion.data.scene.Scene`.
- ``opencv`` (also COLMAP): x right, y down, z forwards; the camera looks along +z.
- ``llff``: ``poses_bounds.npy`` rotation columns are [down, right, backwards].

Converting between opengl and opencv flips the camera's y and z axes (columns 1 and 2 of the
rotation); the camera centre is unchanged. The conversion is its own inverse.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels; pixel (i, j) has its centre at (j + 0.5, i + 0.5)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_focal(cls, focal: float, width: int, height: int) -> Intrinsics:
        """Square pixels, principal point at the image centre."""
        return cls(float(focal), float(focal), width / 2.0, height / 2.0, int(width), int(height))

    def scaled(self, sx: float, sy: float | None = None) -> Intrinsics:
        """Intrinsics of the image resized by ``sx`` (and ``sy``) to ``round(width * sx)`` etc."""
        sy = sx if sy is None else sy
        w, h = int(round(self.width * sx)), int(round(self.height * sy))
        rx, ry = w / self.width, h / self.height  # the exact ratio of the integer sizes
        return Intrinsics(self.fx * rx, self.fy * ry, self.cx * rx, self.cy * ry, w, h)

    def matrix(self) -> torch.Tensor:
        """``K`` ``[3, 3]``."""
        return torch.tensor([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def as_tensor(self) -> torch.Tensor:
        """``[fx, fy, cx, cy]``."""
        return torch.tensor([self.fx, self.fy, self.cx, self.cy])


def to_homogeneous(c2w: torch.Tensor) -> torch.Tensor:
    """``[..., 3, 4]`` or ``[..., 4, 4]`` -> ``[..., 4, 4]``."""
    if c2w.shape[-2:] == (4, 4):
        return c2w
    if c2w.shape[-2:] != (3, 4):
        raise ValueError(f"camera poses must be [..., 3, 4] or [..., 4, 4], got {list(c2w.shape)}")
    bottom = torch.zeros(*c2w.shape[:-2], 1, 4, dtype=c2w.dtype, device=c2w.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat([c2w, bottom], dim=-2)


def opencv_to_opengl(c2w: torch.Tensor) -> torch.Tensor:
    """Flip the camera's y and z axes (works both ways)."""
    flip = torch.ones(c2w.shape[-1], dtype=c2w.dtype, device=c2w.device)
    flip[1:3] = -1.0
    out = c2w.clone()
    out[..., :3, :3] = c2w[..., :3, :3] * flip[:3]
    return out


opengl_to_opencv = opencv_to_opengl


def llff_to_opengl(rot_pos: torch.Tensor) -> torch.Tensor:
    """LLFF ``[..., 3, 4]`` with rotation columns [down, right, back] -> opengl [right, up, back]."""
    r = rot_pos
    return torch.stack([r[..., 1], -r[..., 0], r[..., 2], r[..., 3]], dim=-1)


def convert(c2w: torch.Tensor, src: str, dst: str = "opengl") -> torch.Tensor:
    """Convert poses between ``opengl`` and ``opencv`` conventions (``llff`` only as ``src``)."""
    known = ("opengl", "opencv", "llff")
    if src not in known or dst not in ("opengl", "opencv"):
        raise ValueError(f"unknown camera convention {src!r} -> {dst!r}; known: {known}")
    if src == "llff":
        c2w, src = llff_to_opengl(c2w[..., :3, :4]), "opengl"
    return c2w if src == dst else opencv_to_opengl(c2w)


def camera_centers(c2w: torch.Tensor) -> torch.Tensor:
    return c2w[..., :3, 3]


def _normalize(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def look_at(forward: torch.Tensor, up: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """OpenGL camera ``[4, 4]`` at ``center`` whose backward axis is ``-forward``."""
    z = _normalize(-forward)
    x = _normalize(torch.cross(up, z, dim=-1))
    y = torch.cross(z, x, dim=-1)
    return to_homogeneous(torch.stack([x, y, z, center], dim=-1))


def average_pose(c2w: torch.Tensor) -> torch.Tensor:
    """The mean camera ``[4, 4]`` (mean centre, mean viewing axis, mean up) as in LLFF/NeRF."""
    center = camera_centers(c2w).mean(0)
    back = _normalize(c2w[:, :3, 2].sum(0))
    up = c2w[:, :3, 1].sum(0)
    return look_at(-back, up, center)


def recenter_poses(c2w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Express poses in the frame of their average pose: -> (new ``[N, 4, 4]``, transform ``[4, 4]``)."""
    c2w = to_homogeneous(c2w)
    transform = torch.linalg.inv(average_pose(c2w))
    return transform @ c2w, transform


def rescale_poses(c2w: torch.Tensor, scale: float) -> torch.Tensor:
    out = to_homogeneous(c2w).clone()
    out[..., :3, 3] *= scale
    return out


def focus_point(c2w: torch.Tensor) -> torch.Tensor:
    """The point nearest to every camera's optical axis in the least-squares sense ``[3]`` (the point
    an inward-looking capture is centred on, as mip-NeRF 360's ``focus_point_fn``).

    Solves ``sum_i (I - d_i d_i^T) p = sum_i (I - d_i d_i^T) o_i`` for view directions ``d_i`` and
    centres ``o_i``; for (nearly) parallel axes the system is singular and the pseudo-inverse gives
    the minimum-norm solution, so callers use it for converging rigs only.
    """
    c2w = to_homogeneous(c2w).double()
    d = _normalize(-c2w[:, :3, 2])
    proj = torch.eye(3, dtype=d.dtype) - d[:, :, None] * d[:, None, :]
    rhs = (proj @ c2w[:, :3, 3, None]).sum(0)
    return (torch.linalg.pinv(proj.sum(0)) @ rhs)[:, 0]


def translation(offset: torch.Tensor) -> torch.Tensor:
    """The rigid transform ``[4, 4]`` that moves points by ``offset`` ``[3]``."""
    out = torch.eye(4, dtype=offset.dtype)
    out[:3, 3] = offset
    return out


CENTERS = ("average", "focus")


def normalize_poses(
    c2w: torch.Tensor, target_radius: float = 1.0, center: str = "average"
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Recentre and scale so the farthest camera is ``target_radius`` from the origin.

    ``center="average"``: express the poses in their average pose's frame (LLFF/NeRF);
    ``"focus"``: translate the cameras' :func:`focus_point` to the origin, axes unchanged (mip-NeRF
    360's recentring of captures that look inwards at an object).

    Returns ``(poses [N, 4, 4], transform [4, 4], scale)``: ``poses = scale * transform @ c2w``
    (the scale applies to the translation only).
    """
    if center not in CENTERS:
        raise ValueError(f"`center` must be one of {CENTERS}, got {center!r}")
    if center == "focus":
        c2w = to_homogeneous(c2w)
        transform = translation(-focus_point(c2w)).to(c2w.dtype)
        poses = transform @ c2w
    else:
        poses, transform = recenter_poses(c2w)
    radius = camera_centers(poses).norm(dim=-1).max().item()
    scale = target_radius / radius if radius > 0 else 1.0
    return rescale_poses(poses, scale), transform, scale


def spiral_path(
    c2w: torch.Tensor,
    focus_depth: float,
    n_frames: int = 60,
    rots: float = 2.0,
    zrate: float = 0.5,
    radius_scale: float = 1.0,
) -> torch.Tensor:
    """A forward-facing spiral around the average pose, looking at ``focus_depth`` ahead: ``[n, 4, 4]``."""
    c2w = to_homogeneous(c2w)
    avg = average_pose(c2w)
    offsets = (camera_centers(c2w) - avg[:3, 3]) @ avg[:3, :3]  # in the average camera's frame
    rads = offsets.abs().quantile(0.9, dim=0) * radius_scale
    frames = []
    for theta in torch.linspace(0, 2 * torch.pi * rots, n_frames + 1)[:-1]:
        local = torch.stack([torch.cos(theta), -torch.sin(theta), -torch.sin(theta * zrate)]) * rads
        center = avg[:3, :3] @ local + avg[:3, 3]
        target = avg[:3, :3] @ torch.tensor([0.0, 0.0, -focus_depth]) + avg[:3, 3]
        frames.append(look_at(target - center, avg[:3, 1], center))
    return torch.stack(frames)


def orbit_path(c2w: torch.Tensor, n_frames: int = 60) -> torch.Tensor:
    """A turntable around the world origin at the cameras' mean distance and height: ``[n, 4, 4]``."""
    centers = camera_centers(to_homogeneous(c2w))
    up = _normalize(c2w[:, :3, 1].mean(0))
    height = (centers @ up).mean()
    flat = centers - (centers @ up)[:, None] * up
    radius = flat.norm(dim=-1).mean()
    a = _normalize(flat[0]) if flat[0].norm() > 1e-8 else _normalize(torch.cross(up, torch.tensor([1.0, 0, 0]), dim=-1))
    b = torch.cross(up, a, dim=-1)
    frames = []
    for theta in torch.linspace(0, 2 * torch.pi, n_frames + 1)[:-1]:
        center = radius * (torch.cos(theta) * a + torch.sin(theta) * b) + height * up
        frames.append(look_at(-center, up, center))
    return torch.stack(frames)


__all__ = [
    "CENTERS",
    "Intrinsics",
    "average_pose",
    "camera_centers",
    "convert",
    "focus_point",
    "look_at",
    "llff_to_opengl",
    "normalize_poses",
    "opencv_to_opengl",
    "opengl_to_opencv",
    "orbit_path",
    "recenter_poses",
    "rescale_poses",
    "spiral_path",
    "to_homogeneous",
    "translation",
]
