"""The common ``Scene`` type every loader returns, few-view selection, and image I/O helpers."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import rays as rays_mod
from ..cameras import camera_centers, focus_point
from .camera_check import check_cameras  # the one camera check of every loader
from .errors import DataError

SPACES = ("ndc", "contract", "box")
BACKGROUNDS = ("white", "black", "learned")


@dataclass
class Scene:
    """Posed images of one scene (OpenGL camera-to-world poses).

    Attributes:
        images: ``[N, H, W, 3]`` float32 in [0, 1] (RGBA already composited).
        c2w: ``[N, 4, 4]`` float32 camera-to-world, OpenGL axes, after any normalization.
        intrinsics: ``[N, 4]`` (fx, fy, cx, cy) in pixels of ``images``.
        near, far: ray bounds in world units (NDC scenes: bounds of the metric rays before NDC).
        space: ``"ndc"`` (forward-facing, rays in NDC, t in [0, 1]), ``"contract"`` (unbounded,
            mip-NeRF 360 contraction) or ``"box"`` (bounded by ``bbox``).
        background: ``"white"``, ``"black"`` or ``"learned"``.
        train_ids, test_ids: disjoint view indices (see :func:`select_views`).
        bbox: ``[2, 3]`` min/max corners for ``space == "box"``.
        focus_depth: distance the cameras look at (for spiral videos), world units.
        space_reason: why the loader chose ``space`` (one line, for the user), or ``""``.
    """

    images: torch.Tensor
    c2w: torch.Tensor
    intrinsics: torch.Tensor
    near: float
    far: float
    space: str = "contract"
    background: str = "black"
    train_ids: list[int] = field(default_factory=list)
    test_ids: list[int] = field(default_factory=list)
    bbox: torch.Tensor | None = None
    focus_depth: float | None = None
    name: str = "scene"
    image_names: list[str] = field(default_factory=list)
    space_reason: str = ""

    def __post_init__(self):
        n = self.images.shape[0] if self.images.dim() == 4 else -1
        if self.images.dim() != 4 or self.images.shape[-1] != 3:
            raise DataError(f"scene images must be [N, H, W, 3], got {list(self.images.shape)}")
        if n < 1:
            raise DataError("scene has no images")
        if tuple(self.c2w.shape) != (n, 4, 4):
            raise DataError(f"scene poses must be [{n}, 4, 4] (one per image), got {list(self.c2w.shape)}")
        if tuple(self.intrinsics.shape) != (n, 4):
            raise DataError(f"scene intrinsics must be [{n}, 4], got {list(self.intrinsics.shape)}")
        if self.space not in SPACES:
            raise DataError(f"scene space must be one of {SPACES}, got {self.space!r}")
        if self.background not in BACKGROUNDS:
            raise DataError(f"scene background must be one of {BACKGROUNDS}, got {self.background!r}")
        bad = ~torch.isfinite(self.images.reshape(n, -1)).all(-1)
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            name = f" ({self.image_names[i]})" if i < len(self.image_names) else ""
            raise DataError(f"scene image {i}{name} has a non-finite (NaN/inf) pixel value")
        check_cameras(self.c2w, self.intrinsics, f"scene {self.name}", self.image_names or None)
        if not (0 <= self.near < self.far):
            raise DataError(f"scene needs 0 <= near < far, got near={self.near}, far={self.far}")
        if self.space == "box" and self.bbox is None:
            raise DataError("space='box' needs a bbox")
        if set(self.train_ids) & set(self.test_ids):
            raise DataError("train and test views overlap")
        if not self.image_names:
            self.image_names = [f"{i:03d}" for i in range(n)]

    @property
    def n_images(self) -> int:
        return self.images.shape[0]

    @property
    def height(self) -> int:
        return self.images.shape[1]

    @property
    def width(self) -> int:
        return self.images.shape[2]

    def replace(self, **kw) -> Scene:
        return dataclasses.replace(self, **kw)

    # ------------------------------------------------------------------------------- rays
    def rays(self, c2w: torch.Tensor, intr: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> rays_mod.RayBundle:
        """Rays through pixel coordinates ``x, y`` ``[R]`` of cameras ``c2w`` ``[R, 4, 4]``, ``intr`` ``[R, 4]``."""
        o, d = rays_mod.generate_rays(c2w, intr, x, y)
        return self.rays_from(o, d, intr)

    def rays_from(self, o: torch.Tensor, d: torch.Tensor, intr: torch.Tensor) -> rays_mod.RayBundle:
        """This scene's rays (NDC or metric, with radii and bounds) from world-space origins ``o`` and
        unit-depth directions ``d`` ``[R, 3]`` (as :func:`~reconfusion.rays.generate_rays` makes them)
        of cameras ``intr`` ``[R, 4]``: for rays another library generated (the nerfstudio plugin)."""
        dnorm = d.norm(dim=-1)
        viewdirs = d / dnorm[:, None]
        focal = torch.sqrt(intr[:, 0] * intr[:, 1])
        R = o.shape[0]
        if self.space == "ndc":
            ref = self.intrinsics[0].to(o.device)
            o, d = rays_mod.ndc_rays(o, d, ref, self.width, self.height, near=self.near)
            # NDC removes perspective: a pixel of this camera covers (2 fx_ref / W) / fx of NDC x at
            # every depth (2 / W for the scene's own cameras; novel cameras may have another focal).
            radii = rays_mod.PIXEL_RADIUS * 2.0 * ref[0] / (self.width * intr[:, 0].to(o.device))
            near, far = torch.zeros(R, device=o.device), torch.ones(R, device=o.device)
        else:
            d = viewdirs
            radii = rays_mod.PIXEL_RADIUS / (focal * dnorm)
            near = torch.full((R,), float(self.near), device=o.device)
            far = torch.full((R,), float(self.far), device=o.device)
        return rays_mod.RayBundle(o, d, viewdirs, radii, near, far)

    def view_rays(self, idx: int, pixels: torch.Tensor | None = None) -> rays_mod.RayBundle:
        """Rays of image ``idx``: all ``H*W`` (row-major), or flat pixel indices ``pixels`` ``[R]``."""
        return self.camera_rays(self.c2w[idx], self.intrinsics[idx], pixels)

    def camera_rays(
        self,
        c2w: torch.Tensor,
        intr: torch.Tensor,
        pixels: torch.Tensor | None = None,
        height: int | None = None,
        width: int | None = None,
    ) -> rays_mod.RayBundle:
        """Rays of an arbitrary camera (e.g. a video frame) with this scene's image size by default."""
        H, W = height or self.height, width or self.width
        if pixels is None:
            pixels = torch.arange(H * W)
        x = (pixels % W).float() + 0.5
        y = torch.div(pixels, W, rounding_mode="floor").float() + 0.5
        R = pixels.shape[0]
        return self.rays(c2w[None].expand(R, 4, 4), intr[None].expand(R, 4), x, y)


