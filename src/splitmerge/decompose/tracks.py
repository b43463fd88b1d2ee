"""Objects through time: a moving-pixel mask becomes labelled objects, each followed from frame to frame by the
optical flow, so that two movers that touch stay two objects.

Grouping a (T, H, W) mask into spatio-temporal connected components joins every pair of movers that touch in
any one frame (a passer-by walking behind the subject, a car behind a hand): the whole clip of both becomes one
object. Here each frame is grouped on its own and linked to the previous frame's objects by carrying their
labels along the forward flow (`carry_labels`):

- a frame's connected component that holds several movers is first split into them (`split`, e.g. the groups
  of feature points that move alike, `trajectories.PointTracks.motion_groups`);
- a piece that meets no carried object starts a new one, unless one is within `REACH` px (then it continues
  that one, as spatio-temporal connectivity would);
- a piece that meets one object continues it (an object that splits in two keeps its label on both parts);
- a piece that meets several objects is where they touch: each of its pixels goes to the nearest carried
  object (`nearest_label`), so no object ever swallows another.

An object with no pixels in a frame (a subject whose evidence fades while it stands still) is remembered where
it was last seen, carried by the flow, for `MEMORY` frames, so that it continues when it shows again.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from ..parallel import frame_map

MEMORY = 8              # frames an object with no pixels stays remembered
TOUCH_MIN_PIXELS = 3    # a carried object must cover this many pixels of a piece to count as meeting it
TOUCH_MIN_SHARE = 0.05  # ... or this share of the piece, whichever is smaller
TRACK_SCALE = 2         # objects are followed on the mask shrunk by this factor
REACH = 1               # px (of the shrunk mask): a piece meeting no carried object but this close to one continues it
SPLIT_MIN_AREA = 50     # pixels (of the shrunk mask): smaller components are never split
NEAREST_MARGIN = 12     # px (of the shrunk mask) around a shared piece searched first for its nearest objects
EIGHT = np.ones((3, 3), bool)


def carry_labels(labels: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """(H, W) int: `labels` (H, W) int of one frame moved into the next along `flow` (H, W, 2) pixels (x, y);
    each labelled pixel lands on its nearest pixel (landing points may leave small gaps and collide)."""
    height, width = labels.shape
    ys, xs = np.nonzero(labels)
    targets_x = np.rint(xs + flow[ys, xs, 0]).astype(np.int64)
    targets_y = np.rint(ys + flow[ys, xs, 1]).astype(np.int64)
    inside = (targets_x >= 0) & (targets_x < width) & (targets_y >= 0) & (targets_y < height)
    carried = np.zeros_like(labels)
    carried[targets_y[inside], targets_x[inside]] = labels[ys[inside], xs[inside]]
    return carried


def nearest_label(region: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """(h, w) int: inside `region` (h, w) bool, the label of the nearest non-zero pixel of `seeds` (h, w) int
    (which has one); 0 outside the region."""
    return _nearest_with_distance(region, seeds)[0]


def _nearest_with_distance(region: np.ndarray, seeds: np.ndarray) -> tuple[np.ndarray, float]:
    """(`nearest_label`, the largest distance (px) from a pixel of `region` to its nearest seed)."""
    # OpenCV numbers the zero pixels of its input (here: the seeds) 1..n in raster order, as np.nonzero does.
    distance, nearest = cv2.distanceTransformWithLabels((seeds == 0).astype(np.uint8), cv2.DIST_L2, 3,
                                                        labelType=cv2.DIST_LABEL_PIXEL)
    values = seeds[np.nonzero(seeds)]
    farthest = float(distance[region].max()) if region.any() else 0.0
    return np.where(region, values[np.maximum(nearest, 1) - 1], 0), farthest


def track_objects(mask: np.ndarray, flows: np.ndarray, split=None, scale: int = TRACK_SCALE
                  ) -> tuple[np.ndarray, int]:
    """Label the objects of `mask` (T, H, W) bool, followed through time along `flows` (T - 1, H, W, 2) float32
    (forward flow of each pair, pixels). `split(t, where, scale)`, when given, splits a frame's connected
    component `where` (h, w) bool (the frame shrunk by `scale`) that holds several movers into groups
    ((h, w) int 1..k; None for one mover). The objects are followed on the mask shrunk by `scale` (a pixel
    there is set where any of its `scale` x `scale` pixels is), which is as good for telling movers apart and
    `scale`^2 times cheaper. Returns (labels (T, H, W) int32, 0 = background, 1..count; count)."""
    count, height, width = mask.shape
    small = shrink(mask, scale)
    small_flows = flows[:, ::scale, ::scale][:, :small.shape[1], :small.shape[2]] / scale
    labels = _track_small(small, small_flows, None if split is None else lambda t, where: split(t, where, scale))
    labels, found = dense_labels(labels)
    grown = np.broadcast_to(labels[:, :, None, :, None], labels.shape[:2] + (scale, labels.shape[2], scale))
    full = grown.reshape(count, labels.shape[1] * scale, labels.shape[2] * scale)[:, :height, :width]
    return np.where(mask, full, 0), found


def dense_labels(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """(`labels` (any shape, int >= 0) renumbered 1..count in order without gaps, 0 staying 0, as int32; count)."""
    used = np.bincount(labels.ravel()) > 0
    used[0] = True
    return (np.cumsum(used) - 1).astype(np.int32)[labels], int(used.sum() - 1)


def shrink(mask: np.ndarray, scale: int) -> np.ndarray:
    """(T, ceil(H / scale), ceil(W / scale)) bool: set where any pixel of the `scale` x `scale` cell of `mask`
    (T, H, W) bool is."""
    count, height, width = mask.shape
    padded = np.zeros((count, -(-height // scale) * scale, -(-width // scale) * scale), bool)
    padded[:, :height, :width] = mask
    out = np.zeros((count, padded.shape[1] // scale, padded.shape[2] // scale), bool)
    for dy in range(scale):   # scale^2 strided ORs: much faster than a reduction over reshaped axes
        for dx in range(scale):
            out |= padded[:, dy::scale, dx::scale]
    return out


def _track_small(mask: np.ndarray, flows: np.ndarray, split) -> np.ndarray:
    """(T, h, w) int64 labels of `mask` (T, h, w) bool followed along `flows` (T - 1, h, w, 2) (see
    `track_objects`); labels are not dense."""
    count, height, width = mask.shape
    labels = np.zeros(mask.shape, np.int64)
    next_label = [1]
    memory = np.zeros((height, width), np.int64)   # objects with no pixels now, where they were last seen
    age = np.zeros((height, width), np.int64)

    def frame_pieces(t: int) -> tuple[np.ndarray, int]:
        pieces, found = ndimage.label(mask[t], structure=EIGHT)
        if found and split is not None:
            pieces, found = split_components(pieces, found, lambda where: split(t, where))
        return pieces, found

    every = frame_map(frame_pieces, range(count))   # each frame on its own; the linking below is in order
    for t, (pieces, found) in enumerate(every):
        carried = np.zeros((height, width), np.int64)
        if t > 0 and found:
            carried = carry_labels(labels[t - 1], flows[t - 1])
            carried = np.where(carried > 0, carried, carry_labels(memory, flows[t - 1]))
        labels[t] = _label_frame(pieces, found, carried, next_label)
        if t > 0:
            memory, age = _remember(memory, age, labels[t - 1], labels[t], flows[t - 1], next_label[0])
    return labels


def _label_frame(pieces: np.ndarray, found: int, carried: np.ndarray, next_label: list[int]) -> np.ndarray:
    """(H, W) int: this frame's labels, from its `pieces` (H, W) int (1..found) and the objects `carried`
    (H, W) int into it from the previous frame (see the module docstring); `next_label` [int] is the first
    unused label, advanced for each new object."""
    out = np.zeros(pieces.shape, np.int64)
    if found == 0:
        return out
    inside = pieces > 0
    width = int(carried.max()) + 1
    overlap = np.bincount(pieces[inside] * width + carried[inside],
                          minlength=(found + 1) * width).reshape(found + 1, width)
    areas = overlap.sum(axis=1)
    overlap[:, 0] = 0
    nearby = None
    for piece, box in enumerate(ndimage.find_objects(pieces), start=1):
        if box is None:
            continue
        needed = min(TOUCH_MIN_PIXELS, max(1, int(TOUCH_MIN_SHARE * areas[piece])))
        meets = np.flatnonzero(overlap[piece] >= needed)
        where = pieces[box] == piece
        if len(meets) == 0:
            if nearby is None:   # carried objects grown by REACH px: a piece just beside one continues it
                nearby = cv2.dilate(carried.astype(np.float32), np.ones((2 * REACH + 1,) * 2, np.uint8))
            close = nearby[box][where]
            close = close[close > 0]
            if len(close):
                out[box][where] = int(np.bincount(close.astype(np.int64)).argmax())
            else:
                out[box][where] = next_label[0]
                next_label[0] += 1
        elif len(meets) == 1:
            out[box][where] = meets[0]
        else:
            out[box][where] = _nearest_of(where, carried, box, meets)[where]
    return out


def _nearest_of(where: np.ndarray, carried: np.ndarray, box: tuple, meets: np.ndarray) -> np.ndarray:
    """(h, w) int: for the piece `where` (h, w) bool at `box` (slices) of the frame, the nearest of the objects
    `meets` among `carried` (H, W) int."""
    # Within the piece's box grown by a margin first: the answer is exact when every pixel of the piece has a
    # seed closer than the margin (anything outside the grown box is farther; 0.9 x the margin, as OpenCV's 3x3
    # distances are within 5% of the Euclidean ones); else over the whole frame.
    height, width = carried.shape
    grown = (slice(max(box[0].start - NEAREST_MARGIN, 0), min(box[0].stop + NEAREST_MARGIN, height)),
             slice(max(box[1].start - NEAREST_MARGIN, 0), min(box[1].stop + NEAREST_MARGIN, width)))
    for window in (grown, (slice(0, height), slice(0, width))):
        seeds = np.where(np.isin(carried[window], meets), carried[window], 0)
        region = np.zeros(seeds.shape, bool)
        inner = (slice(box[0].start - window[0].start, box[0].stop - window[0].start),
                 slice(box[1].start - window[1].start, box[1].stop - window[1].start))
        region[inner] = where
        labels, farthest = _nearest_with_distance(region, seeds)
        if farthest <= 0.9 * NEAREST_MARGIN:
            break
    return labels[inner]


def _remember(memory: np.ndarray, age: np.ndarray, previous: np.ndarray, current: np.ndarray, flow: np.ndarray,
              labels: int) -> tuple[np.ndarray, np.ndarray]:
    """The memory after a frame: objects of the `previous` frame (H, W) int with no pixels in the `current`
    one are remembered where they were, carried along `flow` (H, W, 2) into it; remembered objects that show
    again, or are older than `MEMORY` frames, are forgotten. `labels`: how many labels exist so far.
    Returns (memory, age), each (H, W) int."""
    present = np.bincount(current.ravel(), minlength=labels) > 0
    present[0] = False
    vanished = np.where(present[previous], 0, previous)
    aged = carry_labels(np.where(memory > 0, age + 1, 0), flow)  # the same pixels land as the labels below
    memory = carry_labels(memory, flow)
    age = np.where(memory > 0, aged, 0)
    memory = np.where(vanished > 0, vanished, memory)
    age = np.where(vanished > 0, 0, age)
    gone = present[memory] | (age > MEMORY)
    return np.where(gone, 0, memory), np.where(gone, 0, age)


def split_components(components: np.ndarray, found: int, groups_of) -> tuple[np.ndarray, int]:
    """Split the components of `components` (H, W) int (1..found) that hold several movers: `groups_of(where)`
    ((H, W) bool -> (H, W) int groups 1..k, or None) is asked about each component of at least
    `SPLIT_MIN_AREA` pixels, and a component of k > 1 groups becomes the connected pieces of each group.
    Returns (pieces (H, W) int 1..found', found')."""
    out = components.copy()
    areas = np.bincount(components.ravel(), minlength=found + 1)
    for component in np.flatnonzero(areas[1:] >= SPLIT_MIN_AREA) + 1:
        groups = groups_of(components == component)
        if groups is None or groups.max() <= 1:
            continue
        for group in range(1, int(groups.max()) + 1):
            pieces, count = ndimage.label(groups == group, structure=EIGHT)
            out[pieces > 0] = pieces[pieces > 0] + found
            found += count
    return dense_labels(out)
