"""The clean plate: the scene without the subject, assembled in a stabilised frame from every frame of a clip.

All frames are warped by the camera motion onto one canvas (the reference frame's coordinates, grown to hold
what the camera sees over the clip). Each canvas pixel takes the temporal median of the frames that see it
while it is *not* covered by the subject; what no frame ever saw stays marked unseen. Warping the plate back
into frame t gives that frame's background with the camera's motion intact, and because every frame reads the
same plate, the filled background cannot flicker.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..parallel import frame_map

from .camera import CameraMotion

MAX_CANVAS_FACTOR = 3  # the canvas is at most this many frame widths/heights (guards against runaway homographies)
UNUSABLE = np.uint16(65535)   # a sample no frame gives: sorts after every usable one


@dataclass
class Canvas:
    """The stabilised canvas of a clip: its size and, per frame, the homography frame -> canvas."""

    size: tuple[int, int]            # (Hc, Wc)
    to_canvas: np.ndarray            # (T, 3, 3)
    frame_size: tuple[int, int]      # (H, W)

    def to_frame(self, image: np.ndarray, t: int, interpolation: int = cv2.INTER_LINEAR,
                 box: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Canvas image (Hc, Wc[, C]) -> what frame t sees, (H, W[, C]); with `box` (top, bottom, left, right)
        in frame pixels, only that part of it (cropping the whole view gives the same values; a float image's
        warp rounds differently, within 1e-7)."""
        height, width = self.frame_size
        top, bottom, left, right = (0, height, 0, width) if box is None else box
        window = self._window(t)
        if window is not None:   # a still frame: its view is a window of the canvas, no resampling needed
            return image[window][top:bottom, left:right].copy()
        matrix = self.to_canvas[t] @ np.array([[1, 0, left], [0, 1, top], [0, 0, 1]], float)
        return cv2.warpPerspective(image, matrix, (right - left, bottom - top),
                                   flags=interpolation | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)

    def from_frame(self, image: np.ndarray, t: int, interpolation: int = cv2.INTER_LINEAR,
                   border_value=0) -> np.ndarray:
        """Frame image (H, W[, C]) -> its place on the canvas, (Hc, Wc[, C]); outside is `border_value`."""
        canvas_h, canvas_w = self.size
        window = self._window(t)
        if window is not None:
            out = np.empty((canvas_h, canvas_w) + image.shape[2:], image.dtype)
            out[...] = _border_fill(border_value, image.shape[2] if image.ndim == 3 else 1)
            out[window] = image
            return out
        return cv2.warpPerspective(image, self.to_canvas[t], (canvas_w, canvas_h), flags=interpolation,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)

    def warp_frames(self, frames: np.ndarray) -> np.ndarray:
        """(T, Hc, Wc, 3) uint8: every frame of `frames` (T, H, W, 3) uint8 on the canvas (0 outside its view)."""
        warped = np.empty((len(frames),) + self.size + (3,), np.uint8)

        def warp(t: int) -> None:
            warped[t] = self.from_frame(frames[t], t)

        frame_map(warp, range(len(frames)))
        return warped

    def _window(self, t: int) -> tuple[slice, slice] | None:
        """The canvas rows and columns frame t covers when its map to the canvas is a whole-pixel shift that
        keeps it inside the canvas (a still camera's frames; warping them would only copy); None otherwise."""
        matrix = self.to_canvas[t]
        shift_x, shift_y = matrix[0, 2], matrix[1, 2]
        if (np.abs(matrix - [[1, 0, shift_x], [0, 1, shift_y], [0, 0, 1]]).max() > 1e-9
                or shift_x != round(shift_x) or shift_y != round(shift_y)):
            return None
        height, width = self.frame_size
        top, left = int(round(shift_y)), int(round(shift_x))
        if top < 0 or left < 0 or top + height > self.size[0] or left + width > self.size[1]:
            return None
        return slice(top, top + height), slice(left, left + width)