# ------------------------------------------------------------------------ few-view selection
def llff_protocol_ids(n_images: int, n_views: int, test_every: int = 8) -> tuple[list[int], list[int]]:
    """RegNeRF / FreeNeRF / ReconFusion LLFF split: test = every ``test_every``-th image, train =
    ``n_views`` evenly spaced over the rest (``round(linspace(0, len(rest) - 1, n))``)."""
    test = list(range(0, n_images, test_every))
    rest = [i for i in range(n_images) if i not in test]
    _check_n_views(n_views, len(rest))
    idx = np.round(np.linspace(0, len(rest) - 1, n_views)).astype(int)
    return [rest[i] for i in idx], test


def mipnerf360_protocol_ids(c2w: torch.Tensor, n_views: int, test_every: int = 8) -> tuple[list[int], list[int]]:
    """ReconFusion's few-view split of a capture all around a scene (mip-NeRF 360): test = every
    ``test_every``-th image, as mip-NeRF 360 holds out; train = ``n_views`` of the rest spread around
    the orbit by :func:`orbit_spread_ids` on cameras ``c2w`` ``[N, 4, 4]`` (an image list's order need
    not follow the camera path, so evenly spaced indices need not be spread out)."""
    n_images = c2w.shape[0]
    test = list(range(0, n_images, test_every))
    rest = [i for i in range(n_images) if i not in test]
    return orbit_spread_ids(c2w, rest, n_views), test


def fewview_protocol_ids(scene: Scene, n_views: int, test_every: int = 8) -> tuple[list[int], list[int], str]:
    """The published few-view split for ``scene``'s kind of capture -> ``(train, test, name)``:
    :func:`llff_protocol_ids` for forward-facing (NDC) scenes, :func:`mipnerf360_protocol_ids` else."""
    if scene.space == "ndc":
        train, test = llff_protocol_ids(scene.n_images, n_views, test_every)
        return train, test, "llff: test every 8th image, N views evenly spaced over the rest"
    train, test = mipnerf360_protocol_ids(scene.c2w, n_views, test_every)
    return train, test, "mip-NeRF 360: test every 8th image, N views spread around the orbit over the rest"


