"""Camera motion: one homography per frame, estimated robustly from dense optical flow.

For each consecutive pair of frames, OpenCV's DIS flow (`flow_engine`) gives a displacement for every pixel; a
RANSAC homography fitted to a grid of those displacements explains the camera (pan, zoom, rotation, shake)
while the moving subject falls out as outliers. Chaining the pairwise homographies gives, for every frame, the
map into a reference frame (the middle one), so frames can be stabilised, compared and filled from each other.

Conventions: homographies act on pixel coordinates (x, y, 1) with pixel centres at integers; ``forward[t]``
maps frame t to frame t + 1; ``to_reference[t]`` maps frame t to the reference frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..parallel import frame_map, local_cache

GRID_STEP = 4          # pixels between flow samples used for the homography fit
RANSAC_THRESHOLD = 1.0  # pixels
FLOW_DETAIL = 100       # pixels on the short side of the finest flow level
STILL_TOLERANCE = 0.25  # pixels: a frame that moves less than this against the reference did not move
STILL_CANDIDATE = 3.0   # pixels: a clip whose maps move no corner further may still be a tripod's (`snap_aligned`)
STILL_SHARE = 0.8       # ... when the identity aligns at least this share of its frames as well as their maps
ALIGN_PERCENTILE = 40   # percentile of |frame - reference| over textured pixels that scores an alignment
ALIGN_BORDER = 8        # px along the frame's edges left out of that score (a warp's border)
ALIGN_MIN_PIXELS = 64   # textured pixels the score needs at least


@dataclass
class CameraMotion:
    """Per-frame camera motion of a clip of T frames of (H, W).

    Attributes:
        forward: (T - 1, 3, 3) float64, frame t -> frame t + 1.
        to_reference: (T, 3, 3) float64, frame t -> the reference frame.
        reference: index of the reference frame.
        inlier_ratio: (T - 1,) share of flow samples that agree with each pair's homography.
        flows: (T - 1, H, W, 2) float32 forward flow of each pair (pixels), kept for the segmenter; None when
            the caller asked not to keep them.
        size: (H, W).
    """

    forward: np.ndarray
    to_reference: np.ndarray
    reference: int
    inlier_ratio: np.ndarray
    flows: np.ndarray | None
    size: tuple[int, int]

    @property
    def num_frames(self) -> int:
        return len(self.to_reference)

    def between(self, source: int, target: int) -> np.ndarray:
        """(3, 3) homography mapping frame `source` to frame `target`."""
        return np.linalg.inv(self.to_reference[target]) @ self.to_reference[source]

    def warp(self, image: np.ndarray, source: int, target: int, interpolation: int = cv2.INTER_LINEAR,
             border_value=0) -> np.ndarray:
        """Resample `image` (seen from frame `source`) as frame `target` would see it; (H, W[, C])."""
        height, width = self.size
        matrix = self.between(source, target)
        if np.array_equal(matrix, np.eye(3)):   # two still frames (`snap_still`): warping would only copy
            return image.copy()
        return cv2.warpPerspective(image, matrix, (width, height), flags=interpolation,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)

    def summary(self, fps: float) -> dict:
        """Mean camera motion in human terms: pan (px/s, x and y), zoom (scale change per second), rotation
        (degrees per second), and how shaky (std of per-frame translation, px). JSON-able."""
        if len(self.forward) == 0:
            return {"pan_x": 0.0, "pan_y": 0.0, "zoom": 1.0, "rotation": 0.0, "shake": 0.0}
        height, width = self.size
        center = np.array([(width - 1) / 2, (height - 1) / 2, 1.0])
        shifts, scales, angles = [], [], []
        for matrix in self.forward:
            moved = matrix @ center
            moved = moved[:2] / moved[2]
            shifts.append(moved - center[:2])
            affine = matrix[:2, :2] / matrix[2, 2]
            scales.append(float(np.sqrt(abs(np.linalg.det(affine)))))
            angles.append(float(np.degrees(np.arctan2(affine[1, 0], affine[0, 0]))))
        shifts = np.array(shifts)
        return {"pan_x": float(shifts[:, 0].mean() * fps), "pan_y": float(shifts[:, 1].mean() * fps),
                "zoom": float(np.prod(scales) ** (fps / len(scales))), "rotation": float(np.mean(angles) * fps),
                "shake": float(np.linalg.norm(shifts - shifts.mean(axis=0), axis=1).std())}


def to_gray(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> (T, H, W) uint8 luma."""
    return np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames])


