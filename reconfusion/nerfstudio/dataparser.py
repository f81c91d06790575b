"""Any scene ``reconfusion`` reads, split as ``reconfusion reconstruct`` splits it, as nerfstudio data.

The dataparser loads the scene with reconfusion's loaders and few-view selection (the same
function ``reconstruct`` calls, so ``--views 3`` on fern gives the same training and held-out views);
nerfstudio's ``train`` split is the training views, ``val`` and ``test`` the held-out ones. Cameras
keep the scene's own world frame (no re-centring or rescaling): the model turns nerfstudio's rays
into the scene's rays (NDC for forward-facing captures) with the scene itself, which travels in the
outputs' ``metadata["scene"]``. The dataset serves the scene's images as loaded (float32, after any
resizing), not re-read from the files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.data.scene_box import SceneBox

from ..app.runs import load_split_scene

INTRINSICS = "reconfusion_intrinsics"  # camera metadata: (fx, fy, cx, cy) [N, 4], carried onto each ray


@dataclass
class FewViewDataParserConfig(DataParserConfig):
    """A scene reconfusion reads (LLFF, Blender, nerfstudio, COLMAP, .npz) and its few-view split."""

    _target: type = field(default_factory=lambda: FewViewDataParser)
    format: Literal["auto", "llff", "blender", "nerfstudio", "npz", "colmap"] = "auto"
    """Input format (auto: detected)."""
    views: int | None = 3
    """Number of training views (the published split for the kind of capture), unless train_ids."""
    train_ids: tuple[int, ...] | None = None
    """Explicit training view ids."""
    test_ids: tuple[int, ...] | None = None
    """Explicit held-out view ids."""
    strategy: str = "auto"
    """View selection, as reconfusion reconstruct --strategy."""
    factor: int | None = None
    """LLFF images_<factor>/ folder (default: images_8/, else the one there is)."""
    downscale: float = 1.0
    """Extra image downscale."""
    space: str = "auto"
    """LLFF scenes: ndc | contract | box (auto: the loader decides)."""


class FewViewDataParser(DataParser):
    config: FewViewDataParserConfig

    def __init__(self, config: FewViewDataParserConfig):
        super().__init__(config)
        self._scene = None

    def scene(self):
        """The split scene, loaded once for all splits."""
        if self._scene is None:
            c = self.config
            ids = lambda v: list(v) if v is not None else None  # noqa: E731
            views = None if c.train_ids is not None else c.views
            self._scene, _ = load_split_scene(
                str(c.data),
                c.format,
                c.downscale,
                c.factor,
                views,
                ids(c.train_ids),
                ids(c.test_ids),
                c.strategy,
                c.space,
            )
        return self._scene

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        scene = self.scene()
        ids = list(scene.train_ids) if split == "train" else list(scene.test_ids)
        intr = scene.intrinsics[ids]
        cameras = Cameras(
            camera_to_worlds=scene.c2w[ids, :3, :4],
            fx=intr[:, 0:1],
            fy=intr[:, 1:2],
            cx=intr[:, 2:3],
            cy=intr[:, 3:4],
            width=scene.width,
            height=scene.height,
            camera_type=CameraType.PERSPECTIVE,
            metadata={INTRINSICS: intr.clone()},
        )
        box = scene.bbox if scene.space == "box" else torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
        return DataparserOutputs(
            image_filenames=[Path(self.config.data) / scene.image_names[i] for i in ids],
            cameras=cameras,
            scene_box=SceneBox(aabb=box.float()),
            metadata={"scene": scene, "scene_ids": ids},
        )


class SceneImages(InputDataset):
    """The split's images from the scene in ``metadata`` (float32 as reconfusion loaded them)."""

    def __init__(self, dataparser_outputs: DataparserOutputs, scale_factor: float = 1.0):
        if scale_factor != 1.0:
            raise ValueError(
                f"camera_res_scale_factor {scale_factor}: resize with the dataparser's --downscale instead "
                "(the scene's rays are made at the resolution it was loaded at)"
            )
        super().__init__(dataparser_outputs, scale_factor)
        meta = dataparser_outputs.metadata
        self._images = meta["scene"].images[meta["scene_ids"]]

    def get_image_float32(self, image_idx: int) -> torch.Tensor:
        return self._images[image_idx]

    def get_numpy_image(self, image_idx: int) -> np.ndarray:
        return (self._images[image_idx] * 255).round().to(torch.uint8).numpy()


class FewViewDataManager(VanillaDataManager[SceneImages]):
    """nerfstudio's vanilla datamanager on :class:`SceneImages`."""


@dataclass
class FewViewDataManagerConfig(VanillaDataManagerConfig):
    _target: type = field(default_factory=lambda: FewViewDataManager)
    dataparser: FewViewDataParserConfig = field(default_factory=FewViewDataParserConfig)


__all__ = [
    "INTRINSICS",
    "FewViewDataManager",
    "FewViewDataManagerConfig",
    "FewViewDataParser",
    "FewViewDataParserConfig",
    "SceneImages",
]
