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
from splitmerge.eval import split_truth
from splitmerge.eval.metrics import (effects_psnr, matte_debris, matte_flicker, matte_see_through, plate_psnr,
                                     shadow_leak, soft_edge_gradient_error, soft_edge_mae, soft_edge_sad)
from splitmerge.eval.split_truth import BENCHMARK_CASES, HARD_CASES, TruthCase, render_case
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



# Hard cases (issue 17): non-rigid, long stop, soft shadow, other movers, a moving real world, soft edges.


def _noiseless(monkeypatch, case):
    monkeypatch.setattr(split_truth, "NOISE_SIGMA", 0.0)
    return render_case(case)


def test_hard_cases_mix_every_ingredient():
    assert len(HARD_CASES) >= 6 and all(case.frames == 49 and case.size == (240, 360) for case in HARD_CASES)
    assert any(case.warp for case in HARD_CASES) and any(case.path == "stop" for case in HARD_CASES)
    assert any(case.shadow for case in HARD_CASES) and any(case.movers for case in HARD_CASES)
    assert any(case.background.startswith("video:") for case in HARD_CASES)
    assert any(case.motion_blur for case in HARD_CASES) and any(case.soft_edge for case in HARD_CASES)
    assert {case.camera for case in HARD_CASES} > {"static"}
    assert not {case.name for case in HARD_CASES} & {case.name for case in BENCHMARK_CASES}
    with pytest.raises(OptionError, match="shadow"):
        TruthCase("x", "photo:rocket", "cat", "static", "walk", shadow=1.0)


def test_shadow_darkens_only_the_background_and_is_recorded_apart(monkeypatch):
    case = TruthCase("s", "photo:rocket", "astronaut", "static", "walk", frames=6, shadow=0.45)
    truth = _noiseless(monkeypatch, case)
    gain = truth.effects
    assert gain.shape == truth.alpha.shape and gain.dtype == np.float32
    assert gain.max() == 1.0 and 0.0 < gain.min() and gain.min() == pytest.approx(0.55, abs=0.03)
    assert (gain == 1.0).mean() > 0.5                               # untouched away from the shadow
    shadow = (gain < 0.9) & (truth.alpha == 0)
    assert shadow.sum() > 500
    # frame = fg + (1 - alpha) * gain * plate, exactly (within rounding) wherever the subject is absent.
    outside = truth.alpha == 0
    expected = gain[..., None] * truth.background.astype(np.float64)
    assert np.abs(truth.frames[outside] - expected[outside]).max() <= 0.5 + 1e-3
    assert (truth.frames[shadow].astype(float) < truth.background[shadow] - 5).mean() > 0.7  # it is dark there
    plain = render_case(replace(case, shadow=0.0))
    assert np.array_equal(plain.effects, np.ones_like(gain))     # no shadow: gain 1 everywhere
    assert np.array_equal(plain.background, truth.background) and np.array_equal(plain.alpha, truth.alpha)


def test_other_movers_belong_to_the_plate_not_the_matte():
    case = TruthCase("m", "photo:rocket", "astronaut", "static", "walk", frames=6, movers=("cup",))
    truth, alone = render_case(case), render_case(replace(case, movers=()))
    assert np.array_equal(truth.alpha, alone.alpha)                 # not in the matte
    changed = np.abs(truth.background.astype(int) - alone.background).max(axis=-1) > 10
    assert changed[0].sum() > 1000                                  # but in the true plate...
    xs = [np.nonzero(frame)[1].mean() for frame in changed]
    assert xs[-1] < xs[0] - 5                                       # ... and walking (right to left)
    assert np.abs(truth.frames.astype(float) - truth.background)[truth.alpha == 0].mean() < 2.0


def test_moving_real_world_moves_by_itself():
    case = TruthCase("v", "video:bikes@137", "cup", "static", "walk", frames=8)
    truth = render_case(case)
    assert truth.background.shape == (8, 240, 360, 3)
    assert np.abs(truth.background[-1].astype(int) - truth.background[0]).mean() > 2   # a still camera, yet moving
    with pytest.raises(OptionError, match="only"):
        render_case(replace(case, background="video:bikes@245"))


def test_long_stop_holds_still_and_a_non_rigid_subject_changes_shape():
    case = TruthCase("n", "photo:rocket", "cup", "static", "stop", frames=30)
    rigid = render_case(case)
    still = range(10, 20)                                           # 40% of the clip stands still (eased ends)
    assert all(np.array_equal(rigid.alpha[t], rigid.alpha[10]) for t in still)
    assert not np.array_equal(rigid.alpha[2], rigid.alpha[3])       # it walks before
    bent = render_case(replace(case, warp=0.12))
    shapes = [mask_iou(bent.alpha[t][None], bent.alpha[10][None]) for t in still]
    assert min(shapes) < 0.93                                       # standing still, it still bends and stretches
    assert abs(bent.alpha.mean() - rigid.alpha.mean()) < 0.2 * rigid.alpha.mean()   # same subject, same place
    rows = [np.nonzero(frame.any(axis=1))[0] for frame in bent.alpha[10:20] > 0.5]
    bottoms, tops = [r.max() for r in rows], [r.min() for r in rows]
    assert max(bottoms) - min(bottoms) <= 5 < max(tops) - min(tops)   # deformed about its feet


