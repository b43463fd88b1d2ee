"""Resizing with aspect kept: how a source frame maps onto a target size.

Two fits:
- ``cover`` (the project default, DESIGN.md): centre-crop the source to the target aspect, then resize. Nothing is
  padded; the crop box is recorded so that later stages know which part of the source a frame shows.
- ``contain``: resize the whole source to fit inside the target, then pad with black (letterbox / pillarbox).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ..errors import OptionError
from .budget import check_frame_size

FITS = ("cover", "contain")


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels: top-left corner and size."""

    top: int
    left: int
    height: int
    width: int

    def to_dict(self) -> dict:
        return asdict(self)


def mask_window(mask: np.ndarray, margin: int = 0) -> tuple[slice, slice] | None:
    """The rows and columns of the bounding box of `mask` (H, W) bool, grown by `margin` px on every side and
    clipped to the frame; None when the mask is empty. Work near a matte reads and writes this window only."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    height, width = mask.shape
    return (slice(max(int(rows[0]) - margin, 0), min(int(rows[-1]) + 1 + margin, height)),
            slice(max(int(cols[0]) - margin, 0), min(int(cols[-1]) + 1 + margin, width)))


@dataclass(frozen=True)
class ResizePlan:
    """The crop taken from the source and where its resized content sits in the target.

    `crop` is in source pixels; `content` is in target pixels (equal to the whole target for ``cover``).
    """

    source_size: tuple[int, int]
    target_size: tuple[int, int]
    fit: str
    crop: Box
    content: Box

    def to_dict(self) -> dict:
        return {"fit": self.fit, "source_size": list(self.source_size), "target_size": list(self.target_size),
                "crop": self.crop.to_dict(), "content": self.content.to_dict()}


def parse_size(text: str | tuple[int, int] | list[int] | None) -> tuple[int, int] | None:
    """Parse a size given as ``"HxW"`` or ``(H, W)``; ``None`` stays ``None``. Sizes above the pixel limit
    (`budget.max_pixels`) are refused here, before anything is decoded or allocated."""
    if text is None:
        return None
    if isinstance(text, str):
        parts = text.lower().replace("×", "x").split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise OptionError(f"size {text!r}: expected HEIGHTxWIDTH, e.g. 240x360")
        size = (int(parts[0]), int(parts[1]))
    else:
        try:
            size = tuple(int(v) for v in text)
        except (TypeError, ValueError, OverflowError):
            raise OptionError(f"size {text!r}: expected (height, width) integers") from None
        if len(size) != 2:
            raise OptionError(f"size {text!r}: expected (height, width)")
    if size[0] < 2 or size[1] < 2:
        raise OptionError(f"size {size[0]}x{size[1]}: height and width must be at least 2 pixels")
    check_frame_size(*size, "size")
    return size  # type: ignore[return-value]


def plan_resize(source_size: tuple[int, int], target_size: tuple[int, int], fit: str = "cover") -> ResizePlan:
    """Plan how a source of (H, W) pixels becomes (H', W') pixels keeping the aspect ratio."""
    if fit not in FITS:
        raise OptionError(f"fit {fit!r}: expected one of {', '.join(FITS)}")
    (sh, sw), (th, tw) = source_size, target_size
    if fit == "cover":
        # The largest centred box of the target's aspect inside the source.
        if sw * th > tw * sh:  # source wider than target
            ch, cw = sh, max(1, round(sh * tw / th))
        else:
            ch, cw = max(1, round(sw * th / tw)), sw
        crop = Box((sh - ch) // 2, (sw - cw) // 2, ch, cw)
        content = Box(0, 0, th, tw)
    else:
        scale = min(th / sh, tw / sw)
        ch, cw = max(1, round(sh * scale)), max(1, round(sw * scale))
        crop = Box(0, 0, sh, sw)
        content = Box((th - ch) // 2, (tw - cw) // 2, ch, cw)
    return ResizePlan((sh, sw), (th, tw), fit, crop, content)


def apply_resize(image: np.ndarray, plan: ResizePlan) -> np.ndarray:
    """Crop, resize and pad one image (H, W) or (H, W, C) according to `plan`.

    Area interpolation when shrinking (no aliasing), bilinear when enlarging.
    """
    c, content = plan.crop, plan.content
    region = image[c.top:c.top + c.height, c.left:c.left + c.width]
    if (content.height, content.width) != region.shape[:2]:
        shrinking = content.height * content.width < region.shape[0] * region.shape[1]
        region = cv2.resize(region, (content.width, content.height),
                            interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    if (content.height, content.width) == plan.target_size:
        return np.ascontiguousarray(region)
    out = np.zeros(plan.target_size + image.shape[2:], dtype=image.dtype)
    out[content.top:content.top + content.height, content.left:content.left + content.width] = region
    return out


def working_size(height: int, width: int, base: int, max_area: int) -> tuple[int, int]:
    """(h, w) a generative model runs at: the clip's aspect, at most `max_area` pixels, both sides multiples of
    `base`."""
    scale = min(1.0, (max_area / (height * width)) ** 0.5)
    return (max(base, int(height * scale) // base * base), max(base, int(width * scale) // base * base))


def capped_size(height: int, width: int, max_height: int) -> tuple[int, int] | None:
    """(max_height, width scaled alike and rounded to even) when the clip is higher than `max_height`, else None
    (keep its size)."""
    if height <= max_height:
        return None
    return max_height, max(2, round(width * max_height / height / 2) * 2)


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Every frame of (T, H, W[, C]) (uint8 pixels or float mattes) to `size` (H', W') as it is (no crop): by area
    averaging where it shrinks (no aliasing), bilinear where it enlarges (area interpolation would enlarge in
    blocks)."""
    height, width = size
    enlarging = height > frames.shape[1] or width > frames.shape[2]
    interpolation = cv2.INTER_LINEAR if enlarging else cv2.INTER_AREA
    return np.stack([cv2.resize(frame, (width, height), interpolation=interpolation) for frame in frames])