def farthest_point_ids(centers: torch.Tensor, candidates: list[int], n_views: int) -> list[int]:
    """Deterministic farthest-point sampling on camera centres, starting nearest their mean."""
    _check_n_views(n_views, len(candidates))
    pts = centers[candidates].double()
    first = int((pts - pts.mean(0)).norm(dim=-1).argmin())
    chosen = [first]
    dist = (pts - pts[first]).norm(dim=-1)
    while len(chosen) < n_views:
        nxt = int(dist.argmax())
        chosen.append(nxt)
        dist = torch.minimum(dist, (pts - pts[nxt]).norm(dim=-1))
    return sorted(candidates[i] for i in chosen)


def orbit_azimuths(c2w: torch.Tensor) -> np.ndarray:
    """``[N, 4, 4]`` OpenGL cameras -> ``[N]`` azimuth (radians) of each camera centre around the
    cameras' :func:`~reconfusion.cameras.focus_point`, in the plane orthogonal to their mean up vector
    (the orbit's plane); azimuth 0 is the mean direction of the projected centres (or camera 0's)."""
    c2w = c2w.double()
    up = c2w[:, :3, 1].mean(0)
    up = up / up.norm().clamp_min(1e-12)
    r = c2w[:, :3, 3] - focus_point(c2w)
    flat = r - (r @ up)[:, None] * up
    flat = flat / flat.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    e1 = flat.mean(0) if float(flat.mean(0).norm()) > 1e-6 else flat[0]
    e1 = e1 / e1.norm().clamp_min(1e-12)
    e2 = torch.linalg.cross(up, e1)
    return torch.atan2(flat @ e2, flat @ e1).numpy()


def orbit_spread_ids(c2w: torch.Tensor, candidates: list[int], n_views: int) -> list[int]:
    """The ``n_views`` of ``candidates`` spread most evenly around the orbit of cameras ``c2w``
    ``[N, 4, 4]``: the subset whose :func:`orbit_azimuths`, taken around the circle, leave the smallest
    sum of squared gaps between neighbours (evenly spaced views on a full ring; both ends and even
    spacing between them on a partial arc). Elevation and distance are ignored: farthest-point sampling
    of camera centres picks the highest, lowest and farthest cameras first, which may sit side by side
    on the orbit. Exact (dynamic programming over the azimuth order) and deterministic (ties go to the
    lower azimuth order, then to the lower id)."""
    _check_n_views(n_views, len(candidates))
    az = orbit_azimuths(c2w)[candidates]
    order = np.lexsort((np.asarray(candidates), az))  # by azimuth, then by id
    a = az[order]
    m = len(a)
    gap2 = (a[None, :] - a[:, None]) ** 2  # [i, j]: squared gap from i to j (j after i)
    gap2[np.tril_indices(m)] = np.inf
    best, best_ids = np.inf, None
    for first in range(m - n_views + 1):  # the chosen view earliest in azimuth order
        cost = np.where(np.arange(m) > first, gap2[first], np.inf) if n_views > 1 else None
        back = []
        for _ in range(n_views - 2):
            total = cost[:, None] + gap2
            back.append(total.argmin(0))
            cost = total.min(0)
        if n_views == 1:
            score, chain = (2 * math.pi) ** 2, [first]
        else:
            closing = cost + (a[first] + 2 * math.pi - a) ** 2
            last = int(closing.argmin())
            score, chain = float(closing[last]), [last]
            for prev in reversed(back):
                chain.append(int(prev[chain[-1]]))
            chain.append(first)
        if score < best - 1e-12:
            best, best_ids = score, chain
    return sorted(candidates[order[i]] for i in best_ids)


def _check_n_views(n_views: int, available: int) -> None:
    if n_views < 1:
        raise DataError(f"need at least 1 training view, got {n_views}")
    if n_views > available:
        raise DataError(f"too few views: asked for {n_views} training views, only {available} available")


