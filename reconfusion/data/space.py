"""Which space a capture is reconstructed in, decided from its cameras, and the frame each space needs.

A ``poses_bounds.npy`` capture may be forward-facing (LLFF) or look inwards at an object from all
around (mip-NeRF 360, any COLMAP ``imgs2poses`` output), so the file format does not decide it.
:func:`choose_space` does, from the cameras:

- **NDC** only when every view direction lies within ``half the narrower field of view`` of the mean
  view direction, and every camera's nearest content lies in front of the mean camera. NDC maps the
  frustum of the mean camera to a cube: a camera whose optical axis leaves that frustum looks mostly
  at content NDC does not hold (and near 90 degrees its rays run parallel to the near plane and
  never reach it); content behind the mean camera has no NDC depth at all. LLFF's scenes turn by at
  most ~14 degrees (fern 9.5, horns 14.1) against a half field of view of ~25 degrees; a capture
  all around an object turns by 90 degrees or more.
- otherwise **contract**: :func:`unbounded_frame` recentres on the cameras' focus point, scales the
  cameras into the unit ball (:func:`reconfusion.cameras.normalize_poses`, as the nerfstudio and
  COLMAP loaders do) and the model contracts space beyond it (mip-NeRF 360).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..cameras import normalize_poses, to_homogeneous
from .scene import SPACES, DataError

SPACE_CHOICES = ("auto",) + SPACES
# Bounds of rays in the normalized frame (cameras within radius 1) when the capture gives none: the
# nearest content may sit close to a camera; the far bound only has to exceed where contraction
# saturates (the power spacing maps it to s = 1), as in the nerfstudio and COLMAP loaders.
UNBOUNDED_NEAR, UNBOUNDED_FAR = 0.05, 1000.0
# With per-view near bounds (LLFF's poses_bounds.npy), rays start at this fraction of the nearest
# bound, as NeRF's NDC near plane does (bd_factor 0.75): the empty space in front of the cameras is
# not sampled, so few-view floaters cannot hide there, and FreeNeRF's occlusion term (s < 0.08)
# acts right in front of the nearest content as it does in NDC.
NEAR_BOUND_FRACTION = 0.75
BOX_FAR = 4.0  # a ray from inside the radius-1 ball crosses the [-1, 1]^3 box within 1 + sqrt(3)
# A capture whose background was removed (an object on a uniform white or black backdrop) shows that
# colour all along every image's border; a real surrounding scene (mip-NeRF 360's) does not.
BACKDROP_LEVEL = 0.02  # distance of a channel from 1 (white) or 0 (black)
BACKDROP_BORDER_FRACTION = 0.98  # of the border pixels of all images


@dataclass(frozen=True)
class SpaceChoice:
    """``space`` (one of :data:`~reconfusion.data.scene.SPACES`) and a one-line ``reason``."""

    space: str
    reason: str


def view_angles_deg(c2w: torch.Tensor) -> torch.Tensor:
    """``[N, 4, 4]`` OpenGL cameras -> ``[N]`` angle (degrees) of each view direction from their mean."""
    fwd = -to_homogeneous(c2w)[:, :3, 2].double()
    fwd = fwd / fwd.norm(dim=-1, keepdim=True)
    mean = fwd.sum(0)
    mean = mean / mean.norm().clamp_min(1e-12)
    return torch.rad2deg(torch.acos((fwd @ mean).clamp(-1.0, 1.0)))


def forward_cone_deg(intrinsics: torch.Tensor, width: int, height: int) -> float:
    """Half the narrower field of view (degrees), the median over cameras ``intrinsics`` ``[N, 4]``
    (fx, fy, cx, cy in pixels of ``width x height`` images)."""
    half_w = torch.atan(0.5 * width / intrinsics[:, 0].double())
    half_h = torch.atan(0.5 * height / intrinsics[:, 1].double())
    return math.degrees(float(torch.minimum(half_w, half_h).median()))


def content_in_front(c2w: torch.Tensor, near: torch.Tensor) -> bool:
    """Whether every camera's nearest content (``near`` ``[N]`` along its view direction) lies in front
    of the mean camera (positive depth along the mean view direction, from the mean centre)."""
    c2w = to_homogeneous(c2w).double()
    fwd = -c2w[:, :3, 2]
    mean = fwd.sum(0)
    mean = mean / mean.norm().clamp_min(1e-12)
    nearest = c2w[:, :3, 3] + near.double()[:, None] * fwd
    return bool((((nearest - c2w[:, :3, 3].mean(0)) @ mean) > 0).all())


def choose_space(
    c2w: torch.Tensor, intrinsics: torch.Tensor, width: int, height: int, near: torch.Tensor
) -> SpaceChoice:
    """NDC for a forward-facing rig, else contract (see the module docstring).

    Args:
        c2w: ``[N, 4, 4]`` OpenGL camera-to-world; intrinsics ``[N, 4]`` in pixels of ``width x height``.
        near: ``[N]`` distance from each camera to its nearest content (e.g. LLFF's near bounds).
    """
    spread = float(view_angles_deg(c2w).max())
    cone = forward_cone_deg(intrinsics, width, height)
    if spread > cone:
        return SpaceChoice(
            "contract",
            f"view directions turn up to {spread:.1f} deg from their mean, beyond "
            f"{cone:.1f} deg (half the field of view): not forward-facing",
        )
    if not content_in_front(c2w, near):
        return SpaceChoice("contract", "some content lies behind the mean camera: not forward-facing")
    return SpaceChoice(
        "ndc",
        f"view directions within {spread:.1f} deg of their mean (<= {cone:.1f} deg, half "
        "the field of view) and all content in front: forward-facing",
    )


def backdrop_pixels(colors: torch.Tensor, background: str | None) -> torch.Tensor | None:
    """``[..., 3]`` colours -> ``[...]`` bool: within :data:`BACKDROP_LEVEL` of the scene's white or
    black ``background`` in every channel; ``None`` for a background that is no uniform backdrop."""
    level = {"white": 1.0, "black": 0.0}.get(background)
    if level is None:
        return None
    return (colors[..., :3] - level).abs().amax(-1) <= BACKDROP_LEVEL


def backdrop_background(images: torch.Tensor) -> tuple[str, str]:
    """``[N, H, W, C]`` images in [0, 1] -> (``"white"``, ``"black"`` or ``"learned"``, a one-line reason).

    A removed background leaves a uniform backdrop around the object: when at least
    :data:`BACKDROP_BORDER_FRACTION` of the border pixels of all images are within
    :data:`BACKDROP_LEVEL` of white (or black) in every channel, rays are composited onto that colour,
    so that the backdrop needs no density: with a learned colour, few views are as well explained by
    backdrop-coloured fog in front of the object as by empty space, and the fog hides it from other
    viewpoints. Otherwise the background colour is learned."""
    rgb = images[..., :3]
    border = torch.cat([rgb[:, 0], rgb[:, -1], rgb[:, :, 0], rgb[:, :, -1]], dim=1).float()
    white = float((border.min(-1).values >= 1.0 - BACKDROP_LEVEL).float().mean())
    black = float((border.max(-1).values <= BACKDROP_LEVEL).float().mean())
    for name, share in (("white", white), ("black", black)):
        if share >= BACKDROP_BORDER_FRACTION:
            return name, f"{100 * share:.1f}% of the image borders are {name}: a {name} backdrop"
    return "learned", f"image borders not a uniform backdrop ({100 * max(white, black):.1f}% white or black)"


def check_space(space: str) -> None:
    if space not in SPACE_CHOICES:
        raise DataError(f"space must be one of {SPACE_CHOICES}, got {space!r}")


@dataclass
class UnboundedFrame:
    """Cameras normalized for ``contract`` or ``box`` and the ray bounds that go with them."""

    c2w: torch.Tensor  # [N, 4, 4] focus point at the origin, farthest camera at radius 1
    scale: float  # world units -> normalized units
    near: float
    far: float
    bbox: torch.Tensor | None  # [2, 3] for space "box"


def unbounded_frame(c2w: torch.Tensor, space: str, near_bounds: torch.Tensor | None = None) -> UnboundedFrame:
    """Recentre ``c2w`` ``[N, 4, 4]`` on its focus point and scale the cameras into the unit ball;
    ``space="contract"``: rays to :data:`UNBOUNDED_FAR`; ``"box"``: the ``[-1, 1]^3`` box. Rays start at
    :data:`NEAR_BOUND_FRACTION` of the nearest of ``near_bounds`` ``[N]`` (world units) if given,
    else at :data:`UNBOUNDED_NEAR`."""
    if space not in ("contract", "box"):
        raise ValueError(f"unbounded_frame is for space 'contract' or 'box', got {space!r}")
    poses, _, scale = normalize_poses(c2w.double(), target_radius=1.0, center="focus")
    near = UNBOUNDED_NEAR if near_bounds is None else NEAR_BOUND_FRACTION * float(near_bounds.min()) * scale
    if space == "contract":
        return UnboundedFrame(poses.float(), scale, near, UNBOUNDED_FAR, None)
    return UnboundedFrame(poses.float(), scale, near, BOX_FAR, torch.tensor([[-1.0] * 3, [1.0] * 3]))


__all__ = [
    "BACKDROP_BORDER_FRACTION",
    "BACKDROP_LEVEL",
    "backdrop_pixels",
    "BOX_FAR",
    "NEAR_BOUND_FRACTION",
    "SPACE_CHOICES",
    "SpaceChoice",
    "UNBOUNDED_FAR",
    "UNBOUNDED_NEAR",
    "UnboundedFrame",
    "backdrop_background",
    "check_space",
    "choose_space",
    "content_in_front",
    "forward_cone_deg",
    "unbounded_frame",
    "view_angles_deg",
]
