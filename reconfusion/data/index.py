"""A scene's cameras and image paths, indexed without decoding any image (for large datasets).

:class:`SceneIndex` is what the dataset loaders (COLMAP, CO3D, RealEstate10K, Zero-1-to-3) build
first; :meth:`SceneIndex.read_image` decodes one view on demand (in ``DataLoader`` workers) and
:meth:`SceneIndex.to_scene` decodes all of them into a :class:`~reconfusion.data.scene.Scene`.
Cameras follow :class:`Scene`: OpenGL camera-to-world, intrinsics ``(fx, fy, cx, cy)`` in pixels of
each view's own image (sizes may differ per view, as in CO3D), pixel centres at ``+0.5``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from .camera_check import check_cameras
from .scene import SPACES, DataError, Scene, composite, read_image, resize_image


@dataclass
class SceneIndex:
    """Cameras + image files of one scene.

    Attributes:
        c2w: ``[N, 4, 4]`` float32 OpenGL camera-to-world.
        intrinsics: ``[N, 4]`` (fx, fy, cx, cy) in pixels of each view's image.
        sizes: ``[N, 2]`` int64 (height, width) of each view's image.
        image_paths: ``N`` files; ``images`` ``[N, H, W, 3]`` instead for in-memory scenes.
        near, far, space, background, bbox, focus_depth, name: as in :class:`Scene`.
    """

    c2w: torch.Tensor
    intrinsics: torch.Tensor
    sizes: torch.Tensor
    near: float
    far: float
    space: str = "contract"
    background: str = "black"
    image_paths: list[str] = field(default_factory=list)
    images: torch.Tensor | None = None
    bbox: torch.Tensor | None = None
    focus_depth: float | None = None
    name: str = "scene"

    def __post_init__(self):
        n = self.c2w.shape[0]
        if tuple(self.c2w.shape) != (n, 4, 4) or n < 1:
            raise DataError(f"{self.name}: poses must be [N >= 1, 4, 4], got {list(self.c2w.shape)}")
        if tuple(self.intrinsics.shape) != (n, 4):
            raise DataError(f"{self.name}: intrinsics must be [{n}, 4], got {list(self.intrinsics.shape)}")
        if tuple(self.sizes.shape) != (n, 2):
            raise DataError(f"{self.name}: sizes must be [{n}, 2], got {list(self.sizes.shape)}")
        if self.images is None and len(self.image_paths) != n:
            raise DataError(f"{self.name}: {len(self.image_paths)} image paths for {n} cameras")
        if self.space not in SPACES:
            raise DataError(f"{self.name}: space must be one of {SPACES}, got {self.space!r}")
        if not 0 <= self.near < self.far:
            raise DataError(f"{self.name}: needs 0 <= near < far, got near={self.near}, far={self.far}")
        check_cameras(self.c2w, self.intrinsics, self.name, [str(p) for p in self.image_paths] or None, self.sizes)

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def read_image(self, i: int) -> torch.Tensor:
        """View ``i`` as float32 ``[H, W, 3]`` in [0, 1] (RGBA composited on the background)."""
        if self.images is not None:
            return self.images[i]
        img = composite(read_image(self.image_paths[i]), "white" if self.background == "white" else "black")
        h, w = (int(v) for v in self.sizes[i])
        if img.shape[:2] != (h, w):
            raise DataError(f"{self.image_paths[i]} is {img.shape[1]}x{img.shape[0]}, its camera says {w}x{h}")
        return torch.from_numpy(np.ascontiguousarray(img)).float()

    def subset(self, ids: list[int]) -> SceneIndex:
        """The views ``ids`` only."""
        return dataclasses.replace(
            self,
            c2w=self.c2w[ids],
            intrinsics=self.intrinsics[ids],
            sizes=self.sizes[ids],
            image_paths=[self.image_paths[i] for i in ids] if self.images is None else [],
            images=None if self.images is None else self.images[ids],
        )

    def to_scene(self, downscale: float = 1.0) -> Scene:
        """Decode every view (all must share one size) -> :class:`Scene`."""
        if len({tuple(s.tolist()) for s in self.sizes}) > 1:
            raise DataError(
                f"{self.name}: views have different image sizes; a Scene needs one size "
                "(use the streaming dataset, which crops each view itself)"
            )
        intr = self.intrinsics.clone()
        imgs = []
        for i in range(len(self)):
            img = self.read_image(i).numpy()
            if downscale != 1:
                from .scene import downscale_size

                w, h = downscale_size(img.shape[1], img.shape[0], downscale)
                intr[i] *= torch.tensor([w / img.shape[1], h / img.shape[0]] * 2)
                img = resize_image(img, w, h)
            imgs.append(torch.from_numpy(np.ascontiguousarray(img)))
        names = [str(p) for p in self.image_paths] or [f"{i:03d}" for i in range(len(self))]
        return Scene(
            images=torch.stack(imgs).float(),
            c2w=self.c2w.float(),
            intrinsics=intr.float(),
            near=self.near,
            far=self.far,
            space=self.space,
            background=self.background,
            bbox=self.bbox,
            focus_depth=self.focus_depth,
            name=self.name,
            image_names=names,
        )

    @classmethod
    def from_scene(cls, scene: Scene) -> SceneIndex:
        """An in-memory scene (any existing loader) as an index."""
        n, H, W = scene.images.shape[:3]
        return cls(
            c2w=scene.c2w.float(),
            intrinsics=scene.intrinsics.float(),
            sizes=torch.tensor([[H, W]]).repeat(n, 1),
            near=float(scene.near),
            far=float(scene.far),
            space=scene.space,
            background=scene.background,
            images=scene.images,
            bbox=scene.bbox,
            focus_depth=scene.focus_depth,
            name=scene.name,
        )


def rig_bounds(c2w: torch.Tensor, near_frac: float = 0.05, far_mult: float = 1000.0) -> tuple[float, float]:
    """Bounds for captures without metric scale: ``(near_frac r, far_mult r)``, ``r`` the largest
    camera distance from the cameras' centroid (1 if all cameras coincide)."""
    centers = c2w[:, :3, 3].double()
    r = float((centers - centers.mean(0)).norm(dim=-1).max())
    r = r if r > 1e-9 else 1.0
    return near_frac * r, far_mult * r


def image_size(path: str) -> tuple[int, int]:
    """``(height, width)`` of an image file from its header (no decoding)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError as exc:
        raise DataError(f"image not found: {path}") from exc
    except Exception as exc:  # noqa: BLE001 - any decoder error becomes one clear line
        raise DataError(f"cannot read image {path}: {exc}") from exc
    return h, w


def w2c_opencv_to_c2w_opengl(w2c: np.ndarray) -> torch.Tensor:
    """World-to-camera ``[N, 3|4, 4]`` in OpenCV axes -> camera-to-world ``[N, 4, 4]`` in OpenGL axes."""
    from ..cameras import opencv_to_opengl, to_homogeneous

    m = to_homogeneous(torch.from_numpy(np.asarray(w2c, dtype=np.float64)))
    return opencv_to_opengl(torch.linalg.inv(m)).float()


__all__ = ["SceneIndex", "image_size", "rig_bounds", "w2c_opencv_to_c2w_opengl"]