def select_views(
    scene: Scene,
    n_views: int | None = None,
    train_ids: list[int] | None = None,
    test_ids: list[int] | None = None,
    strategy: str = "auto",
    test_every: int = 8,
) -> Scene:
    """Return the scene with its few-view split set; held-out test views are never in ``train_ids``.

    - explicit ``train_ids`` (and optionally ``test_ids``) are used as given;
    - else ``strategy="even"`` (the LLFF protocol, :func:`llff_protocol_ids`) or ``"farthest"``
      (farthest-point on camera centres over the non-test views) or ``"orbit"``
      (:func:`orbit_spread_ids`: evenly around an object's orbit); ``"auto"`` is ``even`` for
      forward-facing (NDC) scenes and ``farthest`` otherwise. Test views default to the scene's
      own (e.g. an official test split), else every ``test_every``-th image.
    """
    n = scene.n_images
    for name, ids in (("train_ids", train_ids), ("test_ids", test_ids)):
        if ids is not None and any(not 0 <= i < n for i in ids):
            raise DataError(f"{name} must be in [0, {n}), got {list(ids)}")
    if test_ids is None:
        test_ids = scene.test_ids or list(range(0, n, test_every))
    test_ids = sorted(set(int(i) for i in test_ids))
    if train_ids is not None:
        train_ids = sorted(set(int(i) for i in train_ids))
        if set(train_ids) & set(test_ids):
            raise DataError(f"training views {sorted(set(train_ids) & set(test_ids))} are also test views")
        _check_n_views(len(train_ids), n)
        return scene.replace(train_ids=train_ids, test_ids=test_ids)
    if n_views is None:
        raise DataError("pass n_views or train_ids")
    if strategy == "auto":
        strategy = "even" if scene.space == "ndc" else "farthest"
    rest = [i for i in range(n) if i not in test_ids]
    if strategy == "even":
        _check_n_views(n_views, len(rest))
        idx = np.round(np.linspace(0, len(rest) - 1, n_views)).astype(int)
        train = [rest[i] for i in idx]
    elif strategy == "farthest":
        train = farthest_point_ids(camera_centers(scene.c2w), rest, n_views)
    elif strategy == "orbit":
        train = orbit_spread_ids(scene.c2w, rest, n_views)
    else:
        raise DataError(f"unknown view selection strategy {strategy!r}; use even, farthest, orbit or auto")
    return scene.replace(train_ids=train, test_ids=test_ids)


# ----------------------------------------------------------------------------------- image I/O
def read_image(path: str) -> np.ndarray:
    """-> float32 ``[H, W, C]`` in [0, 1] (C = 3 or 4)."""
    import imageio.v3 as iio

    if not os.path.isfile(path):
        raise DataError(f"image not found: {path}")
    try:
        img = iio.imread(path)
    except Exception as exc:  # noqa: BLE001 - any decoder error becomes one clear line
        raise DataError(f"cannot read image {path}: {exc}") from exc
    scale = 65535.0 if img.dtype == np.uint16 else 255.0 if img.dtype == np.uint8 else 1.0
    img = img.astype(np.float32) / scale
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    return img


def resize_image(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-style (Lanczos) resize of a float image ``[H, W, C]``."""
    from PIL import Image

    chans = [
        np.asarray(Image.fromarray(img[..., c]).resize((width, height), Image.LANCZOS)) for c in range(img.shape[-1])
    ]
    return np.clip(np.stack(chans, axis=-1), 0.0, 1.0).astype(np.float32)


def composite(img: np.ndarray, background: str) -> np.ndarray:
    """RGBA -> RGB over a white or black background (RGB passes through)."""
    if img.shape[-1] == 3:
        return img
    if img.shape[-1] != 4:
        raise DataError(f"images must have 3 or 4 channels, got {img.shape[-1]}")
    bg = 1.0 if background == "white" else 0.0
    return img[..., :3] * img[..., 3:] + bg * (1.0 - img[..., 3:])


def stack_images(images: list[np.ndarray], names: list[str]) -> torch.Tensor:
    """Check that all images share one size -> ``[N, H, W, 3]``."""
    sizes = {im.shape[:2] for im in images}
    if len(sizes) > 1:
        first = images[0].shape[:2]
        bad = next(n for n, im in zip(names, images) if im.shape[:2] != first)
        raise DataError(
            f"inconsistent image sizes: {names[0]} is {first[1]}x{first[0]}, {bad} is "
            f"{[im.shape[1] for im in images if im.shape[:2] != first][0]}x"
            f"{[im.shape[0] for im in images if im.shape[:2] != first][0]}"
        )
    return torch.from_numpy(np.stack(images)).float()


def downscale_size(width: int, height: int, factor: float) -> tuple[int, int]:
    if factor <= 0 or not math.isfinite(factor):
        raise DataError(f"downscale factor must be > 0, got {factor}")
    return max(1, int(round(width / factor))), max(1, int(round(height / factor)))


__all__ = [
    "BACKGROUNDS",
    "DataError",
    "SPACES",
    "Scene",
    "composite",
    "downscale_size",
    "farthest_point_ids",
    "fewview_protocol_ids",
    "llff_protocol_ids",
    "mipnerf360_protocol_ids",
    "read_image",
    "resize_image",
    "select_views",
    "stack_images",
]
