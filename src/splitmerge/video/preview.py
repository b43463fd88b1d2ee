"""Pictures for people: side-by-side preview videos and labelled PNG grids.

Panels are scaled to a common height, matte panels shown in grey, and each column gets a label strip on top.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..atomic import atomic_file

LABEL_HEIGHT = 18
PREVIEW_HEIGHT = 240


def as_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 unchanged; a matte (H, W) float in [0, 1] or uint8 becomes grey RGB."""
    if image.ndim == 3:
        return image
    if image.dtype.kind == "f":
        image = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    return np.repeat(image[..., None], 3, axis=2)


def _fit_height(image: np.ndarray, height: int) -> np.ndarray:
    if image.shape[0] == height:
        return image
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    interpolation = cv2.INTER_AREA if height < image.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def label_strip(text: str, width: int, height: int = LABEL_HEIGHT) -> np.ndarray:
    """A dark strip (height, width, 3) with `text` in white."""
    strip = np.full((height, width, 3), 32, dtype=np.uint8)
    scale = height / 36
    cv2.putText(strip, text, (4, height - 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return strip


def matte_overlay(frame: np.ndarray, alpha: np.ndarray, colour=(255, 64, 64), strength: float = 0.45
                  ) -> np.ndarray:
    """`frame` (H, W, 3) uint8 with the matte `alpha` (H, W) in [0, 1] tinted in `colour` and its edge (alpha
    0.5) drawn, so the subject's outline can be judged against the picture."""
    a = np.clip(alpha.astype(np.float32), 0, 1)[..., None] * strength
    tinted = frame.astype(np.float32) * (1 - a) + np.asarray(colour, np.float32) * a
    out = np.clip(np.rint(tinted), 0, 255).astype(np.uint8)
    contours, _ = cv2.findContours((alpha > 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, colour, max(1, frame.shape[0] // 240), cv2.LINE_AA)
    return out


def side_by_side(panels: Sequence[np.ndarray], labels: Sequence[str] | None = None,
                 height: int | None = None, gap: int = 2) -> np.ndarray:
    """Join images left to right at one height (default: the first panel's), with optional labels on top.

    Returns (height [+ label strip], sum of widths + gaps, 3) uint8; the total size is made even for H.264.
    """
    height = height or panels[0].shape[0]
    tiles = [_fit_height(as_rgb(p), height) for p in panels]
    if labels is not None:
        tiles = [np.concatenate([label_strip(text, t.shape[1]), t]) for text, t in zip(labels, tiles, strict=True)]
    spacer = np.full((tiles[0].shape[0], gap, 3), 255, dtype=np.uint8)
    row = tiles[0]
    for tile in tiles[1:]:
        row = np.concatenate([row, spacer, tile], axis=1)
    return np.pad(row, ((0, row.shape[0] % 2), (0, row.shape[1] % 2), (0, 0)))


def grid(rows: Sequence[Sequence[np.ndarray]], labels: Sequence[str] | None = None, height: int | None = None,
         gap: int = 2) -> np.ndarray:
    """Stack rows of panels (each row as `side_by_side`); labels go on the first row only."""
    lines = [side_by_side(r, labels if i == 0 else None, height, gap) for i, r in enumerate(rows)]
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, gap), (0, width - line.shape[1]), (0, 0)), constant_values=255) for line in lines]
    return np.concatenate(lines)


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an RGB image (H, W, 3) uint8 as PNG, atomically."""
    with atomic_file(path) as temporary:
        if not cv2.imwrite(str(temporary), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: could not write PNG")
    return Path(path)


def write_jpeg(path: str | os.PathLike, image: np.ndarray, quality: int = 90) -> Path:
    """Write an RGB image (H, W, 3) uint8 as JPEG (`quality` 0-100), atomically."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"{path}: could not encode JPEG")
    with atomic_file(path) as temporary:
        temporary.write_bytes(encoded.tobytes())
    return Path(path)


def preview_height(frame_height: int) -> int:
    """Preview panels are at most PREVIEW_HEIGHT pixels high (even), never enlarged."""
    return min(frame_height, PREVIEW_HEIGHT) // 2 * 2 or 2


LAYERS_PREVIEW_LABELS = ("source", "matte", "foreground", "background")


def effects_picture(effects: np.ndarray) -> np.ndarray:
    """Effects (H, W) or (H, W, 3), a gain >= 0, as an (H, W, 3) uint8 picture: 1 (untouched) mid grey (128),
    0 black (a full shadow), 2 and above white."""
    image = np.clip(np.rint(effects.astype(np.float32) * 128), 0, 255).astype(np.uint8)
    return as_rgb(image)


def layers_preview_frame(frame: np.ndarray, alpha: np.ndarray, foreground: np.ndarray, background: np.ndarray,
                         height: int, effects: np.ndarray | None = None) -> np.ndarray:
    """One preview frame of a Layers clip: source | matte | foreground | background [| effects], labelled,
    `height` high (the effects panel only with `effects`, shown by `effects_picture`)."""
    if effects is None:
        return side_by_side((frame, alpha, foreground, background), LAYERS_PREVIEW_LABELS, height)
    return side_by_side((frame, alpha, foreground, background, effects_picture(effects)),
                        (*LAYERS_PREVIEW_LABELS, "effects"), height)
