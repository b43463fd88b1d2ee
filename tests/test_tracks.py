"""Objects through time (`decompose.tracks`) and point trajectories (`decompose.trajectories`): movers that
touch stay two objects."""

import numpy as np
import pytest
from scipy import ndimage

from splitmerge.decompose.motion import MotionSegmenter
from splitmerge.decompose.tracks import carry_labels, nearest_label, track_objects
from splitmerge.decompose.trajectories import PointTracks
from splitmerge.errors import OptionError

FRAMES, HEIGHT, WIDTH = 12, 60, 120


def _two_movers(size: int = 16):
    """A square sliding right until it touches a second square that jitters in place, the two touching (one
    connected component) from frame 9 on, with the exact flow of each. Returns (mask (T, H, W) bool,
    flows (T - 1, H, W, 2), truth (T, H, W) int 1 = slider, 2 = the other)."""
    mask = np.zeros((FRAMES, HEIGHT, WIDTH), bool)
    truth = np.zeros((FRAMES, HEIGHT, WIDTH), np.int64)
    lefts = [min(10 + 4 * t, 60 - size) for t in range(FRAMES)]
    rights = [60 + (t % 2) for t in range(FRAMES)]
    for t in range(FRAMES):
        truth[t, 22:22 + size, lefts[t]:lefts[t] + size] = 1
        truth[t, 20:20 + size, rights[t]:rights[t] + size] = 2
        mask[t] = truth[t] > 0
    flows = np.zeros((FRAMES - 1, HEIGHT, WIDTH, 2), np.float32)
    for t in range(FRAMES - 1):
        flows[t][truth[t] == 1] = (lefts[t + 1] - lefts[t], 0)
        flows[t][truth[t] == 2] = (rights[t + 1] - rights[t], 0)
    return mask, flows, truth


def test_carry_labels_moves_labels_along_the_flow():
    labels = np.zeros((10, 10), np.int64)
    labels[2, 3] = 7
    flow = np.zeros((10, 10, 2), np.float32)
    flow[2, 3] = (2.2, 1.0)
    carried = carry_labels(labels, flow)
    assert carried[3, 5] == 7 and carried.sum() == 7


def test_nearest_label_matches_an_exact_distance_transform():
    rng = np.random.default_rng(0)
    seeds = np.zeros((40, 50), np.int64)
    seeds.flat[rng.choice(seeds.size, 6, replace=False)] = np.arange(1, 7)
    region = np.ones(seeds.shape, bool)
    _, (rows, cols) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    agree = (nearest_label(region, seeds) == seeds[rows, cols]).mean()
    assert agree > 0.97   # OpenCV's 3x3 distance differs from the exact one only on near-ties


def test_touching_movers_stay_two_objects():
    mask, flows, truth = _two_movers()
    merged, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    assert count == 1   # what the spatio-temporal components make of them
    labels, count = track_objects(mask, flows)
    assert count == 2
    for t in range(FRAMES):
        for side in (1, 2):
            visible = truth[t] == side
            share = (labels[t][visible] == labels[0][truth[0] == side][0]).mean()
            assert share > 0.9, (t, side, share)


def test_an_object_that_vanishes_for_a_few_frames_keeps_its_label():
    mask, flows, truth = _two_movers()
    mask[4:6][truth[4:6] == 2] = False      # the right square's evidence fades for two frames
    labels, _ = track_objects(mask, flows)
    first = labels[0][truth[0] == 2][0]
    assert (labels[8][truth[8] == 2] == first).mean() > 0.9


def _textured_clip(speeds=(1.0, 5.0)):
    """Two textured patches side by side, touching, moving right at `speeds` px per frame over a flat grey
    frame; returns (gray (T, H, W) uint8, region (T, H, W) bool, truth (T, H, W) int 1 = slow, 2 = fast)."""
    rng = np.random.default_rng(3)
    texture = (ndimage.gaussian_filter(rng.random((40, 90)), 1.2) * 255).astype(np.uint8)
    texture = np.clip((texture.astype(np.float32) - texture.mean()) * 4 + 128, 0, 255).astype(np.uint8)
    gray = np.full((FRAMES, HEIGHT, WIDTH + 80), 128, np.uint8)
    truth = np.zeros(gray.shape, np.int64)
    for t in range(FRAMES):
        slow, fast = 10 + round(speeds[0] * t), 40 + round(speeds[1] * t)
        gray[t, 10:50, fast:fast + 40] = texture[:, 40:80]
        truth[t, 10:50, fast:fast + 40] = 2
        gray[t, 10:50, slow:slow + 30] = texture[:, :30]
        truth[t, 10:50, slow:slow + 30] = 1
    region = ndimage.binary_dilation(truth > 0, iterations=2)
    for t in range(FRAMES):   # the gap between them closed: one component
        xs = np.flatnonzero(region[t].any(axis=0))
        region[t, 10:50, xs.min():xs.max() + 1] = True
    return gray, region, truth


def test_point_groups_separate_movers_in_one_component():
    gray, region, truth = _textured_clip()
    tracks = PointTracks.build(gray, region)
    t = FRAMES // 2
    groups = tracks.motion_groups(t, region[t])
    assert groups is not None and groups.max() >= 2
    for side in (1, 2):
        values, counts = np.unique(groups[truth[t] == side], return_counts=True)
        assert counts.max() / counts.sum() > 0.8, (side, values, counts)
    slow_group = np.bincount(groups[truth[t] == 1]).argmax()
    fast_group = np.bincount(groups[truth[t] == 2]).argmax()
    assert slow_group != fast_group


def test_point_groups_leave_one_mover_whole():
    gray, region, truth = _textured_clip(speeds=(3.0, 3.0))
    tracks = PointTracks.build(gray, region)
    assert tracks.motion_groups(FRAMES // 2, region[FRAMES // 2]) is None


def test_motion_segmenter_checks_its_objects_option():
    assert MotionSegmenter().objects == "tracked"
    assert MotionSegmenter(objects="connected").describe_config()["objects"] == "connected"
    with pytest.raises(OptionError, match="objects"):
        MotionSegmenter(objects="blobs")



def test_a_mask_holding_two_movers_for_a_while_splits():
    gray, region, _ = _textured_clip()
    assert PointTracks.build(gray, region).splits(region, run=4)
    gray, region, _ = _textured_clip(speeds=(3.0, 3.0))
    assert not PointTracks.build(gray, region).splits(region, run=1)
