"""The default segmenter, ``motion``: finds the moving subject with no learned weights.

Steps (each cheap on a CPU; the camera motion and its pairwise DIS flows are shared with the restorer):

1. Motion evidence. Each pair's optical flow minus the displacement its camera homography explains leaves the
   subject's own motion. Slow subjects move too little between neighbours, so flow is also taken across a
   longer gap (`LONG_GAP` frames) where a slow subject has moved several pixels; there only what changes
   between the two frames counts (`looks_the_same`: the flow spills into a flat scene beside the subject).
2. A first clean plate: the scene assembled on a stabilised canvas from every frame, leaving out what moves
   (`plate.clean_plate`). A subject that pauses is still absent from the plate, because it moved at other times.
3. Change evidence. Each frame against the plate warped into it: a subject differs from the scene behind it
   even while it stands still. Exposure drift is compensated per frame.
4. Evidence is combined, thresholded against each frame's own noise level, and grouped into spatio-temporal
   connected components; the dominant moving object (largest motion-weighted volume) is kept, or every object
   with ``all_objects``, or the one a user's pick (a point or box on the first frame) hits. When the feature
   points inside the kept component move two ways for `SPLIT_SECONDS` in a row (`trajectories`), it holds
   several movers that touched (a passer-by behind the subject): the objects are then followed from frame to
   frame along the flow instead (`tracks`), so that they stay apart (``objects="connected"``: never).
5. A second plate built without the kept subject gives cleaner change evidence; holes inside the subject
   are filled, the mask is smoothed in time, and a guided filter (edge-aware, the frame as guide) turns the
   binary mask into a soft matte that follows image edges.
6. Where a plate saw the scene (a third one fills in what the second missed, leaving out only the matte), the
   outline is decided against it: alpha from the frame, the scene and the subject's colour nearby (`edges`).
"""

from __future__ import annotations

import time

import cv2
import numpy as np
from scipy import ndimage

from ..errors import OptionError
from .backends import Backend, Segmentation, SplitClip, SubjectPick, register
from ..parallel import frame_map
from .camera import dis_flow, to_gray
from .edges import refine_outline
from .plate import Canvas, clean_plate, counted_plate, exposure_gain, seen_enough
from .tracks import REACH, shrink, track_objects
from .trajectories import PointTracks

LONG_GAP = 8           # frames between the ends of a long-range flow pair
MOTION_MIN = 0.8       # px per frame: residual motion below this is never evidence
LONG_MOTION_MIN = 1.5  # px over LONG_GAP frames: the same for the long-range pairs
SAME_LEVELS = 4.0      # gray levels (after a 1 px blur): two frames this close at a pixel show the same there
SAME_REACH = 5         # px (square side): long-range motion is dropped inside areas this wide that look the same
SUBJECT_MIN_AREA = 0.002   # a frame's subject must cover this share of the frame to count as present
OUTLINE_GAP = 11              # px: gaps in a subject's outline bridged when filling its inside
OBJECT_MIN_VOLUME = 0.0005  # a spatio-temporal object must fill this share of T*H*W to be kept
PICK_SEARCH = 12            # frames: how far into the clip a picked subject may first show as moving
OBJECT_MODES = ("tracked", "connected")
SPLIT_SECONDS = 0.4         # a chosen mover whose points move two ways this long in a row holds two movers
NEAR = 15                   # px (box side): change this close to the first subject may join it in the refinement
ATTACH_SHARE = 0.8          # an object touching the subject in this share of its frames, moving with it, is part of it
SAME_MOTION = 0.0023        # of the frame diagonal per frame (1 px at 240x360): median flows this close move together
PART_OF_PARENT = 0.9        # an object with this share of its volume inside the first pass's subject is part of it
TIGHT_MARGIN = 3            # px (box side): the outline's plate leaves out the matte dilated by this
PICK_TOLERANCE = 0.02       # of the frame diagonal: a point this close to a mover picks it


# --------------------------------------------------------------------------------------------- motion evidence


