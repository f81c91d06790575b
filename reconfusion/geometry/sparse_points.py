"""Sparse 3D points of a scene's training views: matched (:mod:`.matching`), triangulated with the
known cameras and filtered (:mod:`.triangulate`), with a depth uncertainty per observation, cached
per scene and view set in the run folder (safetensors + JSON, never a pickle).

Every pair of training views is matched and triangulated on its own (two views per point); a point
gives one observation in each of its two views: the pixel, the distance from that camera's centre
along the unit ray through the pixel, and the standard deviation of that distance.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import torch

from ..safe_io import load_safetensors, read_json, write_json, write_safetensors
from . import matching
from .triangulate import RejectionRules, fundamental_matrix, projection_matrix, triangulate_checked

CACHE_DIR = "sparse_depth"  # below the run folder
MIN_PIXEL_SIGMA = 0.5  # px: a keypoint's position is no better than half a pixel, whatever its fit


@dataclass
class SparsePoints:
    """Observations ``[M]`` of triangulated points in the training views: ``view`` (scene image
    index), ``pixels [M, 2]`` (pixel-centre convention of :mod:`reconfusion.rays`), ``distance``
    (world units from the camera centre along the unit ray through the pixel), ``sigma`` (its
    standard deviation); ``stats``: counts per stage and rule, and point quality summaries."""

    view: torch.Tensor
    pixels: torch.Tensor
    distance: torch.Tensor
    sigma: torch.Tensor
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.view.shape[0])


def distance_sigma(distance: np.ndarray, focal: np.ndarray, reproj_px: np.ndarray, angle_deg: np.ndarray) -> np.ndarray:
    """First-order standard deviation of a two-view point's distance: a ``sigma_px`` pixel error
    (the reprojection error, at least :data:`MIN_PIXEL_SIGMA`) moves the ray by ``sigma_px / f``
    radians, which moves the intersection along the other ray by ``distance * sigma_px / (f sin angle)``."""
    sigma_px = np.maximum(reproj_px, MIN_PIXEL_SIGMA)
    return distance * sigma_px / (focal * np.sin(np.radians(np.maximum(angle_deg, 1e-3))))


def triangulate_views(
    scene,
    rules: RejectionRules,
    ratio: float = 0.75,
    max_features: int = 0,
    upsample: int = 1,
    epipolar_px: float = 0.0,
) -> SparsePoints:
    """Match every pair of ``scene.train_ids`` (keypoints: :func:`.matching.detect` with ``max_features``
    and ``upsample``; with ``epipolar_px`` > 0 only candidates within that distance of each other's
    epipolar lines of the known cameras compete in the ratio test), triangulate, filter -> :class:`SparsePoints`."""
    ids = list(scene.train_ids)
    images = scene.images.numpy()
    c2w = scene.c2w.double().numpy()
    intr = scene.intrinsics.double().numpy()
    feats = {i: matching.detect(images[i], max_features, upsample) for i in ids}
    Ps = {i: projection_matrix(c2w[i], intr[i]) for i in ids}
    stats = {"features": {str(i): len(feats[i][0]) for i in ids}, "matches": 0, "rejected": {}, "kept_points": 0}
    views, pixels, distance, sigma, reproj_kept, angle_kept = [], [], [], [], [], []
    for a, b in combinations(ids, 2):
        band = None
        if epipolar_px > 0:
            F = fundamental_matrix(Ps[a], Ps[b], c2w[a, :3, 3])
            band = matching.epipolar_band(feats[a][0], feats[b][0], F, epipolar_px)
        m = matching.match(feats[a][1], feats[b][1], ratio, allowed=band)
        stats["matches"] += len(m)
        if len(m) == 0:
            continue
        px = np.stack([feats[a][0][m[:, 0]], feats[b][0][m[:, 1]]], axis=1)  # [n, 2, 2]
        P = np.broadcast_to(np.stack([Ps[a], Ps[b]]), (len(m), 2, 3, 4))
        centers = np.broadcast_to(np.stack([c2w[a, :3, 3], c2w[b, :3, 3]]), (len(m), 2, 3))
        tri = triangulate_checked(P, centers, px, rules)
        for name, mask in tri.rejected.items():
            stats["rejected"][name] = stats["rejected"].get(name, 0) + int(mask.sum())
        k = tri.kept
        stats["kept_points"] += int(k.sum())
        reproj_kept.append(tri.reprojection_px[k])
        angle_kept.append(tri.angle_deg[k])
        for slot, v in enumerate((a, b)):
            d = np.linalg.norm(tri.points[k] - c2w[v, :3, 3], axis=-1)
            focal = np.sqrt(intr[v, 0] * intr[v, 1])
            views.append(np.full(int(k.sum()), v))
            pixels.append(px[k, slot])
            distance.append(d)
            sigma.append(distance_sigma(d, focal, tri.reprojection_px[k], tri.angle_deg[k]))
    cat = lambda xs, shape: np.concatenate(xs) if xs else np.zeros(shape)  # noqa: E731
    reproj, angle = cat(reproj_kept, (0,)), cat(angle_kept, (0,))
    if len(reproj):
        stats["reprojection_px_median"] = float(np.median(reproj))
        stats["angle_deg_median"] = float(np.median(angle))
    return SparsePoints(
        torch.from_numpy(cat(views, (0,)).astype(np.int64)),
        torch.from_numpy(cat(pixels, (0, 2))).float(),
        torch.from_numpy(cat(distance, (0,))).float(),
        torch.from_numpy(cat(sigma, (0,))).float(),
        stats,
    )


def cache_key(
    scene, rules: RejectionRules, ratio: float, max_features: int, upsample: int = 1, epipolar_px: float = 0.0
) -> str:
    """A digest of what the points depend on: the training views' pixels and cameras and the settings."""
    h = hashlib.sha256()
    ids = torch.tensor(list(scene.train_ids), dtype=torch.long)
    for t in (ids, scene.images[ids], scene.c2w[ids], scene.intrinsics[ids]):
        h.update(t.contiguous().numpy().tobytes())
    settings = [dataclasses.asdict(rules), ratio, max_features, upsample, epipolar_px]
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:16]