def test_motion_blur_and_soft_edges_widen_the_true_soft_rim(monkeypatch):
    case = TruthCase("b", "photo:rocket", "cat", "static", "fast", frames=6)
    sharp = render_case(case)
    blurred = _noiseless(monkeypatch, replace(case, motion_blur=1.0, soft_edge=1.0))

    def soft(alpha):
        return ((alpha > 0.01) & (alpha < 0.99)).sum()

    assert soft(blurred.alpha) > 1.5 * soft(sharp.alpha)
    assert blurred.alpha.max() == pytest.approx(1.0, abs=1e-4) and blurred.alpha.min() == 0.0
    assert np.abs(blurred.alpha.mean() - sharp.alpha.mean()) < 0.1 * sharp.alpha.mean()
    outside = blurred.alpha == 0
    assert np.abs(blurred.frames[outside].astype(float) - blurred.background[outside]).max() <= 0.5 + 1e-3
    again = _noiseless(monkeypatch, replace(case, motion_blur=1.0, soft_edge=1.0))
    assert np.array_equal(again.frames, blurred.frames)


def test_hard_case_metrics_on_hand_made_arrays():
    alpha_true = np.zeros((2, 8, 8), np.float32)
    alpha_true[:, 2:6, 2:6] = 1.0
    alpha_true[:, 2:6, 6] = 0.5                                     # a soft column of 4 px per frame
    gain = np.ones_like(alpha_true)
    gain[:, 7, :] = 0.5                                             # 8 shadow px per frame, out of the subject
    estimate = (alpha_true > 0.25).astype(np.float32)                 # the soft column as 1
    assert shadow_leak(estimate, alpha_true, gain) == 0.0
    estimate_leaky = estimate.copy()
    estimate_leaky[:, 7, :2] = 1.0                                  # covers 2 of 8
    assert shadow_leak(estimate_leaky, alpha_true, gain) == pytest.approx(0.25)
    assert math.isnan(shadow_leak(estimate, alpha_true, np.ones_like(gain)))
    assert soft_edge_sad(estimate, alpha_true) == pytest.approx(2.0)   # 4 px x 0.5 per frame
    assert soft_edge_mae(estimate, alpha_true) == pytest.approx(0.5)
    assert soft_edge_sad(alpha_true, alpha_true) == 0.0 and soft_edge_gradient_error(alpha_true, alpha_true) == 0
    assert soft_edge_gradient_error(estimate, alpha_true) > 0
    assert math.isnan(soft_edge_sad(estimate, estimate))             # a hard truth has no soft edge
    # Flicker: an offset matte that follows the truth does not flicker; a blinking one does, by its share.
    assert matte_flicker(np.clip(alpha_true + 0.1, 0, 1), alpha_true) == 0.0
    blinking = np.stack([alpha_true[0], alpha_true[1], alpha_true[0]])
    blinking[1, 0, :] = 1.0                                         # 8 of 64 px switch on for one frame
    assert matte_flicker(blinking, np.stack([alpha_true[0]] * 3)) == pytest.approx(8 / 64)
    # Debris: matte mass more than 2 px outside the true matte, over the true mass (18 per frame).
    assert matte_debris(alpha_true, alpha_true) == 0.0
    glowing = alpha_true.copy()
    glowing[:, 0, 2:7] = 0.25                                       # a glow 2 px above the subject ...
    assert matte_debris(glowing, alpha_true) == 0.0                 # ... is within the margin
    far = np.zeros((2, 20, 20), np.float32)
    far[:, 2:6, 2:6] = 1.0
    far_glow = far.copy()
    far_glow[:, 15:17, 10:14] = 0.5                                 # a faint piece of scenery far away: 4 of 16
    assert matte_debris(far_glow, far) == pytest.approx(0.25)
    assert math.isnan(matte_debris(far, np.zeros_like(far)))
    # See-through: 1 - mean alpha where the truth is solid (16 px per frame); the soft column does not count.
    assert matte_see_through(alpha_true, alpha_true) == 0.0
    holed = alpha_true.copy()
    holed[:, 3, 3] = 0.0                                            # a hole of 1 of 16 solid px
    holed[:, 4, 4] = 0.5                                            # and a half-solid pixel
    assert matte_see_through(holed, alpha_true) == pytest.approx(1.5 / 16)
    assert math.isnan(matte_see_through(holed, np.zeros_like(alpha_true)))
    # Plate PSNR counts the subject and the shadow; effects PSNR the shadow only, a missing layer being 1.
    rng = np.random.default_rng(1)
    plate = rng.integers(10, 240, (2, 8, 8, 3), dtype=np.uint8)
    estimate_plate = plate.copy()
    estimate_plate[:, 7] += 5                                       # the shadow row off by 5
    assert plate_psnr(plate, estimate_plate, alpha_true, gain) == pytest.approx(
        10 * math.log10(255 ** 2 / (25 * 8 / (16 + 4 + 8))), abs=1e-6)
    assert plate_psnr(plate, estimate_plate, alpha_true) == math.inf   # without the gain: the subject only
    assert effects_psnr(gain, None, alpha_true) == pytest.approx(20 * math.log10(255 / 127.5))
    assert effects_psnr(gain, gain, alpha_true) == math.inf
    assert math.isnan(effects_psnr(np.ones_like(gain), None, alpha_true))
    with pytest.raises(ShapeError):
        shadow_leak(estimate[:1], alpha_true, gain)