def _border_fill(border_value, channels: int) -> np.ndarray:
    """What OpenCV's constant border writes per channel: a scalar is (v, 0, 0, 0), a sequence is padded with 0."""
    values = np.zeros(4)
    given = np.atleast_1d(np.asarray(border_value, float))
    values[:len(given)] = given[:4]
    return values[0] if channels == 1 else values[:channels]


def make_canvas(camera: CameraMotion) -> Canvas:
    """The smallest canvas (in reference-frame pixels) that holds every frame's view."""
    height, width = camera.size
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]], float).T
    points = []
    for matrix in camera.to_reference:
        mapped = matrix @ corners
        points.append(mapped[:2] / mapped[2])
    points = np.concatenate(points, axis=1)
    low = np.maximum(np.floor(points.min(axis=1)), [-(MAX_CANVAS_FACTOR - 1) / 2 * width,
                                                     -(MAX_CANVAS_FACTOR - 1) / 2 * height])
    high = np.minimum(np.ceil(points.max(axis=1)), [(MAX_CANVAS_FACTOR + 1) / 2 * width,
                                                     (MAX_CANVAS_FACTOR + 1) / 2 * height])
    shift = np.array([[1, 0, -low[0]], [0, 1, -low[1]], [0, 0, 1]], float)
    size = (int(high[1] - low[1]) + 1, int(high[0] - low[0]) + 1)
    return Canvas(size, shift @ camera.to_reference, (height, width))


