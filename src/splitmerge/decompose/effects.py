"""Effects apart from the subject: the shadow a subject casts, as a gain over the clean plate (Layers version 2).

A motion segmenter sees a cast shadow move with its subject and puts it in the matte; composed elsewhere, that
matte drags a dark patch of the old scene along. A shadow only darkens what is under it: there the clip is the
plate times a gain below 1, with the plate's colour and texture. So, given the segmentation's matte and the clean
plate restored under it (which holds neither subject nor shadow), each matte pixel is explained as:

- **the plate**, darkened or not, when its luminance gain over the plate g = Y(source) / Y(plate) lies in
  [`GAIN_MIN`, `GAIN_MAX`], its chromaticity matches the plate's (L1 distance of r, g, b / (r + g + b) below
  `CHROMA_L1`) and its texture does too (the luminance's local normalised correlation with the plate's at least
  `TEXTURE_NCC`, or both flat): a shadow where g < `NO_EFFECT`, else scenery the matte took in by mistake;
- **subject** otherwise.

Plate pixels leave the matte where they are darkened (and just around), in pieces that touch the matte's outside
(a ghost of the subject left in a poorly restored plate looks like the plate at gain 1, and a cast shadow lies
beside its subject, not inside it); the gain of the shadow, smoothed, is the effects layer; elsewhere the effects
are 1.
Given the scene (the restored plate in every frame's view, also outside the matte), the shadow is followed
beyond the matte too: darkened plate-like pieces outside it that touch the shadow taken out of it (a segmenter's
matte often holds only the dark core of a soft shadow). Only pieces that continue a shadow found inside: a piece
merely touching the matte could be the dark side of another mover or the scene's own shade.
Then ``source ~ fg + (1 - alpha) * effects * plate`` with the shadow in `effects` and not in `alpha`.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..parallel import frame_map
from ..video.geometry import mask_window
from .motion import channel_sum

GAIN_MIN = 0.2        # darker than this is not a shadow on the plate (a dark subject)
GAIN_MAX = 1.08       # lighter than this is not the plate (a bright subject)
NO_EFFECT = 0.92      # gains above this are the plate itself (noise, a matte's margin): effects 1 there
CHROMA_L1 = 0.07      # chromaticity distance (sum over r, g, b of |c_source - c_plate|, c = rgb / sum)
TEXTURE_NCC = 0.5     # local luminance correlation with the plate, over a TEXTURE_WINDOW square
TEXTURE_WINDOW = 7    # px
RATIO_SIGMA = 1.5     # px: the scale below which a shadow's gain has no detail
RATIO_RESIDUAL = 0.04  # mean |gain - its blur| over 3x3 at most this: the gain is smooth there
NOISE_LEVELS = 3.0    # 8-bit levels of sensor noise (2 sigma) the ratio tests allow for, on top of their bounds
FLAT_STD = 3.0        # luminance levels: both this flat, texture cannot tell and chroma decides
SHADOW_RIM = 3        # px around a shadow's darkened core that may leave the matte with it
MIN_SHADOW_PX = 12    # shadow specks smaller than this (px, after opening) stay subject
SOFTEN_SIGMA = 1.0    # px, the shadow mask's soft edge
GAIN_SIGMA = 2.0      # px, smoothing of the gain inside the shadow (sensor noise)
MATTE_MIN = 0.01      # matte values below this are not looked at
REACH = 24            # px: farther than this from the matte no filter above reads a pixel (crops are this wide)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """(H, W) float32 luminance (Rec. 601) of an (H, W, 3) image, in 8-bit levels."""
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def _chromaticity(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32: rgb / (r + g + b), from (H, W, 3) uint8."""
    values = rgb.astype(np.float32) + 1.0
    return values / channel_sum(values)[..., None]


