"""Transforms of a foreground layer: a premultiplied subject (T, H, W, 3) uint8 with its matte (T, H, W) float32.

Each transform takes the pair and returns the pair; nothing outside the subject is touched (the layer is black
outside its matte). They serve training augmentation (the paper's transformation-aware training: flip, resized
crop, colour jitter of the foreground only) and user placement (`place`).

Random transforms are split into a *sampler* that draws JSON-able parameters from a `numpy.random.Generator` and
a deterministic *applier*, so an augmentation is reproducible from its seed and replayable from its recorded
parameters (`apply_params`).

Geometry: pixel (i, j) has its centre at x = j, y = i. A layer scaled by `s` about a centre `c` and shifted by `d`
maps x to ``s * (x - c) + c + d``. Warping premultiplied colour and matte with the same bilinear kernel keeps
the pair consistent at soft edges.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ..errors import OptionError, ShapeError
from .geometry import Box, mask_window
from .homography import carried_matrices

SUBJECT_THRESHOLD = 0.5
MATTE_SNAP = 1e-4  # alpha within this of 0 or 1 after resampling is set to exactly 0 or 1


def _check_pair(foreground: np.ndarray, alpha: np.ndarray) -> None:
    if foreground.ndim != 4 or foreground.shape[-1] != 3 or foreground.dtype != np.uint8:
        raise ShapeError(f"foreground: expected (T, H, W, 3) uint8, got {foreground.shape} {foreground.dtype}")
    if alpha.shape != foreground.shape[:3] or alpha.dtype.kind != "f":
        raise ShapeError(f"alpha: expected float (T, H, W) = {foreground.shape[:3]}, got {alpha.shape} {alpha.dtype}")


# ------------------------------------------------------------------------------------------------ subject extent


def subject_box(alpha: np.ndarray, threshold: float = SUBJECT_THRESHOLD) -> Box | None:
    """Bounding box of alpha > threshold, over all frames of (T, H, W) or one (H, W); None when empty."""
    window = mask_window((alpha > threshold).reshape(-1, *alpha.shape[-2:]).any(axis=0))
    if window is None:
        return None
    rows, cols = window
    return Box(rows.start, cols.start, rows.stop - rows.start, cols.stop - cols.start)


def box_center(box: Box) -> tuple[float, float]:
    """(x, y) centre of a box in pixel coordinates."""
    return box.left + (box.width - 1) / 2, box.top + (box.height - 1) / 2


def subject_center(alpha: np.ndarray) -> tuple[float, float]:
    """(x, y) centre of the subject's box over the whole clip; the frame centre when there is no subject."""
    box = subject_box(alpha)
    if box is None:
        return (alpha.shape[-1] - 1) / 2, (alpha.shape[-2] - 1) / 2
    return box_center(box)


# ------------------------------------------------------------------------------------------ deterministic appliers


def hflip(foreground: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror the layer left-right."""
    _check_pair(foreground, alpha)
    return np.ascontiguousarray(foreground[:, :, ::-1]), np.ascontiguousarray(alpha[:, :, ::-1])


def affine(foreground: np.ndarray, alpha: np.ndarray, scale, shift, center, out_size: tuple[int, int] | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Scale the layer about `center` and shift it: x -> scale * (x - center) + center + shift.

    Args:
        foreground, alpha: the layer, (T, H, W, 3) uint8 and (T, H, W) float.
        scale: a factor, or one per frame (T,).
        shift: (dx, dy) pixels, or one per frame (T, 2).
        center: (cx, cy) pixels in the input, or one per frame (T, 2).
        out_size: (H', W') of the output canvas (default: the input size); the shift is in output pixels.
    Returns:
        The moved layer at `out_size`; what leaves the canvas is lost, what it uncovers is empty (alpha 0).
    """
    _check_pair(foreground, alpha)
    frames = len(foreground)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (frames,))
    shift = np.broadcast_to(np.asarray(shift, dtype=np.float64), (frames, 2))
    center = np.broadcast_to(np.asarray(center, dtype=np.float64), (frames, 2))
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise OptionError(f"scale must be positive and finite, got {scale.min()}..{scale.max()}")
    matrices = np.zeros((frames, 3, 3))
    matrices[:, 0, 0] = matrices[:, 1, 1] = scale
    matrices[:, :2, 2] = (1 - scale[:, None]) * center + shift
    matrices[:, 2, 2] = 1
    return warp_layer(foreground, alpha, matrices, out_size or foreground.shape[1:3])


