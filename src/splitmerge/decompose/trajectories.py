"""Point trajectories: which pixels of a moving region move together over several frames.

Dense optical flow at the split's working detail is smooth across object boundaries: where a walking subject
touches a passing car, the flow between them is a continuum and no threshold on it separates the two. Sparse
feature points tracked by pyramidal Lucas-Kanade (each over its own small window, checked forward and
backward) keep sharp motion; compared over `SPAN` frames on each side, two points of one object stay within a
few pixels of each other's displacement while points of two movers part by the difference of their speeds
times the span (the idea of Brox and Malik's long-term trajectory segmentation, ECCV 2010).

`PointTracks.build` follows feature points through a clip inside a region (where anything may move);
`PointTracks.motion_groups` splits one frame's region into the groups of points that move alike and gives every
pixel of it the group of its nearest point.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ..parallel import frame_map
from .tracks import nearest_label

POINT_SPACING = 4       # px: the least distance between two feature points
MAX_NEW_POINTS = 500    # new feature points per frame, at most
QUALITY = 0.005         # of the strongest corner's response: weaker corners are not tracked
LK_WINDOW = (11, 11)    # px: Lucas-Kanade's window
LK_LEVELS = 2
FB_TOLERANCE = 1.0      # px: a point whose backward track misses its start by more than this is dropped
SPAN = 4                # frames on each side over which two points' displacements are compared
MOTION_GAP = 0.014      # of the frame diagonal (6 px at 240x360): points whose displacements over the span differ
                        # by this are on different movers
MIN_TOGETHER = 2        # frames besides t where both points of a pair must be tracked to link them
NEIGHBOURS = 8          # each point is compared with its nearest neighbours in the frame
GROUP_MIN_POINTS = 8    # a group of points smaller than this is not a mover of its own


@dataclass
class PointTracks:
    """Feature points followed through a clip.

    Attributes:
        positions: (N, T, 2) float32 pixel positions (x, y) of N points in T frames, NaN where a point is not
            tracked.
    """

    positions: np.ndarray

    @classmethod
    def build(cls, gray: np.ndarray, region: np.ndarray) -> PointTracks:
        """Track corners of `gray` (T, H, W) uint8 found inside `region` (T, H, W) bool, frame to frame."""
        count = len(gray)
        seen = []                       # per frame: (owners (K,), points (K, 2))
        active = np.zeros((0, 2), np.float32)
        owners = np.zeros(0, np.int64)
        total = 0
        for t in range(count):
            fresh = _new_points(gray[t], region[t], active)
            active = np.concatenate([active, fresh])
            owners = np.concatenate([owners, np.arange(total, total + len(fresh))])
            total += len(fresh)
            seen.append((owners, active))
            if t + 1 < count and len(active):
                moved, kept = _follow(gray[t], gray[t + 1], active)
                active, owners = moved[kept], owners[kept]
        positions = np.full((total, count, 2), np.nan, np.float32)
        for t, (owners, points) in enumerate(seen):
            positions[owners, t] = points
        return cls(positions)

    def motion_groups(self, t: int, where: np.ndarray, scale: int = 1) -> np.ndarray | None:
        """(H, W) int: the pixels of `where` (H, W) bool of frame t labelled 1..k by the group of points that
        move alike they belong to (0 outside `where`), or None when they move as one (or too few points are
        there to tell). A pixel goes to the group of its nearest point. `where` may be the frame shrunk by
        `scale` (positions are divided by it)."""
        height, width = where.shape
        here = self.positions[:, t] / scale
        present = np.isfinite(here[:, 0])
        x = np.clip(np.rint(here[present, 0]), 0, width - 1).astype(int)
        y = np.clip(np.rint(here[present, 1]), 0, height - 1).astype(int)
        inside = where[y, x]
        ids = np.flatnonzero(present)[inside]
        if len(ids) < 2 * GROUP_MIN_POINTS:
            return None
        gap = MOTION_GAP * float(np.hypot(height * scale, width * scale))   # in full-size pixels
        groups = _group_points(self.positions[ids], t, gap)
        sizes = np.bincount(groups)
        big = np.flatnonzero(sizes >= GROUP_MIN_POINTS)
        if len(big) < 2:
            return None
        box = ndimage.find_objects(where.astype(np.uint8))[0]
        keep = np.isin(groups, big)
        points_y, points_x = y[inside][keep] - box[0].start, x[inside][keep] - box[1].start
        members = np.searchsorted(big, groups[keep]) + 1
        seeds = np.zeros(where[box].shape, np.int64)
        seeds[points_y, points_x] = members
        out = np.zeros((height, width), np.int64)
        out[box] = nearest_label(where[box], seeds)
        return out

    def splits(self, mask: np.ndarray, run: int) -> bool:
        """Whether the points inside `mask` (T, H, W) bool move in more than one way (`motion_groups`) in `run`
        frames in a row: then `mask` holds more than one mover (a frame or a few alone are blur, a turning
        limb, points at an edge)."""
        found = frame_map(lambda t: bool(mask[t].any()) and self.motion_groups(t, mask[t]) is not None,
                          range(len(mask)))
        length = 0
        for split in found:
            length = length + 1 if split else 0
            if length >= run:
                return True
        return False


def _new_points(gray: np.ndarray, region: np.ndarray, active: np.ndarray) -> np.ndarray:
    """(K, 2) float32 corners inside `region`, at least `POINT_SPACING` px from the `active` points."""
    allowed = region.astype(np.uint8) * 255
    if len(active):
        taken = np.zeros(region.shape, np.uint8)
        x = np.clip(np.rint(active[:, 0]).astype(int), 0, region.shape[1] - 1)
        y = np.clip(np.rint(active[:, 1]).astype(int), 0, region.shape[0] - 1)
        taken[y, x] = 1
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * POINT_SPACING + 1,) * 2)
        allowed[cv2.dilate(taken, disc) > 0] = 0
    if not allowed.any():
        return np.zeros((0, 2), np.float32)
    corners = cv2.goodFeaturesToTrack(gray, MAX_NEW_POINTS, QUALITY, POINT_SPACING, mask=allowed, blockSize=5)
    return np.zeros((0, 2), np.float32) if corners is None else corners.reshape(-1, 2).astype(np.float32)


def _follow(first: np.ndarray, second: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`points` (N, 2) of `first` found in `second`: (moved (N, 2) float32, kept (N,) bool: found both ways
    within `FB_TOLERANCE` px and inside the frame)."""
    params = {"winSize": LK_WINDOW, "maxLevel": LK_LEVELS,
              "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)}
    start = points.reshape(-1, 1, 2)
    moved, found, _ = cv2.calcOpticalFlowPyrLK(first, second, start, None, **params)
    back, found_back, _ = cv2.calcOpticalFlowPyrLK(second, first, moved, None, **params)
    height, width = first.shape
    moved, back = moved.reshape(-1, 2), back.reshape(-1, 2)
    error = np.linalg.norm(back - points, axis=1)
    inside = (moved[:, 0] >= 0) & (moved[:, 0] <= width - 1) & (moved[:, 1] >= 0) & (moved[:, 1] <= height - 1)
    kept = found.ravel().astype(bool) & found_back.ravel().astype(bool) & (error < FB_TOLERANCE) & inside
    return moved, kept


def _group_points(positions: np.ndarray, t: int, gap: float) -> np.ndarray:
    """(N,) int group of each of N points with `positions` (N, T, 2), present in frame t: neighbours in frame t
    are linked when both are tracked in at least `MIN_TOGETHER` other frames within `SPAN` frames each way
    and their displacements from frame t there never part by `gap` px or more; the groups are the
    linked sets."""
    window = positions[:, max(0, t - SPAN): t + SPAN + 1] - positions[:, t:t + 1]   # (N, W, 2)
    here = positions[:, t]
    tree = cKDTree(here)
    _, neighbours = tree.query(here, k=min(NEIGHBOURS + 1, len(here)))
    first = np.repeat(np.arange(len(here)), neighbours.shape[1] - 1)
    second = neighbours[:, 1:].ravel()
    step = window[first] - window[second]
    apart = step[..., 0] ** 2 + step[..., 1] ** 2     # (E, W) squared px, NaN where either is lost
    together = np.count_nonzero(~np.isnan(apart), axis=1) - 1     # other frames where both are tracked
    apart_most = np.fmax.reduce(apart, axis=1)        # NaN-ignoring; frame t itself is always there (0)
    linked = (together >= MIN_TOGETHER) & (apart_most < gap * gap)
    graph = coo_matrix((np.ones(int(linked.sum())), (first[linked], second[linked])), shape=(len(here),) * 2)
    _, groups = connected_components(graph, directed=False)
    return groups