def flow_engine(height: int, width: int):
    """OpenCV DIS flow, fast preset, computed down to a pyramid level whose short side keeps about
    `FLOW_DETAIL` pixels or more (never finer than full resolution, never coarser than the preset's quarter).
    Coarser flow for the long-gap pairs and the drift correction measurably lost slow subjects and alignment,
    so one level serves all.

    The preset's own finest level (a quarter of the resolution) loses subjects a few dozen pixels wide in small
    frames; a full-resolution level costs 8x. Measured at 240x360: 428 pairs/s at a quarter, 159 at a half.
    """
    engine = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    engine.setFinestScale(int(np.clip(np.floor(np.log2(min(height, width) / FLOW_DETAIL)), 0, 2)))
    return engine


def dis_flow(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Dense flow (H, W, 2) float32 from gray `first` to gray `second` (pixels), OpenCV DIS (`flow_engine`; one
    engine per thread and frame size, made on first use)."""
    height, width = first.shape[:2]
    engine = local_cache(("dis", height, width), lambda: flow_engine(height, width))
    return engine.calc(first, second, None)


def fit_homography(flow: np.ndarray, weights: np.ndarray | None = None, step: int = GRID_STEP,
                   threshold: float = RANSAC_THRESHOLD) -> tuple[np.ndarray, float]:
    """RANSAC homography explaining a flow field: (3, 3) matrix mapping points of the first frame to the second,
    and the inlier ratio. `weights` (H, W) in [0, 1] can exclude samples (e.g. a known subject) below 0.5."""
    height, width = flow.shape[:2]
    ys, xs = np.mgrid[step // 2:height:step, step // 2:width:step]
    ys, xs = ys.ravel(), xs.ravel()
    if weights is not None:
        keep = weights[ys, xs] >= 0.5
        if keep.sum() >= 16:
            ys, xs = ys[keep], xs[keep]
    source = np.stack([xs, ys], axis=1).astype(np.float32)
    target = source + flow[ys, xs]
    if len(source) < 8:
        return np.eye(3), 0.0
    matrix, inliers = cv2.findHomography(source, target, cv2.RANSAC, threshold, maxIters=2000, confidence=0.995)
    if matrix is None or not np.all(np.isfinite(matrix)):
        return np.eye(3), 0.0
    return matrix / matrix[2, 2], float(inliers.mean())


def estimate_camera(frames: np.ndarray, keep_flows: bool = True, reference: int | None = None) -> CameraMotion:
    """Estimate the camera motion of a clip (T, H, W, 3) uint8. Cost: one DIS flow per consecutive pair."""
    gray = to_gray(frames)
    count, height, width = gray.shape
    forward = np.empty((max(count - 1, 0), 3, 3))
    inliers = np.empty(max(count - 1, 0))
    flows = np.empty((max(count - 1, 0), height, width, 2), np.float32) if keep_flows else None

    def pair(t: int) -> None:
        flow = dis_flow(gray[t], gray[t + 1])
        forward[t], inliers[t] = fit_homography(flow)
        if flows is not None:
            flows[t] = flow

    frame_map(pair, range(count - 1))
    reference = count // 2 if reference is None else reference
    to_reference = np.empty((count, 3, 3))
    to_reference[reference] = np.eye(3)
    for t in range(reference - 1, -1, -1):  # t -> t+1 -> ... -> reference
        to_reference[t] = to_reference[t + 1] @ forward[t]
    for t in range(reference + 1, count):  # t -> t-1 -> ... -> reference
        to_reference[t] = to_reference[t - 1] @ np.linalg.inv(forward[t - 1])
    to_reference /= to_reference[:, 2:3, 2:3]
    if not _is_still(to_reference, height, width):  # a tripod chain has no drift worth a second set of flows
        to_reference = refine_to_reference(gray, to_reference, reference)
    to_reference = snap_aligned(gray, snap_still(to_reference, height, width), reference)
    return CameraMotion(forward, to_reference, reference, inliers, flows, (height, width))


def _corner_shift(matrix: np.ndarray, height: int, width: int) -> float:
    """Pixels: the largest move of a frame corner under the homography `matrix` (3, 3)."""
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]], float).T
    mapped = matrix @ corners
    return float(np.abs(mapped[:2] / mapped[2] - corners[:2]).max())


def _is_still(to_reference: np.ndarray, height: int, width: int, tolerance: float = STILL_TOLERANCE) -> bool:
    """True when no frame's map to the reference moves a corner by `tolerance` px or more."""
    return all(_corner_shift(matrix, height, width) < tolerance for matrix in to_reference)


def snap_still(to_reference: np.ndarray, height: int, width: int, tolerance: float = STILL_TOLERANCE) -> np.ndarray:
    """Frames whose map to the reference moves no corner by more than `tolerance` px are the reference's view:
    their map becomes the identity, so a tripod shot is never resampled (resampling blurs what it fills)."""
    snapped = to_reference.copy()
    for t, matrix in enumerate(to_reference):
        if _corner_shift(matrix, height, width) < tolerance:
            snapped[t] = np.eye(3)
    return snapped


def snap_aligned(gray: np.ndarray, to_reference: np.ndarray, reference: int,
                 candidate: float = STILL_CANDIDATE, share: float = STILL_SHARE) -> np.ndarray:
    """A clip whose every map to the reference moves no corner by `candidate` px or more, and whose frames the
    identity aligns with the reference at least as well as their maps do (in at least `share` of them), was shot
    from a tripod: every map becomes the identity. This matters over a mostly flat scene (a sky, a wall): the
    flow there is the subject's motion spilled into the flat areas, and the fitted homographies drift by a pixel
    or two, which resamples and misaligns every frame; comparing the pixels themselves (`_alignment_error`, on
    the reference's textured half) shows the camera did not move. Stillness is decided for the clip, not frame by
    frame: in a shaking shot the two alignments are close and a per-frame choice would snap a few frames at
    random. (T, 3, 3) float64; `gray` (T, H, W) uint8."""
    height, width = gray.shape[1:]
    if any(_corner_shift(matrix, height, width) >= candidate for matrix in to_reference):
        return to_reference
    moved = [t for t, matrix in enumerate(to_reference) if not np.array_equal(matrix, np.eye(3))]
    if not moved:
        return to_reference
    reference_image = _smooth(gray[reference])
    gradient = cv2.blur(cv2.magnitude(cv2.Sobel(reference_image, cv2.CV_32F, 1, 0),
                                      cv2.Sobel(reference_image, cv2.CV_32F, 0, 1)), (5, 5))
    textured = gradient > np.median(gradient)
    textured[:ALIGN_BORDER], textured[-ALIGN_BORDER:] = False, False
    textured[:, :ALIGN_BORDER], textured[:, -ALIGN_BORDER:] = False, False
    if textured.sum() < ALIGN_MIN_PIXELS:
        return to_reference   # a flat reference (a fade, a blank wall): nothing to compare

    def identity_aligns(t: int) -> bool:
        image = _smooth(gray[t])
        return (_alignment_error(image, reference_image, np.eye(3), textured)
                <= _alignment_error(image, reference_image, to_reference[t], textured))

    if sum(frame_map(identity_aligns, moved)) < share * len(moved):
        return to_reference
    return np.tile(np.eye(3), (len(to_reference), 1, 1))


def _smooth(gray: np.ndarray) -> np.ndarray:
    """(H, W) float32: `gray` (H, W) uint8 blurred by 1 px (sensor noise out of the alignment score)."""
    return cv2.GaussianBlur(gray.astype(np.float32), (0, 0), 1.0)


def _alignment_error(image: np.ndarray, reference: np.ndarray, matrix: np.ndarray, where: np.ndarray) -> float:
    """Gray levels: the `ALIGN_PERCENTILE` percentile of |`image` mapped by `matrix` (3, 3) - `reference`| over
    `where` (H, W) bool (a low percentile: the subject differs under every alignment, the scene under a wrong
    one)."""
    height, width = reference.shape
    warped = image if np.array_equal(matrix, np.eye(3)) else cv2.warpPerspective(
        image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return float(np.percentile(cv2.absdiff(warped, reference)[where], ALIGN_PERCENTILE))


def refine_to_reference(gray: np.ndarray, to_reference: np.ndarray, reference: int) -> np.ndarray:
    """Remove the drift of chained homographies: warp each frame onto the reference with its chained estimate,
    measure what still moves between the two by flow, and fold the fitted correction in. (T, 3, 3) float64."""
    height, width = gray.shape[1:]
    refined = to_reference.copy()

    def refine(t: int) -> None:
        if t == reference:
            return
        warped = cv2.warpPerspective(gray[t], to_reference[t], (width, height), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        overlap = cv2.warpPerspective(np.full_like(gray[t], 255), to_reference[t], (width, height),
                                      flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if (overlap > 0).mean() < 0.3:
            return  # too little overlap to measure against the reference: keep the chain
        flow = dis_flow(warped, gray[reference])
        correction, ratio = fit_homography(flow, weights=cv2.erode(overlap, np.ones((9, 9), np.uint8)) / 255.0)
        if ratio > 0.2:
            refined[t] = correction @ to_reference[t]

    frame_map(refine, range(len(gray)))
    return refined / refined[:, 2:3, 2:3]


# ------------------------------------------------------------------------------------------ a long shot, streamed

TRACK_SIDE = 288      # px: the short side frames are tracked at (the maps are scaled back to full size)
KEY_OVERLAP = 0.7     # a new key frame once less than this share of a frame overlaps the current one
MOVING_TOLERANCE = 1.0  # px: a shot whose maps move no frame corner this far was filmed from a tripod


def _scaling(full: tuple[int, int], small: tuple[int, int]) -> np.ndarray:
    """(3, 3): pixel coordinates of a (H, W) `full` frame -> those of it resized to `small` (pixel centres kept)."""
    fy, fx = small[0] / full[0], small[1] / full[1]
    return np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5], [0, 0, 1.0]])


class CameraTracker:
    """The camera of a shot of any length, a frame at a time: for every frame, the homography taking the first
    frame's pixels to it (`maps`, (T, 3, 3) float64). Memory holds two frames, whatever the length.

    Each frame is chained to the previous one by flow (`fit_homography`), then registered directly against a key
    frame by a second flow, which removes the chain's drift; a frame overlapping the key by less than
    `KEY_OVERLAP` becomes the next key. Frames are tracked with their short side at `TRACK_SIDE` at most.
    """

    def __init__(self):
        self.maps: list[np.ndarray] = []
        self._previous = self._key = None
        self._key_map = self._to_key = np.eye(3)
        self._scale = None

    def add(self, frames: np.ndarray) -> None:
        """Track the next frames, (n, H, W, 3) uint8."""
        for frame in frames:
            gray = to_gray(frame[None])[0]
            if self._scale is None:
                factor = min(1.0, TRACK_SIDE / min(gray.shape))
                small = (round(gray.shape[0] * factor), round(gray.shape[1] * factor))
                self._scale = _scaling(gray.shape, small), small
            matrix, small = self._scale
            if small != gray.shape:
                gray = cv2.resize(gray, (small[1], small[0]), interpolation=cv2.INTER_AREA)
            self._track(gray)
            self.maps.append(np.linalg.inv(matrix) @ self._current() @ matrix)

    def _current(self) -> np.ndarray:
        """First frame -> the frame just tracked, at the tracking size."""
        small = np.linalg.inv(self._to_key) @ self._key_map
        return small / small[2, 2]

    def _track(self, gray: np.ndarray) -> None:
        if self._previous is None:
            self._previous = self._key = gray
            return
        pair, _ = fit_homography(dis_flow(self._previous, gray))   # previous -> this frame
        guess = self._to_key @ np.linalg.inv(pair)                 # this frame -> key
        height, width = gray.shape
        warped = cv2.warpPerspective(gray, guess, (width, height), flags=cv2.INTER_LINEAR)
        overlap = cv2.warpPerspective(np.full_like(gray, 255), guess, (width, height), flags=cv2.INTER_NEAREST)
        if (overlap > 0).mean() >= 0.3:
            flow = dis_flow(warped, self._key)
            correction, ratio = fit_homography(flow, weights=cv2.erode(overlap, np.ones((9, 9), np.uint8)) / 255.0)
            if ratio > 0.2:
                guess = correction @ guess
        self._to_key = guess / guess[2, 2]
        self._previous = gray
        if (overlap > 0).mean() < KEY_OVERLAP:
            self._key_map, self._to_key, self._key = self._current(), np.eye(3), gray


def track_camera(chunks) -> np.ndarray:
    """(T, 3, 3) float64: the first frame -> frame t for a shot given as (n, H, W, 3) uint8 chunks (`CameraTracker`)."""
    tracker = CameraTracker()
    for chunk in chunks:
        tracker.add(chunk)
    return np.stack(tracker.maps) if tracker.maps else np.zeros((0, 3, 3))


def camera_moves(maps: np.ndarray, size: tuple[int, int], tolerance: float = MOVING_TOLERANCE) -> bool:
    """Whether any frame's map (`track_camera`) moves a corner of the (H, W) frame by `tolerance` px or more."""
    height, width = size
    return any(_corner_shift(matrix, height, width) >= tolerance for matrix in maps)


class CameraChain:
    """The camera of a clip split window by window, as each frame's map to the clip's first frame (frame t -> 0,
    the `layers.json` record): each window's own camera (`CameraMotion`) chained through the frame it shares with
    the window before; across a scene cut nothing is known, so the new shot starts where the last frame was."""

    def __init__(self):
        self.maps: list[np.ndarray] = []

    def add(self, start: int, camera: CameraMotion | None, count: int) -> None:
        """Window of `count` frames starting at clip frame `start` (`start` <= frames so far), its camera or None
        (too short to measure: still)."""
        base = self.maps[start] if start < len(self.maps) else (self.maps[-1] if self.maps else np.eye(3))
        for i in range(len(self.maps) - start, count):
            own = camera.between(i, 0) if camera is not None else np.eye(3)
            chained = base @ own
            self.maps.append(chained / chained[2, 2])

    def record(self) -> list[list[float]]:
        """JSON-able: one row of 9 numbers (row-major) per frame."""
        return [[round(float(v), 6) for v in matrix.ravel()] for matrix in self.maps]