def _local_stats(first: np.ndarray, second: np.ndarray, window: int) -> tuple[np.ndarray, ...]:
    """Box-filtered (std of `first`, std of `second`, their correlation) over `window` x `window` squares."""
    def mean(image):
        return cv2.blur(image, (window, window), borderType=cv2.BORDER_REFLECT)

    mean_a, mean_b = mean(first), mean(second)
    var_a = np.maximum(mean(first * first) - mean_a * mean_a, 0)
    var_b = np.maximum(mean(second * second) - mean_b * mean_b, 0)
    covariance = mean(first * second) - mean_a * mean_b
    std_a, std_b = np.sqrt(var_a), np.sqrt(var_b)
    return std_a, std_b, covariance / np.maximum(std_a * std_b, 1e-6)


def shadow_evidence(frame: np.ndarray, plate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(is a shadow (H, W) bool, gain (H, W) float32) of one frame (H, W, 3) uint8 over its plate (H, W, 3)
    uint8, before any spatial clean-up: see the module docstring."""
    y_frame, y_plate = _luminance(frame), _luminance(plate)
    gain = (y_frame + 1.0) / (y_plate + 1.0)
    chroma = channel_sum(cv2.absdiff(_chromaticity(frame), _chromaticity(plate)))
    # Sensor noise weighs more on dark pixels: its share of a ratio grows as the levels fall.
    darkness = NOISE_LEVELS / (y_frame + 1.0)
    std_frame, std_plate, correlation = _local_stats(y_frame, y_plate, TEXTURE_WINDOW)
    # A shadow scales the texture by its gain: compare the frame's texture with the plate's scaled alike.
    flat = (std_frame < FLAT_STD * np.maximum(gain, GAIN_MIN)) & (std_plate < FLAT_STD)
    # ... and its gain varies smoothly (a soft edge is a ramp, which a blur keeps): what a blur changes in the
    # gain is texture the plate does not have.
    residual = cv2.blur(np.abs(gain - cv2.GaussianBlur(gain, (0, 0), RATIO_SIGMA)), (3, 3))
    texture = flat | (correlation >= TEXTURE_NCC) | (residual <= RATIO_RESIDUAL + darkness * gain)
    shadow = (gain >= GAIN_MIN) & (gain <= GAIN_MAX) & (chroma <= CHROMA_L1 + 2 * darkness) & texture
    return shadow, gain.astype(np.float32)


def _pieces(mask: np.ndarray, outside: np.ndarray | None = None) -> np.ndarray:
    """`mask` (H, W) bool after a 3x3 opening, keeping the connected pieces of at least `MIN_SHADOW_PX` px (and,
    given `outside`, only those that touch it)."""
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= MIN_SHADOW_PX
    if outside is not None:
        touching = np.zeros(count, bool)
        touching[labels[outside]] = True
        keep &= touching
    keep[0] = False
    return keep[labels]


def _clean(mask: np.ndarray, dark: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """The plate-like pixels `mask` (H, W) bool worth taking out of the matte: the pieces that touch `outside`
    (the matte's surroundings: a cast shadow lies beside its subject, not in a hole of it), and of those only
    the darkened pixels (`dark`, in pieces of their own of at least `MIN_SHADOW_PX` px) and the plate-like ones
    within `SHADOW_RIM` px of them (the shadow's soft edge). Plate-like pixels at gain 1 elsewhere stay: that is
    also what a ghost of the subject left in a poorly restored plate looks like."""
    attached = _pieces(mask, outside)
    core = _pieces(attached & dark)
    size = 2 * SHADOW_RIM + 1
    return attached & (cv2.dilate(core.astype(np.uint8), np.ones((size, size), np.uint8)) > 0)


def _smoothed_gain(gain: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """`gain` (H, W) averaged over the shadow (`weight` (H, W) in [0, 1]) by a normalised Gaussian blur."""
    numerator = cv2.GaussianBlur(gain * weight, (0, 0), GAIN_SIGMA)
    denominator = cv2.GaussianBlur(weight, (0, 0), GAIN_SIGMA)
    return np.where(denominator > 1e-3, numerator / np.maximum(denominator, 1e-3), 1.0).astype(np.float32)


def separate_frame(frame: np.ndarray, alpha: np.ndarray, plate: np.ndarray, scene: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """One frame: (alpha without the shadow (H, W) float32, effects (H, W) float32 in (0, 1], 1 = untouched)
    from the frame (H, W, 3) uint8, its matte (H, W) float32 and its clean plate (H, W, 3) uint8. Given the
    `scene` (H, W, 3) uint8 (the restored scene in this frame's view everywhere), the shadow is also looked for
    beside the matte: darkened plate-like pieces outside it that continue the shadow taken out of it."""
    candidates = alpha > MATTE_MIN
    if not candidates.any():
        return alpha, np.ones(alpha.shape, np.float32)
    reference = plate if scene is None else np.where(candidates[..., None], plate, scene)
    like, gain = shadow_evidence(frame, reference)
    dark = gain < NO_EFFECT
    outside = cv2.dilate((~candidates).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    inside = _clean(like & candidates, dark, outside)
    beside = np.zeros_like(inside)
    if scene is not None:
        touching = cv2.dilate(inside.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        beside = _pieces(like & dark & ~candidates, touching)
    shadow = inside | beside
    if not shadow.any():
        return alpha, np.ones(alpha.shape, np.float32)
    soft = np.clip(cv2.GaussianBlur(shadow.astype(np.float32), (0, 0), SOFTEN_SIGMA), 0, 1)
    # Shadow pixels fully and a soft rim around them, within the matte or a pixel of the shadow beside it.
    rim = cv2.dilate(beside.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    soft = np.maximum(soft, shadow) * (candidates | rim)
    darkened = np.where(dark, gain, 1.0).astype(np.float32)
    smoothed = np.clip(_smoothed_gain(np.clip(darkened, GAIN_MIN, 1.0), shadow.astype(np.float32)), GAIN_MIN, 1.0)
    effects = (1.0 - soft * (1.0 - smoothed)).astype(np.float32)
    return (alpha * (1.0 - soft * candidates)).astype(np.float32), effects


def separate_cropped(frame: np.ndarray, alpha: np.ndarray, plate: np.ndarray, scene: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """`separate_frame` on the matte's box grown by `REACH` px only (the same result: nothing farther from the
    matte is read, and outside it alpha stays and the effects are 1), which is most of its cost saved. With a
    `scene`, the box grows by the matte's own height as well (a cast shadow reaches about that far beside it)."""
    matte = alpha > MATTE_MIN
    box = mask_window(matte)
    if box is None:
        return alpha, np.ones(alpha.shape, np.float32)
    box = mask_window(matte, REACH + (0 if scene is None else box[0].stop - box[0].start - 1))
    out_alpha, effects = alpha.copy(), np.ones(alpha.shape, np.float32)
    out_alpha[box], effects[box] = separate_frame(frame[box], alpha[box], plate[box],
                                                  None if scene is None else scene[box])
    return out_alpha, effects


def separate_effects(frames: np.ndarray, alpha: np.ndarray, plate: np.ndarray, scene: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Every frame: (alpha (T, H, W) float32 without the cast shadow, effects (T, H, W) float32, 1 = untouched)
    from the clip `frames` (T, H, W, 3) uint8, the segmentation's matte `alpha` (T, H, W) float32 and the clean
    plate restored under it, `plate` (T, H, W, 3) uint8; given the `scene` (T, H, W, 3) uint8 (the restored scene
    in every frame's view everywhere), also the shadow beside the matte."""
    scenes = [None] * len(frames) if scene is None else scene
    pairs = frame_map(lambda arrays: separate_cropped(*arrays), zip(frames, alpha, plate, scenes, strict=True))
    return np.stack([pair[0] for pair in pairs]), np.stack([pair[1] for pair in pairs])