def load_or_triangulate(
    scene,
    run_dir: str | None,
    rules: RejectionRules,
    ratio: float = 0.75,
    max_features: int = 0,
    upsample: int = 1,
    epipolar_px: float = 0.0,
    log=print,
) -> SparsePoints:
    """:func:`triangulate_views`, cached as ``run_dir/sparse_depth/points_<key>.safetensors`` + ``.json``
    (``key``: :func:`cache_key`); ``run_dir`` None: no cache."""
    key = cache_key(scene, rules, ratio, max_features, upsample, epipolar_px)
    base = os.path.join(run_dir, CACHE_DIR, f"points_{key}") if run_dir else None
    if base and os.path.isfile(base + ".safetensors") and os.path.isfile(base + ".json"):
        tensors, _ = load_safetensors(base + ".safetensors")
        info = read_json(base + ".json")
        log(f"sparse depth: {len(tensors['view'])} observations from {base}.safetensors")
        return SparsePoints(tensors["view"], tensors["pixels"], tensors["distance"], tensors["sigma"], info["stats"])
    pts = triangulate_views(scene, rules, ratio, max_features, upsample, epipolar_px)
    log(
        f"sparse depth: {pts.stats['kept_points']} points from {pts.stats['matches']} matches "
        f"(rejected: {pts.stats['rejected']}) -> {len(pts)} observations"
    )
    if base:
        os.makedirs(os.path.dirname(base), exist_ok=True)
        write_safetensors(
            base + ".safetensors",
            {"view": pts.view, "pixels": pts.pixels, "distance": pts.distance, "sigma": pts.sigma},
        )
        settings = {
            "rules": dataclasses.asdict(rules),
            "ratio": ratio,
            "max_features": max_features,
            "upsample": upsample,
            "epipolar_px": epipolar_px,
        }
        write_json(base + ".json", {"train_ids": list(scene.train_ids), "settings": settings, "stats": pts.stats})
    return pts


__all__ = [
    "CACHE_DIR",
    "MIN_PIXEL_SIGMA",
    "SparsePoints",
    "cache_key",
    "distance_sigma",
    "load_or_triangulate",
    "triangulate_views",
]