def clean_plate(frames: np.ndarray, covered: np.ndarray, canvas: Canvas, warped: np.ndarray | None = None,
                within: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Temporal median of the uncovered scene on the canvas: `counted_plate` with (plate (Hc, Wc, 3) uint8,
    seen (Hc, Wc) bool), seen where enough frames saw the scene uncovered (`seen_enough`)."""
    plate, frames_seen = counted_plate(frames, covered, canvas, warped, within)
    return plate, seen_enough(frames_seen, len(covered))


def seen_enough(frames_seen: np.ndarray, count: int) -> np.ndarray:
    """Bool array: where at least 2 of a clip's `count` frames (1 in a one-frame clip) saw the scene, the least a
    plate pixel needs; `frames_seen` any shape, int."""
    return frames_seen >= min(2, count)


def counted_plate(frames: np.ndarray, covered: np.ndarray, canvas: Canvas, warped: np.ndarray | None = None,
                  within: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Temporal median of the uncovered scene on the canvas, and how many frames saw each pixel.

    Args:
        frames: (T, H, W, 3) uint8.
        covered: (T, H, W) bool, True where the subject (or anything not to use) is.
        canvas: from `make_canvas`.
        warped: the frames already on the canvas (`Canvas.warp_frames`, (T, Hc, Wc, 3) uint8), when several
            plates of one clip share them; None warps them here.
        within: (Hc, Wc) bool: the plate is made at these canvas pixels only (each pixel's median is its own, so
            they get what the whole plate has there); None = everywhere.
    Returns:
        plate (Hc, Wc, 3) uint8 (0 where not `seen_enough`), and frames_seen (Hc, Wc) int32: how many frames saw
        each pixel's scene uncovered (0 outside `within`).
    """
    if warped is None:
        warped = canvas.warp_frames(frames)
    count = len(warped)
    where = np.ones(canvas.size, bool) if within is None else within
    pixels = int(where.sum())
    # uint16, though the values are 8-bit: NumPy sorts 16-bit integers with SIMD, 8-bit ones about 8x slower.
    samples = np.empty((count, pixels, 3), np.uint16)
    usable = np.empty((count, pixels), bool)
    everywhere = within is None

    def sample(t: int) -> None:
        usable_here = _usable(covered[t], canvas, t)
        usable[t] = usable_here.reshape(-1) if everywhere else usable_here[where]
        samples[t] = warped[t].reshape(-1, 3) if everywhere else warped[t][where]
        samples[t][~usable[t]] = UNUSABLE

    frame_map(sample, range(count))
    # Sorted in chunks of pixels, in parallel (the sort along time is the plate's largest single cost).
    chunks = [chunk for chunk in np.array_split(np.arange(pixels), max(1, min(pixels, 8))) if len(chunk)]
    frame_map(lambda chunk: samples[:, chunk[0]:chunk[-1] + 1].sort(axis=0), chunks)
    valid = usable.sum(axis=0, dtype=np.int32)  # (N,): how many frames saw each pixel uncovered
    middle = np.maximum(valid - 1, 0) // 2
    # The median of each channel separately (a marginal median: cheap, and robust to the few subject pixels a
    # mask misses). The unusable samples sort last, so the first `valid` sorted values are the usable ones.
    medians = np.take_along_axis(samples, middle[None, :, None], axis=0)[0]
    medians[~seen_enough(valid, count)] = 0
    plate, frames_seen = np.zeros(canvas.size + (3,), np.uint8), np.zeros(canvas.size, np.int32)
    plate[where], frames_seen[where] = medians, valid
    return plate, frames_seen


def _usable(covered: np.ndarray, canvas: Canvas, t: int) -> np.ndarray:
    """(Hc, Wc) bool: canvas pixels frame t sees uncovered by `covered` (H, W) bool."""
    uncovered = canvas.from_frame((~covered).astype(np.uint8) * 255, t, cv2.INTER_NEAREST)
    # Shrink by a pixel: bilinear samples next to the frame border or the subject mix in what is outside.
    return cv2.erode(uncovered, np.ones((3, 3), np.uint8)) > 127


def exposure_gain(frame: np.ndarray, background: np.ndarray, region: np.ndarray, samples: int = 4000
                  ) -> np.ndarray:
    """Per-channel gain (3,) that brings the plate's `background` to the `frame`'s exposure over `region`
    (H, W) bool: the ratio of medians, from at most `samples` pixels, clipped to [0.7, 1.4]. 1 when the region
    is too small to say."""
    ys, xs = np.nonzero(region)
    if len(ys) < 50:
        return np.ones(3, np.float32)
    step = max(1, len(ys) // samples)
    ys, xs = ys[::step], xs[::step]
    gain = (np.median(frame[ys, xs], axis=0) + 1) / (np.median(background[ys, xs], axis=0) + 1)
    return np.clip(gain, 0.7, 1.4).astype(np.float32)


def close_in_time(masks: np.ndarray, canvas: Canvas, gap: int) -> np.ndarray:
    """Fill short gaps in time of a subject's masks, in the stabilised frame: a scene point covered at frames
    t1 < t2 with t2 - t1 <= `gap` is covered at every frame between (a subject does not leave a point and come
    back within a few frames; a mask that does has missed it). The camera's motion is undone first, so what
    closes is the same scene point.

    Args:
        masks: (T, H, W) bool.
        canvas: from `make_canvas` for the same clip.
        gap: frames; gaps up to this long are closed.
    Returns:
        (T, H, W) bool, a superset of `masks`.
    """
    count = len(masks)
    if count < 3 or gap < 2:
        return masks.copy()
    on_canvas = np.stack(frame_map(lambda t: canvas.from_frame(masks[t].astype(np.uint8), t, cv2.INTER_NEAREST) > 0,
                                   range(count)))
    frames = np.arange(count, dtype=np.int16)[:, None, None]
    last = np.maximum.accumulate(np.where(on_canvas, frames, np.int16(-count - gap)), axis=0)
    following = np.minimum.accumulate(np.where(on_canvas, frames, np.int16(2 * count + gap))[::-1], axis=0)[::-1]
    closed = (following - last) <= gap
    out = masks.copy()

    def close(t: int) -> None:
        out[t] |= canvas.to_frame(closed[t].astype(np.uint8), t, cv2.INTER_NEAREST) > 0

    frame_map(close, range(count))
    return out