class _ResidualMotion:
    """Residual motion of flows against homographies, for one frame size (the pixel grid is built once)."""

    def __init__(self, height: int, width: int):
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        self.grid = np.stack([xs, ys], axis=-1)

    def __call__(self, flow: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """(H, W) float32 pixels of `flow` (H, W, 2) that the homography `matrix` (frame -> frame) does not explain."""
        mapped = cv2.perspectiveTransform(self.grid.reshape(-1, 1, 2), np.asarray(matrix, np.float64))
        unexplained = flow - (mapped.reshape(self.grid.shape) - self.grid)
        return cv2.magnitude(unexplained[..., 0], unexplained[..., 1])


def motion_evidence(clip: SplitClip) -> tuple[np.ndarray, np.ndarray]:
    """The subject's own motion, per frame: (short, long), each (T, H, W) float32 pixels.

    `short`: residual flow to the neighbouring frames (pixels per frame; the larger of the two pairs).
    `long`: motion across up to `LONG_GAP` frames once the camera is taken out (`_stabilised_motion`), where a
    slow subject has moved far enough to see. Such motion lights up the subject where it is *and* the
    background it is about to cover, so each frame takes the smaller of its backward and forward values: only
    the subject itself moves in both. Wide areas that look the same in both frames get none (`looks_the_same`).
    (Near the clip's ends the gap on the short side shrinks to what exists.)
    """
    camera = clip.camera
    count = clip.num_frames
    height, width = clip.size
    residual = _ResidualMotion(height, width)
    short = np.zeros((count, height, width), np.float32)
    pairs = frame_map(lambda t: residual(camera.flows[t], camera.forward[t]), range(count - 1))
    for t, moved in enumerate(pairs):
        np.maximum(short[t], moved, out=short[t])
        np.maximum(short[t + 1], moved, out=short[t + 1])
    long = np.zeros_like(short)
    if count > LONG_GAP:
        gray = to_gray(clip.frames)

        def stabilised(t: int) -> None:
            # Near the clip's ends the gap shrinks on the short side, so that both sides always exist.
            others = [t - min(LONG_GAP, t), t + min(LONG_GAP, count - 1 - t)]
            sides = [_stabilised_motion(gray, camera, t, other) for other in others if other != t]
            long[t] = np.minimum(*sides) if len(sides) == 2 else sides[0]

        frame_map(stabilised, range(count))
    return short, long


def _stabilised_motion(gray: np.ndarray, camera, t: int, other: int) -> np.ndarray:
    """(H, W) float32 pixels the scene moved between frame t and frame `other` once the camera is taken out:
    `other` is warped into t's view first, so the flow only has to find the subject's own (small) motion;
    camera moves across a long gap can exceed what the flow pyramid of a small frame can follow."""
    aligned = camera.warp(gray[other], other, t)
    covered = camera.warp(np.full_like(gray[other], 255), other, t, interpolation=cv2.INTER_NEAREST) > 0
    flow = dis_flow(gray[t], aligned)
    motion = cv2.magnitude(flow[..., 0], flow[..., 1])
    motion[~covered] = 0  # what the other frame never saw says nothing
    motion[looks_the_same(gray[t], aligned)] = 0
    return motion


def looks_the_same(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(H, W) bool: inside areas at least `SAME_REACH` px wide where the gray frames `first` and `second`
    (H, W) uint8 differ by less than `SAME_LEVELS` after a 1 px blur. Motion found there is the flow's guess,
    not something seen: across a long gap, the flow of a subject spills far into a flat scene beside it (a sky,
    a wall), which then counts as moving for the whole clip and, never seen still, stays in the matte. A uniform
    patch of a slow subject looks the same too, but only a small one (its edges and texture change): so only
    wide areas count."""
    difference = cv2.absdiff(cv2.GaussianBlur(first, (0, 0), 1.0).astype(np.float32),
                             cv2.GaussianBlur(second, (0, 0), 1.0).astype(np.float32))
    same = (difference < SAME_LEVELS).astype(np.uint8)
    return cv2.erode(same, np.ones((SAME_REACH, SAME_REACH), np.uint8)) > 0


# --------------------------------------------------------------------------------------------- change evidence


def change_evidence(frames: np.ndarray, plate: np.ndarray, seen: np.ndarray, canvas: Canvas,
                    subject: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour distance of each frame from the plate warped into it, exposure-compensated.

    Returns:
        distance (T, H, W) float32 (RGB Euclidean, 0-441), known (T, H, W) bool where the plate saw the scene,
        and gains (T, 3) float32: each frame's exposure relative to the plate (`plate.exposure_gain`).
    """
    count, height, width = frames.shape[:3]
    distance = np.zeros((count, height, width), np.float32)
    known = np.zeros((count, height, width), bool)
    gains = np.ones((count, 3), np.float32)
    window = np.ones((3, 3), np.uint8)

    def compare(t: int) -> None:
        background = canvas.to_frame(plate, t).astype(np.float32)
        visible = canvas.to_frame(seen.astype(np.uint8), t, cv2.INTER_NEAREST) > 0
        frame = cv2.GaussianBlur(frames[t], (0, 0), 0.8).astype(np.float32)
        # The camera's exposure may drift over the clip.
        gains[t] = exposure_gain(frame, background, visible if subject is None else visible & ~subject[t])
        background *= gains[t]
        # Distance to the range of the plate's 3x3 neighbourhood: sub-pixel misalignment of the plate at strong
        # edges is not change, a subject in front of the scene is.
        above = cv2.subtract(frame, cv2.dilate(background, window))
        below = cv2.subtract(cv2.erode(background, window), frame)
        difference = cv2.max(cv2.max(above, below), 0.0)
        distance[t] = channel_norm(difference)
        known[t] = visible

    frame_map(compare, range(count))
    return distance, known, gains


def channel_sum(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 sum over the channels of `image` (H, W, 3) float32 (OpenCV: about 15x faster than NumPy's
    sum over the last axis, the same values)."""
    return cv2.transform(image, np.ones((1, 3), np.float32))


def channel_norm(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 Euclidean norm over the channels of `image` (H, W, 3) float32."""
    return np.sqrt(channel_sum(cv2.multiply(image, image)))


def _noise_floor(values: np.ndarray, minimum: float) -> float:
    """A robust upper noise level of a mostly-background map: median + 4 MAD, at least `minimum`."""
    sample = values.ravel()[:: max(1, values.size // 20000)]
    median = float(np.median(sample))
    mad = float(np.median(np.abs(sample - median))) * 1.4826
    return max(median + 4 * mad, minimum)


# ----------------------------------------------------------------------------------------------------- objects


def borrow_weak_frames(mask: np.ndarray, camera, weak: float = 0.5) -> np.ndarray:
    """Frames whose mask area is below `weak` x the median area of the others take, in addition, the mask of the
    nearest strong frame, warped into them by the camera motion. (T, H, W) bool."""
    areas = mask.sum(axis=(1, 2))
    if not areas.any():
        return mask
    typical = np.median(areas[areas > 0])
    strong = np.flatnonzero(areas >= weak * typical)
    out = mask.copy()
    for t in np.flatnonzero(areas < weak * typical):
        source = int(strong[np.argmin(np.abs(strong - t))])
        out[t] |= camera.warp(mask[source].astype(np.uint8), source, t, interpolation=cv2.INTER_NEAREST) > 0
    return out


def hysteresis(values: np.ndarray, high: float, low: float) -> np.ndarray:
    """(T, H, W) bool: pixels above `low` that connect (within their frame) to a pixel above `high`."""
    def connected(frame: np.ndarray) -> np.ndarray:
        count, labels = cv2.connectedComponents((frame > low).astype(np.uint8), connectivity=4)
        strong = np.zeros(count, bool)
        strong[labels[frame > high]] = True
        strong[0] = False
        return strong[labels]

    return np.stack(frame_map(connected, values))


def select_objects(mask: np.ndarray, weight: np.ndarray, all_objects: bool, prior: np.ndarray | None = None,
                   pick: SubjectPick | None = None, flows: np.ndarray | None = None, split=None,
                   parent: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Keep the dominant object of `mask` (T, H, W) bool, scored by the sum of `weight` over it
    (motion-weighted volume), or every object above `OBJECT_MIN_VOLUME` with `all_objects`. Objects are
    followed through time along `flows` (T - 1, H, W, 2), so that movers that touch stay apart
    (`tracks.track_objects`, with `split` to separate movers within a frame), or without flows are the
    mask's spatio-temporal connected components.
    With a `prior` matte, a component's overlap with it outweighs everything else (the previous window's
    subject stays the subject). With a `pick` and no prior, the component the pick hits is kept
    (`picked_component`); with a pick and a prior, only a component that overlaps the prior (none if none does).
    With a `parent` mask (T, H, W) bool (the subject of a first, coarser pass), every object lying mostly
    inside it (`PART_OF_PARENT` of its volume) is kept too; without one, tracked objects that are parts of the
    kept one join it (`attached_parts`)."""
    if flows is not None:
        labels, count = track_objects(mask, flows, split)
    else:
        labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return np.zeros_like(mask), {"objects": 0, "kept": 0}
    inside = labels[mask]  # the labelled pixels only (a mask is mostly empty): sums per component
    volumes = np.bincount(inside, minlength=count + 1)[1:]
    scores = np.bincount(inside, weights=weight[mask], minlength=count + 1)[1:]
    agreement = np.zeros(count)
    if prior is not None and prior.any():
        agreement = np.bincount(inside, weights=prior[mask], minlength=count + 1)[1:]
        scores = scores + agreement * (scores.max() + 1)
    big = np.flatnonzero(volumes >= OBJECT_MIN_VOLUME * mask.size) + 1
    info = {"objects": int(len(big))}
    if pick is not None and prior is not None:
        big = big[agreement[big - 1] > 0]  # a resolved pick: follow it, never another mover
    if pick is not None and prior is None:
        label, frame = picked_component(labels, big, pick)
        keep = [] if label is None else [label]
        info["picked_frame"] = frame
    elif len(big) == 0:
        keep = []
    elif pick is not None or all_objects:
        keep = big   # with a pick (and a prior): every object that continues the picked one
    else:
        keep = big[[int(np.argmax(scores[big - 1]))]]
    if flows is not None and parent is None and len(keep) and not all_objects:
        keep = attached_parts(labels, np.asarray(keep), flows)
    if parent is not None and len(keep):
        # Pieces of the subject found before: every object lying mostly inside it is part of it.
        inside_parent = np.bincount(inside, weights=parent[mask], minlength=count + 1)[1:]
        keep = np.union1d(keep, np.flatnonzero(inside_parent >= PART_OF_PARENT * np.maximum(volumes, 1)) + 1)
    info["kept"] = int(len(keep))
    if not len(keep):
        return np.zeros_like(mask), info
    return np.isin(labels, keep), info


def others_near(subject: np.ndarray, others: np.ndarray) -> bool:
    """Whether a big object of `others` (T, H, W) bool (a spatio-temporal component of at least
    `OBJECT_MIN_VOLUME` of the clip) comes within `NEAR` px of `subject` (T, H, W) bool in some frame; judged
    on the masks shrunk by 2 (`tracks.shrink`)."""
    others, subject = shrink(others, 2), shrink(subject, 2)
    labels, count = ndimage.label(others, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return False
    big = np.bincount(labels.ravel()) >= OBJECT_MIN_VOLUME * others.size
    big[0] = False
    return bool((_dilate_each(subject, NEAR) & big[labels]).any())


def attached_parts(labels: np.ndarray, keep: np.ndarray, flows: np.ndarray) -> np.ndarray:
    """`keep` (labels of `labels` (T, H, W) int) with the objects that are parts of them: an object touching the
    kept ones (within `tracks.REACH` + 1 px) in at least `ATTACH_SHARE` of the frames it shows in, and in most
    of those frames moving with them (median flow (`flows` (T - 1, H, W, 2)) within `SAME_MOTION` x the frame
    diagonal per frame of theirs): a part of the subject that the evidence kept apart at first (a handle, an
    arm) joins it; a mover passing behind moves otherwise and stays out."""
    kernel = np.ones((2 * REACH + 3,) * 2, np.uint8)
    size = int(labels.max()) + 1
    same = SAME_MOTION * float(np.hypot(*labels.shape[1:]))

    is_kept = np.zeros(size, bool)
    is_kept[keep] = True

    def frame(t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(shows, touches, agrees), each (size,) float, for frame t."""
        shows, touches, agrees = np.zeros(size), np.zeros(size), np.zeros(size)
        shows[labels[t]] = 1
        kept = is_kept[labels[t]]
        if not kept.any():
            return shows, touches, agrees
        around = cv2.dilate(kept.astype(np.uint8), kernel) > 0
        neighbours = np.flatnonzero(np.bincount(labels[t][around & ~kept], minlength=size)[1:]) + 1
        if not len(neighbours):
            return shows, touches, agrees
        touches[neighbours] = 1
        flow = flows[min(t, len(flows) - 1)]
        mine = np.median(flow[kept], axis=0)
        ys, xs = np.nonzero(np.isin(labels[t], neighbours))   # the neighbours' pixels only, once
        owners = labels[t][ys, xs]
        for neighbour in neighbours:
            theirs = np.median(flow[ys[owners == neighbour], xs[owners == neighbour]], axis=0)
            agrees[neighbour] = float(np.hypot(*(theirs - mine)) < same)
        return shows, touches, agrees

    per_frame = frame_map(frame, range(len(labels)))
    shows, touches, agrees = (np.sum([counts[i] for counts in per_frame], axis=0) for i in range(3))
    shows[0] = 0
    parts = np.flatnonzero((touches > 0) & (touches >= ATTACH_SHARE * np.maximum(shows, 1))
                           & (agrees > 0.5 * touches))
    return np.union1d(keep, parts)


def picked_component(labels: np.ndarray, candidates: np.ndarray, pick: SubjectPick
                     ) -> tuple[int | None, int | None]:
    """The label among `candidates` that `pick` hits in the first frame of `labels` (T, H, W) int where it hits
    any (searching `PICK_SEARCH` frames: the subject may start still), and that frame; (None, None) when none.

    A point hits the component nearest to it within `PICK_TOLERANCE` x the frame diagonal (a motion mask can
    miss a pixel or two of a flat subject); a box hits the component with the most pixels inside it."""
    height, width = labels.shape[1:]
    region = pick.region(height, width, radius=PICK_TOLERANCE * float(np.hypot(height, width)))
    ys, xs = np.nonzero(region)
    for t in range(min(PICK_SEARCH, len(labels))):
        hit = labels[t, ys, xs]
        inside = np.isin(hit, candidates)
        if not inside.any():
            continue
        if pick.point is None:
            counts = np.bincount(hit[inside])
            return int(np.argmax(counts)), t
        x, y = pick.pixel_point(height, width)
        distance = np.hypot(xs[inside] + 0.5 - x, ys[inside] + 0.5 - y)
        return int(hit[inside][int(np.argmin(distance))]), t
    return None, None


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, epsilon: float) -> np.ndarray:
    """He et al.'s guided filter: smooth `source` (H, W) float32 keeping the edges of `guide` (H, W) in [0, 1]."""
    size = (2 * radius + 1, 2 * radius + 1)

    def box(image):
        return cv2.boxFilter(image, -1, size, normalize=True, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(guide), box(source)
    covariance = box(guide * source) - mean_i * mean_p
    variance = box(guide * guide) - mean_i * mean_i
    a = covariance / (variance + epsilon)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def soft_matte(frames: np.ndarray, mask: np.ndarray, radius: int = 4, epsilon: float = 1e-3) -> np.ndarray:
    """Binary masks (T, H, W) -> soft mattes float32 in [0, 1] whose edges follow the image (guided filter)."""
    alpha = np.empty(mask.shape, np.float32)

    def soften(t: int) -> None:
        guide = cv2.cvtColor(frames[t], cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
        alpha[t] = guided_filter(guide, mask[t].astype(np.float32), radius, epsilon)

    frame_map(soften, range(len(mask)))
    np.clip(alpha, 0, 1, out=alpha)
    alpha[alpha < 0.02] = 0
    alpha[alpha > 0.98] = 1
    return alpha


def fill_holes(mask: np.ndarray, gap: int = OUTLINE_GAP) -> np.ndarray:
    """(H, W) bool: `mask` with its holes filled, including holes whose outline has gaps up to `gap` px (the
    flat inside of a slow subject shows no motion, and its outline rarely closes on its own). Only the enclosed
    inside is added, not the bridges across the gaps."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (gap, gap))
    closed = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, kernel) > 0
    return fill_enclosed(mask) | (fill_enclosed(closed) & ~closed)


def fill_enclosed(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: `mask` with every background region that does not reach the border (4-connected) filled;
    the same as `scipy.ndimage.binary_fill_holes`, by one OpenCV flood fill from outside (about 25x faster)."""
    height, width = mask.shape
    padded = np.zeros((height + 2, width + 2), np.uint8)
    padded[1:-1, 1:-1] = mask
    cv2.floodFill(padded, np.zeros((height + 4, width + 4), np.uint8), (0, 0), 1, flags=4)
    return (padded[1:-1, 1:-1] == 0) | mask.astype(bool)


def fill_and_smooth(mask: np.ndarray) -> np.ndarray:
    """Fill holes per frame (`fill_holes`), then a temporal majority over 3 frames (removes one-frame flicker)."""
    filled = np.stack(frame_map(fill_holes, mask))
    if len(filled) >= 3:
        votes = filled.astype(np.uint8)
        total = votes.copy()
        total[1:] += votes[:-1]
        total[:-1] += votes[1:]
        counts = np.full(len(filled), 3, np.uint8)
        counts[0] = counts[-1] = 2
        filled = total * 2 > counts[:, None, None]
    return filled


def boxes_and_points(alpha: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per frame: (x0, y0, x1, y1) of alpha > 0.5 (NaN when absent) and the centroid as a positive point."""
    boxes = np.full((len(alpha), 4), np.nan, np.float32)
    points = []
    for t, frame in enumerate(alpha > 0.5):
        ys, xs = np.nonzero(frame)
        if len(xs) == 0:
            points.append(np.zeros((0, 2), np.float32))
            continue
        boxes[t] = (xs.min(), ys.min(), xs.max(), ys.max())
        # The most interior pixel is a safer prompt than the centroid (which can fall outside a concave shape).
        inside = cv2.distanceTransform(frame.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        y, x = np.unravel_index(int(np.argmax(inside)), inside.shape)
        points.append(np.array([[x, y]], np.float32))
    return boxes, points


def _dilate_each(masks: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W) bool: each frame's mask dilated by a `size` x `size` square."""
    kernel = np.ones((size, size), np.uint8)
    return np.stack(frame_map(lambda mask: cv2.dilate(mask.astype(np.uint8), kernel) > 0, masks))


# ----------------------------------------------------------------------------------------------------- backend


@register("segmenter")
class MotionSegmenter(Backend):
    """Motion + change evidence against a stabilised clean plate, refined to a soft edge-aware matte."""

    name = "motion"
    description = "camera-compensated motion and clean-plate change detection (no weights, CPU)"
    can_pick = True

    def __init__(self, all_objects: bool = False, motion_threshold: float = MOTION_MIN, objects: str = "tracked"):
        """`objects`: "tracked" follows each mover frame to frame (`tracks.track_objects`: movers that touch
        stay apart) when the chosen connected component holds several movers, or "connected" always takes the
        mask's spatio-temporal connected components (as before issue 17's stop 24)."""
        if objects not in OBJECT_MODES:
            raise OptionError(f"motion objects {objects!r}: expected one of {', '.join(OBJECT_MODES)}")
        self.all_objects = all_objects
        self.motion_threshold = motion_threshold
        self.objects = objects

    def describe_config(self) -> dict:
        return {"name": self.name, "all_objects": self.all_objects, "motion_threshold": self.motion_threshold,
                "objects": self.objects}

    def segment(self, clip: SplitClip, prior: np.ndarray | None = None, pick: SubjectPick | None = None
                ) -> Segmentation:
        timings = {}
        started = time.perf_counter()
        frames = clip.frames
        count, height, width = frames.shape[:3]
        camera = clip.camera
        timings["camera"] = time.perf_counter() - started

        mark = time.perf_counter()
        short, long = motion_evidence(clip)
        moving = (short > _noise_floor(short, self.motion_threshold)) | (long > _noise_floor(long, LONG_MOTION_MIN))
        motion = np.maximum(short, long / LONG_GAP)
        timings["motion"] = time.perf_counter() - mark

        mark = time.perf_counter()
        canvas = clip.canvas
        # A slow subject's motion evidence fades in a frame here and there (near the clip's ends most), and one
        # missed frame is enough to put the subject itself into the plate: borrow those frames' masks.
        moving = borrow_weak_frames(moving, camera)
        excluded = _dilate_each(moving, 9)
        plate, seen = clean_plate(frames, excluded, canvas, clip.canvas_frames)
        change, known, _ = change_evidence(frames, plate, seen, canvas)
        changed = (change > _noise_floor(change[known], 25.0)) & known
        timings["plate"] = time.perf_counter() - mark

        mark = time.perf_counter()
        candidate = np.stack(frame_map(lambda c: cv2.morphologyEx(c.astype(np.uint8), cv2.MORPH_OPEN,
                                                                  np.ones((3, 3), np.uint8)) > 0, changed | moving))
        motion += 1.0  # every changed pixel counts, moving ones more
        flows, split = None, None
        subject, info = select_objects(candidate, motion, self.all_objects, prior, pick)
        if self.objects == "tracked":
            points = PointTracks.build(to_gray(frames), _dilate_each(candidate, 9))
            # The connected components will do when the chosen one moves as one (the cheap common case);
            # when it holds several movers for SPLIT_SECONDS in a row, the objects are followed through time.
            if not subject.any() or points.splits(subject, max(3, round(SPLIT_SECONDS * clip.fps))):
                flows, split = camera.flows, points.motion_groups
                subject, info = select_objects(candidate, motion, self.all_objects, prior, pick, flows, split)
            info["tracked"] = flows is not None
        timings["objects"] = time.perf_counter() - mark
        if not subject.any():
            empty = np.zeros((count, height, width), np.float32)
            boxes, points = boxes_and_points(empty)
            reason = "no moving subject found" if pick is None else f"nothing moves at the {pick.describe()}"
            return Segmentation(empty, boxes, points, found=False, reason=reason, info={**info, "seconds": timings})

        mark = time.perf_counter()
        # Second plate without the selected subject: cleaner change evidence around it.
        excluded = _dilate_each(subject, 7)
        plate, seen_by = counted_plate(frames, excluded, canvas, clip.canvas_frames)
        seen = seen_enough(seen_by, count)
        change, known, gains = change_evidence(frames, plate, seen, canvas, subject=excluded)
        high = _noise_floor(change[known & ~excluded], 25.0)
        changed = hysteresis(change, high, 0.5 * high) & known
        # Keep change near the selected subject only; where the plate never saw the scene, keep the first mask.
        near = _dilate_each(subject, NEAR)
        refined = (changed & near) | (subject & moving & ~known)
        # A pick keeps following the first choice (its component in the refined mask), never another mover.
        if flows is not None and not others_near(subject, candidate & ~subject):
            flows = split = None   # no other mover comes near the subject: its connected components will do
        refined, _ = select_objects(refined, motion, self.all_objects,
                                    prior if pick is None else subject.astype(np.float32), pick, flows, split,
                                    parent=subject if flows is not None else None)
        refined = fill_and_smooth(refined)
        alpha = soft_matte(frames, refined)
        # Where the second plate never saw the scene, a third one leaving out only the matte found (it sees closer
        # to the subject); the outline is then decided against the scene (`edges`).
        if not seen.all():
            tight = _dilate_each(alpha > 0.5, TIGHT_MARGIN)
            unseen_plate, unseen_by = counted_plate(frames, tight, canvas, clip.canvas_frames, within=~seen)
            plate = np.where(seen[..., None], plate, unseen_plate)
            seen_by = np.where(seen, seen_by, unseen_by)
        alpha = refine_outline(frames, alpha, plate, seen_by, canvas, gains, changed)
        timings["refine"] = time.perf_counter() - mark

        boxes, points = boxes_and_points(alpha)
        present = (alpha > 0.5).mean(axis=(1, 2)) >= SUBJECT_MIN_AREA
        info.update({"frames_with_subject": int(present.sum()), "seconds": timings,
                     "plate_seen": float(seen.mean())})
        return Segmentation(alpha, boxes, points, found=bool(present.any()),
                            reason="" if present.any() else "moving subject too small", info=info)
