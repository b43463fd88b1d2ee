"""The subject's outline decided against the scene behind it, where the clean plate saw that scene.

The motion segmenter's matte is a guided filter over a binary mask whose edge the change evidence draws 1-3 px too
wide: a subject's soft edge differs from the plate long before it is half subject. A pixel there is a mix of a
subject colour F and the scene's colour B, I = alpha F + (1 - alpha) B, and B is known (the plate warped into the
frame). F is sampled, as in sampling-based matting: among the subject's sure inside (at least `REACH` // 2 px in)
within a `COLOUR_BOX` box, the colour whose line to B passes closest to I, and alpha is I's position along that
line. A striped or textured subject keeps its stripes: each edge pixel finds the stripe it continues.

Decided are the pixels within `REACH` px of the outline, either side, and inside pixels that show the plate's
scene (within `SAME_SCENE`): the scene seen through a gap between arm and body, which the filled mask covered.
That second rule trusts the plate only where at least `TRUSTED_FRAMES` frames saw the scene and the change
evidence did not call the pixel subject: a slow subject's flat inside is in the plate too when the matte missed
it in the few frames that saw it. Where no sampled F differs from B by `MIN_CONTRAST`, where the plate never saw
the scene, or with no sure inside nearby, the matte is left as it was.

Beyond that band the matte still glows: the guided filter that made it spreads a few tenths of alpha several
pixels out, and composed elsewhere that glow carries a faint rim of the old scene. Once the scene is restored
and the shadow is in the effects layer, `clear_glow` drops the matte wherever, outside the band, the frame
shows the scene (the restored scene times the effects gain, within `SAME_SCENE`).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..parallel import frame_map
from ..video.geometry import mask_window
from .plate import Canvas, seen_enough

REACH = 5             # px (ellipse side): the outline band is the mask dilated minus eroded by this
COLOUR_BOX = 9        # px (box side): subject colours are sampled from its sure inside within this box
MIN_CONTRAST = 30.0   # RGB distance: a sampled subject colour this close to the scene's says nothing
SAME_SCENE = 20.0     # RGB distance: an inside pixel this close to the plate may be the scene seen through a gap
TRUSTED_FRAMES = 5    # frames: a see-through pixel needs a plate seen by at least this many frames


def _offsets(box: int) -> np.ndarray:
    """(K, 2) int (dy, dx): where subject colours are sampled around a pixel: its 8 neighbours and every other
    pixel of a `box` x `box` square (33 offsets for 9; all 81 measure the same within 0.001 J, 2.5x slower)."""
    half = box // 2
    grid = np.mgrid[-half:half + 1, -half:half + 1].reshape(2, -1).T
    keep = (np.abs(grid).max(axis=1) == 1) | ((grid % 2 == 0).all(axis=1) & grid.any(axis=1))
    return grid[keep]


def plate_alpha(frame: np.ndarray, background: np.ndarray, alpha: np.ndarray, visible: np.ndarray,
                trusted: np.ndarray) -> np.ndarray:
    """One frame's matte with its outline (and see-through gaps) decided against the scene.

    Args:
        frame: (H, W, 3) float32, 0-255.
        background: (H, W, 3) float32, 0-255: the clean plate in this frame's view and exposure.
        alpha: (H, W) float32 in [0, 1]: the matte so far.
        visible: (H, W) bool: where the plate saw the scene (the outline is decided there).
        trusted: (H, W) bool: where an inside pixel that matches the plate may be the scene seen through a gap.
    Returns:
        (H, W) float32 in [0, 1]: `alpha` with the decided pixels replaced by their estimate.
    """
    mask = (alpha > 0.5).astype(np.uint8)
    if not mask.any():
        return alpha
    height, width = mask.shape
    ellipse = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (REACH, REACH))
    inside = cv2.erode(mask, ellipse) > 0
    outline = (cv2.dilate(mask, ellipse) > 0) & ~inside
    offset = frame - background
    same_scene = cv2.transform(offset * offset, np.ones((1, 3), np.float32)) < SAME_SCENE ** 2
    ys, xs = np.nonzero(outline & visible | inside & same_scene & trusted & visible)
    if not len(ys):
        return alpha
    # Flat per-channel views of the frame padded by half a box, so each sample is one gather of N values.
    pad = COLOUR_BOX // 2
    stride = width + 2 * pad
    padded = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    channels = [np.ascontiguousarray(padded[..., c]).reshape(-1) for c in range(3)]
    sure = np.pad(inside, pad).reshape(-1)
    centre = (ys + pad) * stride + (xs + pad)
    scene = [background[ys, xs, c] for c in range(3)]
    pixel = [offset[ys, xs, c] for c in range(3)]
    pixel_norm = pixel[0] * pixel[0] + pixel[1] * pixel[1] + pixel[2] * pixel[2]
    # All samples at once, (K, N): direction = a sampled subject colour minus the scene; the residual is
    # |pixel - share * direction|^2.
    steps = _offsets(COLOUR_BOX)
    sample = centre[None, :] + (steps[:, 0] * stride + steps[:, 1])[:, None]
    direction = [channels[c][sample] - scene[c] for c in range(3)]
    contrast = direction[0] * direction[0] + direction[1] * direction[1] + direction[2] * direction[2]
    along = pixel[0] * direction[0] + pixel[1] * direction[1] + pixel[2] * direction[2]
    share = np.clip(along / np.maximum(contrast, 1), 0, 1)
    residual = pixel_norm - share * (2 * along - share * contrast)
    residual[~(sure[sample] & (contrast > MIN_CONTRAST ** 2))] = np.inf
    chosen = np.argmin(residual, axis=0)
    columns = np.arange(len(ys))
    best, estimate = residual[chosen, columns], share[chosen, columns]
    decided = np.isfinite(best)
    out = alpha.copy()
    out[ys[decided], xs[decided]] = estimate[decided]
    return out


def clear_glow(frames: np.ndarray, alpha: np.ndarray, scene: np.ndarray, effects: np.ndarray) -> np.ndarray:
    """The matte without its glow: pixels below 0.5 farther out than the outline band (`REACH`) whose colour is
    the scene's, `effects` x `scene` within `SAME_SCENE`, get alpha 0; the rest is kept.

    Args:
        frames: (T, H, W, 3) uint8.
        alpha: (T, H, W) float32 in [0, 1], the final matte (shadow already out of it).
        scene: (T, H, W, 3) uint8: the restored scene in every frame's view (at least where alpha > 0).
        effects: (T, H, W) float32 gain, 1 = untouched.
    Returns:
        (T, H, W) float32 in [0, 1].
    """
    out = alpha.copy()
    ellipse = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (REACH, REACH))

    def one(t: int) -> None:
        crop = mask_window(alpha[t] > 0)
        if crop is None:
            return
        matte = out[t][crop]
        band = cv2.dilate((matte > 0.5).astype(np.uint8), ellipse) > 0
        offset = frames[t][crop].astype(np.float32) - scene[t][crop].astype(np.float32) * effects[t][crop][..., None]
        same_scene = cv2.transform(offset * offset, np.ones((1, 3), np.float32)) < SAME_SCENE ** 2
        matte[~band & same_scene & (matte < 0.5)] = 0.0

    frame_map(one, range(len(alpha)))
    return out


def refine_outline(frames: np.ndarray, alpha: np.ndarray, plate: np.ndarray, seen_by: np.ndarray, canvas: Canvas,
                   gains: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """`plate_alpha` on every frame, read within the matte's box only (nothing farther is decided or sampled).

    Args:
        frames: (T, H, W, 3) uint8.
        alpha: (T, H, W) float32 in [0, 1].
        plate: (Hc, Wc, 3) uint8 on `canvas` (`plate.clean_plate`).
        seen_by: (Hc, Wc) int: how many frames saw each canvas pixel's scene (`plate.counted_plate`).
        gains: (T, 3) float32: each frame's exposure relative to the plate (`plate.exposure_gain`).
        changed: (T, H, W) bool: where the segmenter's change evidence said subject.
    Returns:
        (T, H, W) float32 in [0, 1].
    """
    out = alpha.copy()
    seen_by = seen_by.astype(np.float32)
    margin = REACH + COLOUR_BOX // 2 + 1

    def one(t: int) -> None:
        crop = mask_window(alpha[t] > 0.5, margin)
        if crop is None:
            return
        box = (crop[0].start, crop[0].stop, crop[1].start, crop[1].stop)
        background = canvas.to_frame(plate, t, box=box).astype(np.float32) * gains[t]
        frames_seen = canvas.to_frame(seen_by, t, cv2.INTER_NEAREST, box=box)
        trusted = (frames_seen >= TRUSTED_FRAMES) & ~changed[t][crop]
        out[t][crop] = plate_alpha(frames[t][crop].astype(np.float32), background, alpha[t][crop],
                                   seen_enough(frames_seen, len(alpha)), trusted)

    frame_map(one, range(len(alpha)))
    return out
