"""Frames for vision-language models: an even sample of a clip, downscaled, as JPEG data URLs.

The paper captions each clip from 12 frames sampled evenly over its length (`CAPTION_FRAMES`).
"""

from __future__ import annotations

import base64

import cv2
import numpy as np

from ..errors import ShapeError

CAPTION_FRAMES = 12
JPEG_QUALITY = 90


def sample_indices(count: int, k: int) -> list[int]:
    """`k` frame indices spread evenly over `count` frames, first and last included; all of them when
    ``count <= k``."""
    if count <= 0 or k <= 0:
        return []
    if count <= k:
        return list(range(count))
    return [int(i) for i in np.rint(np.linspace(0, count - 1, k))]


def downscale(frame: np.ndarray, max_side: int | None) -> np.ndarray:
    """`frame` (H, W, 3) uint8 shrunk (aspect kept, area filter) so its longer side is at most `max_side`
    pixels; returned unchanged when already small enough or when `max_side` is None."""
    height, width = frame.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return frame
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def sample_frames(frames: np.ndarray, k: int = CAPTION_FRAMES, max_side: int | None = None) -> list[np.ndarray]:
    """`k` frames of `frames` (T, H, W, 3) uint8 RGB taken evenly over time, each (h, w, 3) uint8 RGB with its
    longer side at most `max_side` pixels."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ShapeError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    return [downscale(frames[i], max_side) for i in sample_indices(len(frames), k)]


def jpeg_data_url(frame: np.ndarray, quality: int = JPEG_QUALITY) -> str:
    """``data:image/jpeg;base64,...`` of `frame` (H, W, 3) uint8 RGB."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ShapeError(f"cannot encode a {frame.shape} frame as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")
