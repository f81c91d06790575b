"""Image/video output: side-by-side comparisons, depth visualization, camera-path videos."""

from __future__ import annotations

import os

import numpy as np
import torch

from .cameras import orbit_path, spiral_path


def to_uint8(img: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(img, torch.Tensor):
        img = img.detach().float().cpu().numpy()
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def heat(x: np.ndarray) -> np.ndarray:
    """Scalar map in [0, 1] ``[H, W]`` -> RGB ``[H, W, 3]`` (black -> red -> yellow -> white)."""
    x = np.clip(x, 0.0, 1.0)[..., None]
    return np.clip(np.concatenate([3 * x, 3 * x - 1, 3 * x - 2], axis=-1), 0.0, 1.0)


def depth_image(depth: torch.Tensor) -> np.ndarray:
    """Normalized-distance map ``[H, W]`` -> RGB float, near = bright."""
    d = depth.detach().float().cpu().numpy()
    lo, hi = np.percentile(d, 1), np.percentile(d, 99)
    return heat(1.0 - (d - lo) / max(hi - lo, 1e-8))


def side_by_side(render: torch.Tensor, gt: torch.Tensor, error_gain: float = 4.0) -> np.ndarray:
    """``render | ground truth | error`` (mean absolute error x ``error_gain``) as uint8 ``[H, 3W, 3]``."""
    r, g = render.detach().float().cpu().numpy(), gt.detach().float().cpu().numpy()
    err = heat(np.abs(r - g).mean(-1) * error_gain)
    return to_uint8(np.concatenate([r, g, err], axis=1))


def save_image(path: str, img: np.ndarray) -> None:
    import imageio.v3 as iio

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    iio.imwrite(path, img)


VIDEO_EXTENSIONS = (".mp4", ".gif")  # .gif: pillow, always here; .mp4: imageio-ffmpeg, else a .gif beside it


def check_video_path(path: str) -> None:
    """``ValueError`` naming ``path`` unless its extension is one :func:`write_video` writes."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in VIDEO_EXTENSIONS:
        raise ValueError(
            f"{path}: unsupported video extension {ext or '(none)'!r}; supported: "
            f"{', '.join(VIDEO_EXTENSIONS)} (.mp4 needs imageio-ffmpeg, else a .gif is written beside it)"
        )


def write_video(frames: list[np.ndarray], path: str, fps: int = 24) -> str:
    """Write uint8 frames as mp4 (imageio-ffmpeg) or, if that is not installed, a gif beside it. -> the
    path written. The writer is closed on every path, so a failed write leaves no half-open writer
    (whose later clean-up would print an "Exception ignored" traceback)."""
    import imageio.v2 as imageio

    check_video_path(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.lower().endswith(".mp4"):
        try:
            import imageio_ffmpeg  # noqa: F401 - the mp4 backend
        except ImportError:
            path = os.path.splitext(path)[0] + ".gif"
    # macro_block_size=1 keeps odd frame sizes (e.g. 126x94) without resizing.
    kw = (
        {"fps": fps, "macro_block_size": 1, "quality": 8}
        if path.lower().endswith(".mp4")
        else {"duration": 1.0 / fps, "loop": 0}
    )
    with imageio.get_writer(path, mode="I", **kw) as writer:
        for frame in frames:
            writer.append_data(frame)
    return path


def video_path(scene, n_frames: int = 60) -> torch.Tensor:
    """Spiral for forward-facing scenes, turntable otherwise: ``[n, 4, 4]``."""
    if scene.space == "ndc":
        return spiral_path(scene.c2w, scene.focus_depth or 1.0, n_frames)
    return orbit_path(scene.c2w, n_frames)


def check_video_args(n_frames: int, fps: int) -> None:
    """``ValueError`` naming the argument unless both are integers >= 1."""
    for name, v in (("n_frames", n_frames), ("fps", fps)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"`{name}` must be an integer >= 1, got {v!r}")


def render_video(
    model,
    scene,
    path: str,
    n_frames: int = 60,
    fps: int = 24,
    chunk: int | None = None,
    device="cpu",
    with_depth: bool = True,
    progress_bar: bool = True,
) -> str:
    """Render ``video_path(scene)`` (rgb | depth) with ``scene``'s first intrinsics and image size
    (``chunk`` rays at a time, default the model's ``cfg.eval_chunk``)."""
    from .render import progress_bar as make_bar
    from .render import render_image

    check_video_args(n_frames, fps)
    check_video_path(path)
    frames = []
    intr = scene.intrinsics[0]
    H, W = scene.height, scene.width
    bar = make_bar(n_frames * H * W, "render-video", progress_bar)
    for c2w in video_path(scene, n_frames):
        out = render_image(
            model,
            scene.camera_rays(c2w, intr),
            H,
            W,
            chunk,
            device,
            outputs=("rgb", "depth") if with_depth else ("rgb",),
            bar=bar,
        )
        rgb = out["rgb"].numpy()
        if with_depth:
            rgb = np.concatenate([rgb, depth_image(out["depth"])], axis=1)
        frames.append(to_uint8(rgb))
    bar.close()
    return write_video(frames, path, fps)


__all__ = [
    "VIDEO_EXTENSIONS",
    "check_video_args",
    "check_video_path",
    "depth_image",
    "heat",
    "render_video",
    "save_image",
    "side_by_side",
    "to_uint8",
    "video_path",
    "write_video",
]
