"""LLFF-layout scenes: ``poses_bounds.npy`` + ``images_<factor>/`` (or ``images/`` resized).

The layout is LLFF's, mip-NeRF 360's and COLMAP ``imgs2poses``'s, so the space is decided from the
cameras (:func:`reconfusion.data.space.choose_space`) unless ``space`` says otherwise:

- ``ndc`` (forward-facing) follows NeRF's ``load_llff_data``: rotation columns [down, right, back] ->
  OpenGL, bounds rescaled so the nearest bound is 1/0.75 (``bd_factor``), poses recentred on their
  average, rays in NDC with the near plane at 1;
- ``contract`` / ``box``: :func:`reconfusion.data.space.unbounded_frame` (focus point at the origin,
  cameras within the unit ball).

Test views follow the few-view protocols (every 8th image).
"""

from __future__ import annotations

import glob
import os

import numpy as np
import torch

from ..cameras import camera_centers, llff_to_opengl, recenter_poses, rescale_poses
from .camera_check import check_cameras
from .scene import DataError, Scene, downscale_size, read_image, resize_image, stack_images
from .space import SpaceChoice, backdrop_background, check_space, choose_space, unbounded_frame

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


def _list_images(folder: str) -> list[str]:
    return sorted(f for f in glob.glob(os.path.join(folder, "*")) if f.endswith(IMAGE_EXTS))


DEFAULT_FACTOR = 8  # the LLFF few-view protocol's resolution (1/8 of the full images)
MIPNERF360_FACTOR = 4  # mip-NeRF 360's evaluation resolution of its outdoor captures (1/4)


def available_factors(path: str) -> list[int]:
    """The ``k`` of every ``images_<k>/`` folder in ``path``, sorted."""
    out = []
    for d in glob.glob(os.path.join(path, "images_*")):
        k = os.path.basename(d)[len("images_") :]
        if os.path.isdir(d) and k.isdigit() and int(k) > 0:
            out.append(int(k))
    return sorted(out)


def default_factor(path: str, target: int = DEFAULT_FACTOR) -> int:
    """The factor ``load_llff`` uses when none is given: ``target`` (8) if ``images_<target>/`` or
    ``images/`` (then resized) exists, else the available ``images_<k>/`` with ``k`` closest to
    ``target`` in ratio (the larger on a tie), e.g. 32 for the embedded demo copy (only ``images_32/``)."""
    ks = available_factors(path)
    if not ks or target in ks or os.path.isdir(os.path.join(path, "images")):
        return target
    return min(ks, key=lambda k: (abs(np.log(k / target)), -k))


def protocol_factor(path: str, space: str) -> int:
    """The few-view protocol's resolution for a scene of ``space``: LLFF's 8 for NDC scenes, mip-NeRF
    360's 4 otherwise (each the nearest ``images_<k>/`` there is, :func:`default_factor`)."""
    return default_factor(path, DEFAULT_FACTOR if space == "ndc" else MIPNERF360_FACTOR)


