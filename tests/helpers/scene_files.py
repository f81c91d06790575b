"""Small LLFF and Blender scene folders written for loader and CLI tests."""

import json
import math
import os

import imageio.v3 as iio
import numpy as np


def _img(h, w, c=3, seed=0):
    return (np.random.default_rng(seed).random((h, w, c)) * 255).astype(np.uint8)


def write_llff(root, n=10, h=12, w=16, folder="images_8", sizes=None):
    os.makedirs(os.path.join(root, folder))
    rows = []
    for i in range(n):
        # LLFF axes [down, right, back]: camera looking along world -z, shifted along x
        rot = np.stack([[0, -1, 0], [1, 0, 0], [0, 0, 1]], axis=1).astype(float)
        m = np.concatenate([rot, [[0.1 * i], [0.0], [0.0]], [[h * 8], [w * 8], [20.0 * 8]]], axis=1)
        rows.append(np.concatenate([m.ravel(), [2.0 + i * 0.01, 10.0]]))
        hh, ww = sizes[i] if sizes else (h, w)
        iio.imwrite(os.path.join(root, folder, f"img_{i:03d}.png"), _img(hh, ww, seed=i))
    np.save(os.path.join(root, "poses_bounds.npy"), np.stack(rows))
    return root


def write_blender(root, n=3, size=8):
    os.makedirs(os.path.join(root, "train"))
    frames = []
    for i in range(n):
        rgba = _img(size, size, 4, seed=i)
        rgba[..., 3] = 0 if i == 0 else 255  # first image fully transparent
        iio.imwrite(os.path.join(root, "train", f"r_{i}.png"), rgba)
        m = np.eye(4)
        m[:3, 3] = [0, 0, 4.0 + i]
        frames.append({"file_path": f"./train/r_{i}", "transform_matrix": m.tolist()})
    with open(os.path.join(root, "transforms_train.json"), "w") as f:
        json.dump({"camera_angle_x": 2 * math.atan(0.5), "frames": frames}, f)
    return root
