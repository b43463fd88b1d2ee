"""Split ground truth and its rulers: real cut-outs, rendered truth clips, J/F/hole-PSNR metrics, the median
baseline, and the measured captioner."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from splitmerge.data.cutouts import CUTOUTS, load_cutout
from splitmerge.errors import OptionError, ShapeError
from splitmerge.eval import boundary_f, mask_iou, masked_psnr
from splitmerge.eval.split_truth import BENCHMARK_CASES, TruthCase, render_case
from splitmerge.decompose.backends import SplitClip, get_backend
from splitmerge.decompose.caption import colour_name, describe_camera, describe_motion

from conftest import moving_subject_clip

pytest.importorskip("skimage")


def test_cutouts_are_real_objects_with_soft_mattes():
    for name in CUTOUTS:
        cutout = load_cutout(name)
        assert cutout.rgb.dtype == np.uint8 and cutout.rgb.shape[:2] == cutout.alpha.shape
        inside = cutout.alpha > 0.99
        assert 0.25 < inside.mean() < 0.95, name            # an object, not its whole box
        edge = (cutout.alpha > 0.02) & (cutout.alpha < 0.98)
        assert edge.any() and edge.mean() < 0.1, name       # soft, thin edge
        assert cutout.rgb[inside].std() > 10, name          # real texture
    assert load_cutout("cat") is load_cutout("cat")
    with pytest.raises(OptionError, match="cut-out 'dog'"):
        load_cutout("dog")


def test_benchmark_cases_cover_the_issue():
    cameras = {case.camera for case in BENCHMARK_CASES}
    paths = {case.path for case in BENCHMARK_CASES}
    assert len(BENCHMARK_CASES) >= 8 and {"static", "pan", "zoom", "handheld"} <= cameras
    assert {"slow", "pause"} <= paths and any(case.flatten for case in BENCHMARK_CASES)
    assert any(case.background.startswith("clip:") for case in BENCHMARK_CASES)
    with pytest.raises(OptionError, match="camera 'dolly'"):
        TruthCase("x", "photo:rocket", "cat", "dolly", "walk")


@pytest.mark.parametrize("name", ["pan-walk", "handheld-slow", "static-pause"])
def test_truth_clips_are_exact_composites_and_deterministic(name):
    case = replace(next(c for c in BENCHMARK_CASES if c.name == name), frames=12)
    truth = render_case(case)
    assert truth.frames.shape == (12, 240, 360, 3) and truth.alpha.shape == (12, 240, 360)
    assert 0.01 < truth.alpha.mean() < 0.3
    # frame = subject over the true background (+ sensor noise only): outside the matte, the background itself.
    outside = truth.alpha == 0
    difference = truth.frames.astype(float) - truth.background.astype(float)
    assert np.abs(difference[outside]).mean() < 2.0
    assert np.abs(difference[truth.alpha > 0.99]).mean() > 10
    again = render_case(case)
    assert np.array_equal(again.frames, truth.frames) and np.array_equal(again.alpha, truth.alpha)
    assert truth.describe()["name"] == name


def test_truth_cameras_and_paths_move_as_named():
    def centroid_x(alpha):
        return np.array([np.nonzero(a > 0.5)[1].mean() for a in alpha])

    static = render_case(replace(BENCHMARK_CASES[0], frames=10))
    assert np.array_equal(static.background[0], static.background[-1])  # a still camera renders the same view
    assert np.diff(centroid_x(static.alpha)).mean() == pytest.approx(2.0, abs=0.3)
    pause = render_case(TruthCase("p", "photo:rocket", "cup", "static", "pause", frames=30))
    steps = np.diff(centroid_x(pause.alpha))
    assert np.abs(steps[11:19]).max() < 0.05 and steps[:8].mean() > 2
    pan = render_case(TruthCase("q", "photo:rocket", "cup", "pan", "slow", frames=10))
    assert not np.array_equal(pan.background[0], pan.background[-1])


def test_region_and_boundary_metrics_behave():
    _, alpha, _ = moving_subject_clip(count=6)
    assert mask_iou(alpha, alpha) == 1.0 and boundary_f(alpha, alpha) == 1.0
    shifted = np.roll(alpha, 6, axis=2)
    assert 0.3 < mask_iou(shifted, alpha) < 0.9 and boundary_f(shifted, alpha) < 0.6
    assert mask_iou(np.roll(alpha, 1, axis=2), alpha) > mask_iou(shifted, alpha)
    assert boundary_f(np.roll(alpha, 1, axis=2), alpha) == 1.0   # within the 0.008 x diagonal tolerance
    empty = np.zeros_like(alpha)
    assert mask_iou(empty, empty) == 1.0 and mask_iou(empty, alpha) == 0.0 and boundary_f(empty, alpha) == 0.0
    with pytest.raises(ShapeError):
        mask_iou(alpha[:2], alpha)


def test_masked_psnr_only_counts_the_mask():
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    test = reference.copy()
    mask = np.zeros((3, 16, 16), bool)
    mask[:, 4:8, 4:8] = True
    test[~mask] = 0                                   # damage outside the mask does not count
    assert masked_psnr(reference, test, mask) == math.inf
    test[mask] = np.clip(reference[mask].astype(int) + 5, 0, 255)
    assert masked_psnr(reference, test, mask) == pytest.approx(20 * math.log10(255 / 5), abs=0.3)
    with pytest.raises(ShapeError, match="empty"):
        masked_psnr(reference, test, np.zeros_like(mask))


def test_median_baseline_works_on_an_easy_clip_and_is_beaten_on_a_slow_one():
    frames, alpha, background = moving_subject_clip(count=24, speed=3.0)
    clip = SplitClip(frames, 25)
    segmentation = get_backend("segmenter", "median").segment(clip)
    assert segmentation.found and mask_iou(segmentation.alpha, alpha) > 0.7
    restored = get_backend("restorer", "median").restore(clip, alpha)
    assert np.array_equal(restored[alpha == 0], frames[alpha == 0])  # only the (grown) hole changes
    slow, slow_alpha, _ = moving_subject_clip(count=24, speed=0.5)
    slow_clip = SplitClip(slow, 25)
    baseline = mask_iou(get_backend("segmenter", "median").segment(slow_clip).alpha, slow_alpha)
    ours = mask_iou(get_backend("segmenter", "motion").segment(slow_clip).alpha, slow_alpha)
    assert ours > baseline + 0.1


def test_colour_names_follow_lab():
    assert colour_name([50, 70, 55]) == "red"
    assert colour_name([60, 0, 0]) == "grey" and colour_name([95, 1, 2]) == "white"
    assert colour_name([10, 2, 2]) == "black"
    assert colour_name([50, -40, 40]) in ("green", "yellow-green")
    assert colour_name([40, 10, -60]) == "blue"
    assert colour_name([35, 20, 40]) == "brown"


def test_motion_and_camera_words():
    frames = np.arange(25)
    track = np.stack([np.linspace(0, 120, 25), np.full(25, 50.0)], axis=1)
    areas = np.full(25, 0.05)
    assert describe_motion(frames, track, areas, 240, 25) == "moves quickly to the right"
    assert describe_motion(frames, track[::-1] * 0.1, areas, 240, 25) == "moves slowly to the left"
    assert describe_motion(frames, np.zeros((25, 2)), areas, 240, 25) == "stays in place"
    growing = np.linspace(0.02, 0.08, 25)
    assert "towards the camera" in describe_motion(frames, np.zeros((25, 2)), growing, 240, 25)
    still = {"pan_x": 0.0, "pan_y": 0.0, "zoom": 1.0, "rotation": 0.0, "shake": 0.1}
    assert describe_camera(still, 240, 360) == "The camera is still."
    assert describe_camera({**still, "pan_x": -40.0}, 240, 360) == "The camera pans right."
    assert describe_camera({**still, "zoom": 1.2, "shake": 2.0}, 240, 360) == "The handheld camera zooms in."


def test_measured_caption_describes_what_it_measured():
    frames, alpha, _ = moving_subject_clip(count=24, camera="pan", speed=3.0)
    caption = get_backend("captioner", "measured").describe(SplitClip(frames, 25), alpha)
    assert caption.startswith("A ") and "subject" in caption
    assert "moves" in caption and "to the right" in caption      # 3 px/frame right in the scene
    assert "pans" in caption                                       # the view slides right
    assert "scene" in caption
    # Only colour words, sizes and motions: no object nouns slip in.
    for noun in ("person", "man", "car", "cat", "dog", "ball"):
        assert f" {noun} " not in f" {caption} "