def load_llff(
    path: str,
    factor: int | None = None,
    downscale: float = 1.0,
    bd_factor: float = 0.75,
    test_every: int = 8,
    space: str = "auto",
) -> Scene:
    """Load an LLFF-layout scene folder.

    Args:
        factor: use ``images_<factor>/`` if present, else resize ``images/`` by ``factor``;
            ``None``: :func:`default_factor` (8 unless only other ``images_<k>/`` exist).
        downscale: an extra resize factor applied after loading (e.g. 4 for a quick CPU run).
        space: ``auto`` (decided from the cameras, the reason in ``Scene.space_reason``), or
            ``ndc`` | ``contract`` | ``box`` to override the decision.
    """
    check_space(space)
    if factor is None:
        factor = default_factor(path)
    elif isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise DataError(f"LLFF factor must be an integer >= 1, got {factor!r}")
    pb_path = os.path.join(path, "poses_bounds.npy")
    if not os.path.isfile(pb_path):
        raise DataError(f"not an LLFF scene: {pb_path} not found")
    try:
        pb = np.load(pb_path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"cannot read {pb_path}: {exc}") from exc
    if pb.ndim != 2 or pb.shape[1] != 17:
        raise DataError(f"{pb_path} must be [N, 17] (3x5 pose + near/far per image), got {list(pb.shape)}")
    if pb.dtype.kind not in "biuf":
        raise DataError(f"{pb_path} must hold numbers, got dtype {pb.dtype}")
    if pb.shape[0] == 0:
        raise DataError(f"{pb_path} holds 0 poses: an LLFF scene needs images")
    bad = ~np.isfinite(pb).all(axis=1)
    if bad.any():
        raise DataError(f"{pb_path}: row {int(np.argmax(bad))} has a non-finite (NaN/inf) pose or bound")
    folder = os.path.join(path, f"images_{factor}")
    resize_from_full = not os.path.isdir(folder)
    if resize_from_full:
        folder = os.path.join(path, "images")
        if not os.path.isdir(folder):
            have = ", ".join(f"images_{k}/" for k in available_factors(path)) or "none"
            raise DataError(f"no images_{factor}/ or images/ folder in {path} (images_<k>/ folders: {have})")
    files = _list_images(folder)
    if len(files) != pb.shape[0]:
        raise DataError(f"{folder} has {len(files)} images but poses_bounds.npy has {pb.shape[0]} poses")
    imgs = [read_image(f)[..., :3] for f in files]
    names = [os.path.basename(f) for f in files]
    if resize_from_full and factor != 1:
        imgs = [resize_image(im, *downscale_size(im.shape[1], im.shape[0], factor)) for im in imgs]
    if downscale != 1:
        imgs = [resize_image(im, *downscale_size(im.shape[1], im.shape[0], downscale)) for im in imgs]
    images = stack_images(imgs, names)
    H, W = images.shape[1:3]

    poses = torch.from_numpy(pb[:, :15].reshape(-1, 3, 5)).double()
    bounds = torch.from_numpy(pb[:, 15:17]).double()
    if bool((bounds <= 0).any()):
        raise DataError(f"{pb_path}: near/far bounds must be positive")
    h0, w0, focal = poses[0, :, 4].tolist()
    c2w = llff_to_opengl(poses[:, :, :4])
    fx, fy = focal * W / w0, focal * H / h0
    intr = torch.tensor([[fx, fy, W / 2.0, H / 2.0]]).repeat(len(files), 1)
    check_cameras(c2w, intr, pb_path, names)
    test_ids = list(range(0, len(files), test_every))
    if space == "auto":
        choice = choose_space(c2w, intr, W, H, bounds[:, 0])
    else:
        choice = SpaceChoice(space, f"space={space} given")
    if choice.space != "ndc":
        frame = unbounded_frame(c2w, choice.space, bounds[:, 0])
        background, _ = backdrop_background(images)
        return Scene(
            images=images,
            c2w=frame.c2w,
            intrinsics=intr.float(),
            near=frame.near,
            far=frame.far,
            space=choice.space,
            background=background,
            test_ids=test_ids,
            bbox=frame.bbox,
            focus_depth=float(camera_centers(frame.c2w).norm(dim=-1).mean()),
            name=os.path.basename(os.path.normpath(path)),
            image_names=names,
            space_reason=choice.reason,
        )
    scale = 1.0 / (bounds.min().item() * bd_factor) if bd_factor else 1.0
    c2w = rescale_poses(c2w, scale)
    bounds = bounds * scale
    c2w, _ = recenter_poses(c2w)
    # NeRF's spiral focus: a disparity-weighted mix of the closest and farthest content.
    close, inf = bounds.min().item() * 0.9, bounds.max().item() * 5.0
    focus = 1.0 / (0.25 / close + 0.75 / inf)
    return Scene(
        images=images,
        c2w=c2w.float(),
        intrinsics=intr.float(),
        near=1.0,
        far=float(bounds.max()),
        space="ndc",
        background="learned",
        test_ids=test_ids,
        focus_depth=focus,
        name=os.path.basename(os.path.normpath(path)),
        image_names=names,
        space_reason=choice.reason,
    )