def warp_layer(foreground: np.ndarray, alpha: np.ndarray, matrices: np.ndarray, out_size: tuple[int, int]
               ) -> tuple[np.ndarray, np.ndarray]:
    """Move each frame of the layer by its affine map: `matrices` (T, 3, 3) (or (T, 2, 3)) from input to output
    pixels; the output canvas is `out_size` (H', W'). What leaves the canvas is lost, what it uncovers is empty."""
    _check_pair(foreground, alpha)
    frames = len(foreground)
    height, width = out_size
    out_fg = np.empty((frames, height, width, 3), dtype=np.uint8)
    out_alpha = np.empty((frames, height, width), dtype=np.float32)
    for t in range(frames):
        matrix = np.asarray(matrices[t], dtype=np.float64)[:2]
        shrink = np.sqrt(abs(np.linalg.det(matrix[:, :2]))) < 0.75
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        out_fg[t] = cv2.warpAffine(foreground[t], matrix, (width, height), flags=interpolation,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        out_alpha[t] = cv2.warpAffine(alpha[t].astype(np.float32), matrix, (width, height), flags=interpolation,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # Resampling leaves values a hair off 0 and 1; snapping them keeps "outside" exactly outside (and the
    # lossless matte files small).
    out_alpha[out_alpha < MATTE_SNAP] = 0
    out_alpha[out_alpha > 1 - MATTE_SNAP] = 1
    return out_fg, out_alpha


def _unpremultiply(foreground: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Colour under the matte, (H, W, 3) float32 in [0, 1]; zero where alpha is (near) zero."""
    a = alpha[..., None]
    colour = foreground.astype(np.float32) / 255 / np.maximum(a, 1 / 255)
    return np.where(a > 0.5 / 255, np.clip(colour, 0, 1), 0).astype(np.float32)


def color_jitter(foreground: np.ndarray, alpha: np.ndarray, brightness: float = 1.0, contrast: float = 1.0,
                 saturation: float = 1.0, hue: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Change the subject's colour under its matte, in this order (factors as torchvision's ColorJitter):

    - brightness: multiply colour by the factor;
    - contrast: blend with the subject's mean grey (alpha-weighted over the whole clip, so it cannot flicker);
    - saturation: blend with each pixel's grey;
    - hue: rotate hue by `hue` turns (0.1 = 36 degrees).
    The matte is unchanged; the colour is un-premultiplied, changed, and premultiplied again.
    """
    _check_pair(foreground, alpha)
    if min(brightness, contrast, saturation) < 0 or not -0.5 <= hue <= 0.5:
        raise OptionError("color_jitter: factors must be >= 0 and hue within [-0.5, 0.5]")
    grey_weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    mean_grey = 0.0
    if contrast != 1.0:
        weight = float(alpha.sum(dtype=np.float64))
        if weight > 0:
            grey_sum = sum(float((foreground[t].astype(np.float32) / 255 @ grey_weights).sum())
                           for t in range(len(foreground)))
            mean_grey = grey_sum / weight * brightness  # premultiplied grey summed = colour grey weighted by alpha
    out = np.empty_like(foreground)
    for t in range(len(foreground)):
        colour = _unpremultiply(foreground[t], alpha[t]) * brightness
        if contrast != 1.0:
            colour = (colour - mean_grey) * contrast + mean_grey
        colour = np.clip(colour, 0, 1)
        if saturation != 1.0:
            grey = (colour @ grey_weights)[..., None]
            colour = np.clip((colour - grey) * saturation + grey, 0, 1)
        if hue != 0.0:
            hsv = cv2.cvtColor(colour, cv2.COLOR_RGB2HSV)  # float input: H in [0, 360)
            hsv[..., 0] = np.mod(hsv[..., 0] + hue * 360.0, 360.0)
            colour = np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0, 1)
        out[t] = np.clip(np.rint(colour * alpha[t][..., None] * 255), 0, 255)
    return out, alpha


def place(foreground: np.ndarray, alpha: np.ndarray, out_size: tuple[int, int], position=None, scale=1.0,
          anchor: str = "clip", center=None, camera: np.ndarray | None = None,
          source_camera: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Put the subject on a canvas of `out_size` (H', W') at a position and size.

    Args:
        position: (x, y) in [0, 1] of the output width and height where the subject's anchor goes, or one per
            frame (T, 2) (a trajectory). None keeps the anchor's relative position in the input frame.
        scale: size factor relative to the subject keeping its size *relative to the frame height*
            (1.0 = as big against H' as it was against H), or one per frame (T,).
        anchor: ``"clip"`` anchors the centre of the subject's box over the whole clip, so the subject keeps its
            own motion around the position; ``"frame"`` anchors each frame's own box centre, so the subject's
            centre follows `position` exactly (frames without a subject use the clip anchor).
        center: the clip anchor (x, y) in input pixels when known (`subject_center` of the whole clip), so a clip
            placed a chunk of frames at a time lands exactly as placed whole; with `source_camera`, in the
            subject's first-frame coordinates (`merge.anchor.SubjectExtent`).
        camera: (T, 3, 3) the background's camera, its first frame -> frame t, for a subject anchored to the
            world: `position` is then a point of the first frame, carried to frame t with its size following the
            zoom (`homography.carried_matrices`). None: anchored to the screen.
        source_camera: (T, 3, 3) the subject's own camera, frame t -> its first frame, removed first (None: still).
    """
    _check_pair(foreground, alpha)
    if anchor not in ("clip", "frame"):
        raise OptionError(f"anchor {anchor!r}: expected 'clip' or 'frame'")
    frames, height, width = alpha.shape
    out_h, out_w = out_size
    clip_center = np.array(subject_center(alpha) if center is None else center, dtype=np.float64)
    if anchor == "frame":
        centers = np.array([box_center(b) if (b := subject_box(alpha[t])) else clip_center for t in range(frames)])
    else:
        centers = np.broadcast_to(clip_center, (frames, 2))
    if position is None:
        position = centers / [max(width - 1, 1), max(height - 1, 1)]
    position = np.broadcast_to(np.asarray(position, dtype=np.float64), (frames, 2))
    if not np.all(np.isfinite(position)):
        raise OptionError("position must be finite (x, y) fractions of the frame")
    factor = np.asarray(scale, dtype=np.float64) * out_h / height
    target = position * [out_w - 1, out_h - 1]
    if camera is not None or source_camera is not None:
        factor = np.broadcast_to(factor, (frames,))
        maps = carried_matrices(factor, centers, np.broadcast_to(target, (frames, 2)), camera, source_camera)
        return warp_layer(foreground, alpha, maps, (out_h, out_w))
    # affine() maps x -> s (x - c) + c + d; the anchor must land on `target` in output pixels.
    shift = target - centers
    return affine(foreground, alpha, factor, shift, centers, out_size=(out_h, out_w))


# --------------------------------------------------------------------------------------------------------- samplers


def kept_fraction(alpha: np.ndarray, scale: float, shift, center) -> float:
    """Fraction of the subject's matte mass (summed over time) that stays inside the frame after `affine`."""
    mass = alpha.reshape(-1, *alpha.shape[-2:]).sum(axis=0, dtype=np.float64)
    total = mass.sum()
    if total <= 0:
        return 1.0
    height, width = mass.shape
    (dx, dy), (cx, cy) = shift, center
    xs = scale * (np.arange(width) - cx) + cx + dx
    ys = scale * (np.arange(height) - cy) + cy + dy
    inside_x = ((xs >= -0.5) & (xs <= width - 0.5)).astype(np.float64)
    inside_y = ((ys >= -0.5) & (ys <= height - 0.5)).astype(np.float64)
    return float(inside_y @ mass @ inside_x / total)


def sample_resized_crop(alpha: np.ndarray, rng: np.random.Generator, scale_range=(0.5, 2.0),
                        min_keep: float = 0.9, tries: int = 64) -> dict:
    """Draw a random resized crop of the frame (the paper's "random resized crop") that keeps at least
    `min_keep` of the subject in the frame.

    The crop box has the frame's aspect ratio and `area` times its area, drawn log-uniformly from `scale_range`
    (0.5-2.0; above 1 the box is larger than the frame, a zoom out with empty margins). It is placed uniformly
    where it lies inside the frame (smaller boxes) or covers it (larger ones), and resized to the frame: the
    layer is zoomed by 1 / sqrt(area) (0.71-1.41) and moves with the crop, so the move is bounded and tied to
    the zoom. The placement is redrawn until `min_keep` of the matte mass stays inside; if none qualifies, the
    centred box is used, and failing that the layer is left as it is (``fallback`` says which).

    Returns:
        {"scale" (the zoom), "area", "center": [cx, cy], "shift": [dx, dy], "kept", "fallback"}, for `affine`.
    """
    low, high = scale_range
    if not 0 < low <= high:
        raise OptionError(f"scale_range {scale_range!r}: expected 0 < low <= high")
    if not 0 <= min_keep <= 1:
        raise OptionError(f"min_keep {min_keep!r}: expected a fraction in [0, 1]")
    height, width = alpha.shape[-2:]
    center = subject_center(alpha)
    area = float(math.exp(rng.uniform(math.log(low), math.log(high))))
    zoom = 1 / math.sqrt(area)
    spare = np.array([width, height]) * (1 - 1 / zoom)  # frame size minus box size, per axis (x, y)
    # The box's top-left corner (pixel centres at integers: the frame spans -0.5 .. size - 0.5) maps to -0.5.
    corners = -0.5 + rng.uniform(np.minimum(0, spare), np.maximum(0, spare), size=(tries, 2))
    candidates = [(zoom, corner, "") for corner in corners]
    candidates += [(zoom, -0.5 + spare / 2, "centred"), (1.0, np.array([-0.5, -0.5]), "identity")]
    for scale_i, corner, fallback in candidates:
        # x' = z (x - corner) - 0.5, written as affine's s (x - c) + c + d
        shift = scale_i * (np.asarray(center) - corner) - 0.5 - np.asarray(center)
        kept = kept_fraction(alpha, scale_i, shift, center)
        if kept >= min_keep or fallback == "identity":
            return {"scale": scale_i, "area": area if fallback != "identity" else 1.0,
                    "center": [float(center[0]), float(center[1])], "shift": [float(shift[0]), float(shift[1])],
                    "kept": round(kept, 6), "fallback": fallback}
    raise AssertionError("unreachable: the identity candidate always qualifies")


def sample_color_jitter(rng: np.random.Generator, brightness: float = 0.2, contrast: float = 0.2,
                        saturation: float = 0.2, hue: float = 0.2) -> dict:
    """Draw ColorJitter factors: brightness/contrast/saturation in [1 - x, 1 + x], hue in [-h, h] turns."""
    if min(brightness, contrast, saturation, hue) < 0 or hue > 0.5:
        raise OptionError("jitter strengths must be >= 0 and hue <= 0.5")
    return {"brightness": float(rng.uniform(max(0, 1 - brightness), 1 + brightness)),
            "contrast": float(rng.uniform(max(0, 1 - contrast), 1 + contrast)),
            "saturation": float(rng.uniform(max(0, 1 - saturation), 1 + saturation)),
            "hue": float(rng.uniform(-hue, hue))}


# ----------------------------------------------------------------------------------------------------- augmentation


@dataclass
class AugmentConfig:
    """The transformation-aware augmentation of the foreground layer; defaults are the paper's (PAPER.md).

    Set a probability to 0 (or `enabled` to False) to switch a piece off for ablations.
    """

    enabled: bool = True
    flip_p: float = 0.7
    crop_p: float = 0.7
    crop_scale: tuple[float, float] = (0.5, 2.0)   # the crop box's area against the frame's
    crop_min_keep: float = 0.9
    jitter_p: float = 0.2
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.2

    def to_dict(self) -> dict:
        return asdict(self)


def sample_augmentation(alpha: np.ndarray, rng: np.random.Generator, config: AugmentConfig | None = None) -> dict:
    """Draw the parameters of one augmentation: {"flip": bool, "crop": dict | None, "jitter": dict | None}.

    The random numbers are drawn in a fixed order (flip, crop, jitter), each whether or not it is used, so
    switching one piece off leaves the others' draws for the same seed unchanged (the crop is drawn on the
    flipped matte when the flip is on, so its centre mirrors; its scale is the same).
    """
    config = config or AugmentConfig()
    flip_draw, crop_draw, jitter_draw = rng.uniform(size=3)
    flip = bool(config.enabled and flip_draw < config.flip_p)
    crop_params = sample_resized_crop(alpha[:, :, ::-1] if flip else alpha, rng, config.crop_scale,
                                      config.crop_min_keep)
    jitter_params = sample_color_jitter(rng, config.brightness, config.contrast, config.saturation, config.hue)
    return {"flip": flip,
            "crop": crop_params if config.enabled and crop_draw < config.crop_p else None,
            "jitter": jitter_params if config.enabled and jitter_draw < config.jitter_p else None}


def apply_params(foreground: np.ndarray, alpha: np.ndarray, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """Apply recorded augmentation parameters (from `sample_augmentation`): flip, then crop, then jitter."""
    if params.get("flip"):
        foreground, alpha = hflip(foreground, alpha)
    crop = params.get("crop")
    if crop:
        foreground, alpha = affine(foreground, alpha, crop["scale"], crop["shift"], crop["center"])
    jitter = params.get("jitter")
    if jitter:
        foreground, alpha = color_jitter(foreground, alpha, **jitter)
    return foreground, alpha


def augment(foreground: np.ndarray, alpha: np.ndarray, rng: np.random.Generator | int,
            config: AugmentConfig | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Randomly transform a foreground layer as the paper's transformation-aware training does.

    Args:
        foreground: (T, H, W, 3) uint8 premultiplied; alpha: (T, H, W) float32.
        rng: a Generator or an integer seed.
        config: the pieces and their ranges; the paper's defaults when None.
    Returns:
        (foreground, alpha, params): the transformed pair and the JSON-able parameters actually applied.
    """
    _check_pair(foreground, alpha)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    params = sample_augmentation(alpha, rng, config)
    foreground, alpha = apply_params(foreground, alpha, params)
    return foreground, alpha, params
