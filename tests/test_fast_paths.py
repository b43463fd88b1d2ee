"""Shortcuts taken for speed give exactly what the general code gives (issue 17's speed target)."""

import cv2
import numpy as np
import pytest
from scipy import ndimage

from splitmerge.decompose.effects import separate_cropped, separate_frame
from splitmerge.decompose.motion import fill_enclosed
from splitmerge.decompose.plate import Canvas
from splitmerge.decompose.tracks import shrink


@pytest.mark.parametrize("shift", [(0, 0), (3, 5)])
def test_a_still_frame_is_a_window_of_the_canvas_exactly_as_warping_gives(shift):
    rng = np.random.default_rng(0)
    matrix = np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1.0]])
    canvas = Canvas((250, 370), matrix[None], (240, 360))
    images = (rng.integers(0, 255, (240, 360, 3), dtype=np.uint8), rng.random((240, 360)).astype(np.float32),
              (rng.random((240, 360)) > 0.5).astype(np.uint8))
    for image in images:
        for interpolation in (cv2.INTER_LINEAR, cv2.INTER_NEAREST):
            for border in (0, 7, (1, 2, 3)):
                fast = canvas.from_frame(image, 0, interpolation, border)
                slow = cv2.warpPerspective(image, matrix, (370, 250), flags=interpolation,
                                           borderMode=cv2.BORDER_CONSTANT, borderValue=border)
                assert fast.dtype == slow.dtype and np.array_equal(fast, slow)
    plate = rng.integers(0, 255, (250, 370, 3), dtype=np.uint8)
    slow = cv2.warpPerspective(plate, matrix, (360, 240), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)
    assert np.array_equal(canvas.to_frame(plate, 0), slow)


def test_a_moving_frame_is_still_warped():
    matrix = np.array([[1, 0, 2.5], [0, 1, 0], [0, 0, 1.0]])
    canvas = Canvas((240, 364), matrix[None], (240, 360))
    assert canvas._window(0) is None
    image = np.tile(np.arange(360, dtype=np.float32), (240, 1))
    assert canvas.from_frame(image, 0)[100, 100] == pytest.approx(97.5)


def test_flood_filled_holes_equal_scipys():
    rng = np.random.default_rng(1)
    for _ in range(50):
        noise = cv2.GaussianBlur(rng.random((60, 90)).astype(np.float32), (0, 0), rng.uniform(1, 5))
        mask = noise > rng.uniform(0.45, 0.55)
        assert np.array_equal(fill_enclosed(mask), ndimage.binary_fill_holes(mask))


def test_shrink_sets_a_cell_where_any_of_its_pixels_is():
    rng = np.random.default_rng(2)
    mask = rng.random((3, 31, 45)) > 0.97
    for scale in (2, 3):
        small = shrink(mask, scale)
        expected = np.zeros_like(small)
        for t, y, x in zip(*np.nonzero(mask), strict=True):
            expected[t, y // scale, x // scale] = True
        assert np.array_equal(small, expected)


def test_the_effects_rule_on_the_mattes_box_equals_it_on_the_whole_frame():
    rng = np.random.default_rng(3)
    plate = cv2.GaussianBlur(rng.integers(40, 220, (120, 160, 3), dtype=np.uint8), (0, 0), 2)
    frame = plate.copy()
    frame[40:80, 50:80] = (200, 30, 30)                                           # the subject
    frame[70:90, 80:120] = (plate[70:90, 80:120] * 0.55).astype(np.uint8)         # its shadow beside it
    alpha = np.zeros((120, 160), np.float32)
    alpha[38:92, 48:122] = 1.0                                                     # a matte holding both
    whole, cropped = separate_frame(frame, alpha, plate), separate_cropped(frame, alpha, plate)
    assert (whole[1] < 0.9).any()   # the shadow was found ...
    for full, crop in zip(whole, cropped, strict=True):
        assert np.array_equal(full, crop)   # ... and the crop changes nothing


def test_a_plate_made_at_some_pixels_equals_the_whole_plate_there():
    from splitmerge.decompose.camera import estimate_camera
    from splitmerge.decompose.plate import clean_plate, counted_plate, make_canvas

    rng = np.random.default_rng(4)
    base = cv2.GaussianBlur(rng.integers(0, 255, (60, 90, 3), dtype=np.uint8), (0, 0), 2)
    frames = np.stack([np.roll(base, 2 * t, axis=1) for t in range(8)])   # a pan
    covered = np.zeros(frames.shape[:3], bool)
    covered[:, 20:40, 30:50] = True
    canvas = make_canvas(estimate_camera(frames))
    whole, whole_seen = clean_plate(frames, covered, canvas)
    box = np.zeros(canvas.size, bool)
    box[10:45, 5:70] = True
    box[30:40, 20:60] = False   # any set of pixels, not only a box
    part, part_seen = clean_plate(frames, covered, canvas, within=box)
    assert np.array_equal(part[box], whole[box]) and np.array_equal(part_seen[box], whole_seen[box])
    assert not part_seen[~box].any() and not part[~box].any()
    assert whole_seen.any() and not whole_seen.all()   # the test has both seen and never-seen pixels
    # The frames each pixel was seen by: `seen` where at least 2; the same plate, counted.
    counted, counts = counted_plate(frames, covered, canvas)
    assert np.array_equal(counts >= 2, whole_seen) and 2 < counts.max() <= len(frames)
    assert np.array_equal(counted, whole)
    assert not counted_plate(frames, covered, canvas, within=box)[1][~box].any()


@pytest.mark.parametrize("matrix", [np.eye(3), np.array([[1.02, 0.01, 13.3], [-0.01, 0.99, 7.7], [1e-5, 0, 1]])])
def test_a_part_of_the_view_equals_the_whole_view_cropped(matrix):
    rng = np.random.default_rng(5)
    canvas = Canvas((150, 200), (matrix @ np.array([[1, 0, 4], [0, 1, 3], [0, 0, 1.0]]))[None], (100, 140))
    box = (10, 60, 20, 90)
    for image in (rng.integers(0, 255, (150, 200, 3), dtype=np.uint8), rng.random((150, 200)).astype(np.float32)):
        for interpolation in (cv2.INTER_LINEAR, cv2.INTER_NEAREST):
            whole = canvas.to_frame(image, 0, interpolation)[10:60, 20:90]
            part = canvas.to_frame(image, 0, interpolation, box=box)
            # 8-bit images exactly; float32 ones to rounding (6e-8 in 3% of the pixels of a warp)
            assert np.array_equal(part, whole) if image.dtype == np.uint8 else np.allclose(part, whole, atol=1e-6)
