"""The Split stage: camera motion, the motion segmenter, the propagate restorer, filters, the pipeline, the CLI."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest

import splitmerge as sm
from splitmerge.cli import main
from splitmerge.eval import psnr
from splitmerge.decompose import filters
from splitmerge.decompose.backends import SplitClip, describe_backends, get_backend
from splitmerge.decompose.camera import estimate_camera
from splitmerge.decompose.pipeline import NoSubjectError, split, split_to_folder
from splitmerge.video.cuts import find_cuts

from conftest import moving_subject_clip, pattern_frames


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    scores = []
    for p, t in zip(pred > 0.5, truth > 0.5, strict=True):
        union = (p | t).sum()
        scores.append(1.0 if union == 0 else (p & t).sum() / union)
    return float(np.mean(scores))


@pytest.fixture(scope="module")
def clips():
    return {camera: moving_subject_clip(camera=camera) for camera in ("static", "pan", "none")}


def write_clip(path, frames, fps=25):
    sm.write_video(path, sm.Video(frames, fps), crf=12)
    return path


def test_camera_motion_recovers_a_pan(clips):
    frames, _, _ = clips["pan"]
    camera = estimate_camera(frames)
    # The view slides 1.5 px right per frame: the scene moves 1.5 px left in the image.
    shifts = camera.forward[:, 0, 2]
    assert np.median(shifts) == pytest.approx(-1.5, abs=0.1)
    assert np.allclose(camera.forward[:, :2, :2], np.eye(2), atol=0.01)
    assert camera.summary(25)["pan_x"] == pytest.approx(-37.5, abs=3)
    assert np.allclose(camera.between(3, 3), np.eye(3))
    still = estimate_camera(clips["static"][0])
    assert np.abs(still.forward[:, :2, 2]).max() < 0.2


def test_a_tripod_shot_over_a_flat_scene_is_still_and_a_small_shake_is_not(clips, monkeypatch):
    """Over the rocket photo's mostly flat sky a walking subject's flow spills into the sky and the fitted
    homographies drift by a pixel or two (0.8 px median corner shift before `snap_aligned`); comparing the pixels
    shows the tripod never moved. A 1.5 px/frame pan, a handheld shake and a shake of a pixel (every frame within
    `snap_aligned`'s 3 px, so the pixel comparison decides) keep their maps."""
    from dataclasses import replace

    from splitmerge.eval import split_truth
    from splitmerge.eval.split_truth import BENCHMARK_CASES, render_case

    cases = {case.name: case for case in BENCHMARK_CASES}
    tripod = render_case(replace(cases["static-walk"], frames=25))
    assert all(np.array_equal(matrix, np.eye(3)) for matrix in estimate_camera(tripod.frames).to_reference)
    handheld = render_case(replace(cases["handheld-walk"], frames=25))
    shaken = estimate_camera(handheld.frames).to_reference
    assert sum(np.array_equal(matrix, np.eye(3)) for matrix in shaken) <= 2
    monkeypatch.setattr(split_truth, "SHAKE_PX", 1.0)        # corners move 1.5 px at most
    monkeypatch.setattr(split_truth, "SHAKE_DEGREES", 0.2)
    trembling = estimate_camera(render_case(replace(cases["handheld-walk"], frames=25)).frames).to_reference
    assert sum(np.array_equal(matrix, np.eye(3)) for matrix in trembling) <= 2
    # A phone held in a car: a few frames near the reference align as well unmoved, but the camera moves (up to
    # 6 px), so stillness, decided for the clip, snaps none (frame by frame, 6 of 49 snapped at random).
    phone = estimate_camera(sm.read_video(sm.sample_path("carphone"), max_frames=49).frames).to_reference
    assert sum(np.array_equal(matrix, np.eye(3)) for matrix in phone) == 1
    panned = estimate_camera(clips["pan"][0]).to_reference
    assert sum(np.array_equal(matrix, np.eye(3)) for matrix in panned) == 1   # the reference only
    from splitmerge.decompose.camera import snap_aligned

    flat = np.tile(np.eye(3), (5, 1, 1))
    flat[0, 0, 2] = 1.0   # a blank frame has nothing to compare: its map stays
    assert np.array_equal(snap_aligned(np.full((5, 40, 60), 128, np.uint8), flat, 2), flat)


def test_long_range_motion_does_not_spill_into_a_flat_scene():
    """Across `LONG_GAP` frames the flow of a subject walking over the rocket photo's flat sky spilled into the
    sky around it: 1109 px per frame farther than 10 px from the subject and its shadow before
    `looks_the_same`, 138 with it (what never changes between the frames is not motion)."""
    from dataclasses import replace

    from splitmerge.decompose.motion import LONG_MOTION_MIN, motion_evidence
    from splitmerge.eval.split_truth import HARD_CASES, render_case

    truth = render_case(replace({case.name: case for case in HARD_CASES}["nonrigid-shadow"], frames=25))
    near = np.stack([cv2.dilate(((alpha > 0.01) | (gain < 0.99)).astype(np.uint8), np.ones((21, 21), np.uint8))
                     for alpha, gain in zip(truth.alpha, truth.effects, strict=True)]) > 0
    _, long = motion_evidence(SplitClip(truth.frames, truth.fps))
    assert (long[~near] > LONG_MOTION_MIN).sum() / len(long) < 400
    assert (long[truth.alpha > 0.9] > LONG_MOTION_MIN).mean() > 0.8   # the subject itself still moves (0.95)


@pytest.mark.parametrize("camera", ["static", "pan"])
def test_motion_segmenter_finds_the_subject(clips, camera):
    frames, alpha, _ = clips[camera]
    segmentation = get_backend("segmenter", "motion").segment(SplitClip(frames, 25))
    assert segmentation.found
    assert iou(segmentation.alpha, alpha) > 0.85
    assert segmentation.alpha.dtype == np.float32 and 0 <= segmentation.alpha.min() <= segmentation.alpha.max() <= 1
    soft = (segmentation.alpha > 0) & (segmentation.alpha < 1)
    assert soft.any()  # a soft edge, not a binary cut-out
    assert not np.isnan(segmentation.boxes).any() and len(segmentation.points) == len(frames)


def test_motion_segmenter_reports_a_static_scene(clips):
    frames, _, _ = clips["none"]
    segmentation = get_backend("segmenter", "motion").segment(SplitClip(frames, 25))
    assert not segmentation.found and segmentation.reason == "no moving subject found"
    assert segmentation.alpha.max() == 0 and np.isnan(segmentation.boxes).all()


def test_motion_segmenter_all_objects_keeps_both_subjects():
    first, alpha_a, _ = moving_subject_clip(camera="static", seed=1)
    second, alpha_b, _ = moving_subject_clip(camera="static", seed=1, speed=-2.0)
    # Left half from one clip, right half from a mirrored one: two subjects moving towards each other.
    frames = first.copy()
    frames[:, :, 60:] = second[:, :, ::-1][:, :, 60:]
    alpha = np.maximum(alpha_a * (np.arange(108) < 60), alpha_b[:, :, ::-1] * (np.arange(108) >= 60))
    one = get_backend("segmenter", "motion").segment(SplitClip(frames, 25))
    both = get_backend("segmenter", "motion", all_objects=True).segment(SplitClip(frames, 25))
    assert both.info["kept"] >= 2 > one.info["kept"] - 0
    assert iou(both.alpha, alpha) > iou(one.alpha, alpha) + 0.2


def test_propagate_restorer_fills_from_other_frames_and_keeps_the_rest(clips):
    frames, alpha, background = clips["pan"]
    clip = SplitClip(frames, 25)
    restored = get_backend("restorer", "propagate").restore(clip, alpha)
    hole = alpha > 0.01
    assert psnr(background[hole], restored[hole]) > 28
    far = np.stack([~np.any(restored[t] != frames[t], axis=-1) for t in range(len(frames))])
    grown = np.stack([cv2.dilate(h.astype(np.uint8), np.ones((25, 25), np.uint8)) > 0 for h in hole])
    assert far[~grown].mean() > 0.99  # outside the hole and its feathered edge, pixels are untouched
    # No flicker: the filled region is the same scene point from frame to frame (the plate is shared).
    static_frames, static_alpha, static_background = clips["static"]
    still = get_backend("restorer", "propagate").restore(SplitClip(static_frames, 25), static_alpha)
    assert np.abs(np.diff(still.astype(int), axis=0)).max() <= 2


def test_filters_name_the_failing_rule():
    assert filters.verdict(True, 0.1, 0.9) == {"passed": True, "reason": "", "fg_ratio": 0.1, "presence": 0.9}
    assert filters.verdict(False, 0.0, 0.0)["reason"] == "no moving subject"
    assert "outside [0.01, 0.45]" in filters.verdict(True, 0.6, 1.0)["reason"]
    assert "present in 50% of frames" in filters.verdict(True, 0.1, 0.5)["reason"]
    alpha = np.zeros((4, 100, 100), np.float32)
    alpha[:3, :10, :10] = 1  # 1% of the frame in three frames
    assert filters.present_frames(alpha).tolist() == [True, True, True, False]


def test_split_api_returns_layers_with_provenance(tmp_path, clips):
    frames, alpha, background = clips["pan"]
    path = write_clip(tmp_path / "pan.mp4", frames)
    layers = split(path, caption="a striped disc")
    assert layers.frames.shape == frames.shape and layers.caption == "a striped disc"
    assert iou(layers.alpha, alpha) > 0.8
    assert np.array_equal(layers.foreground, sm.premultiply(layers.frames, layers.alpha))
    meta = layers.meta
    assert meta["source"]["sha1"] and meta["source"]["path"] == str(path)
    assert meta["backends"]["segmenter"]["name"] == "motion" and meta["backends"]["restorer"]["name"] == "propagate"
    assert set(meta["seconds"]) >= {"read", "segment", "restore", "write"}
    assert meta["filters"]["passed"] and meta["filters"]["presence"] == 1.0


def test_split_to_folder_streams_windows_into_a_layers_folder(tmp_path, clips):
    frames, alpha, _ = clips["static"]
    path = write_clip(tmp_path / "static.mp4", frames)
    meta = split_to_folder(path, tmp_path / "layers", caption="disc", window=12, overlap=4)
    assert meta["split"]["windows"] == 3 and meta["num_frames"] == len(frames)
    layers = sm.Layers.load(tmp_path / "layers")
    assert layers.num_frames == len(frames)
    assert iou(layers.alpha, alpha) > 0.8  # windows stitched without losing the subject
    header = json.loads((tmp_path / "layers" / "layers.json").read_text())
    assert header["filters"]["passed"] and header["caption"] == "disc"


def test_split_refuses_static_tiny_and_short_videos_cleanly(tmp_path, clips):
    static = write_clip(tmp_path / "static.mp4", clips["none"][0])
    with pytest.raises(NoSubjectError, match="no moving subject"):
        split_to_folder(static, tmp_path / "out", caption="x")
    assert not (tmp_path / "out").exists()
    tiny = write_clip(tmp_path / "tiny.mp4", pattern_frames(12, 16, 16))
    with pytest.raises(sm.MediaError, match="too small to split"):
        split(tiny, caption="x")
    short = write_clip(tmp_path / "short.mp4", pattern_frames(3, 64, 64))
    with pytest.raises(sm.MediaError, match="3 frame"):
        split(short, caption="x")
    with pytest.raises(sm.OptionError, match="segmenter 'nope'"):
        split(static, segmenter="nope", caption="x")


def test_split_handles_an_all_motion_video_with_a_reason(tmp_path):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(16, 64, 96, 3), dtype=np.uint8)  # every pixel changes every frame
    path = write_clip(tmp_path / "noise.mp4", noise)
    try:
        layers = split(path, caption="noise")
        assert not layers.meta["filters"]["passed"] and layers.meta["filters"]["reason"]
    except NoSubjectError as error:
        assert "no moving subject" in str(error)


def test_scene_cuts_are_found_and_split_never_crosses_them(tmp_path, clips):
    frames, _, _ = clips["pan"]
    other = pattern_frames(14, 72, 108)  # a different shot: smooth gradients, other colours
    joined = np.concatenate([frames[:14], other])
    assert find_cuts(joined) == [14]
    path = write_clip(tmp_path / "cut.mp4", joined)
    meta = split(path, caption="cut", window=64).meta
    assert meta["split"]["windows"] == 2  # one per shot, although the window could hold both


def test_cli_split(tmp_path, clips, capsys):
    path = write_clip(tmp_path / "pan.mp4", clips["pan"][0])
    assert main(["split", str(path), "-o", str(tmp_path / "layers"), "--caption", "disc"]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "filters passed" in out
    assert sm.Layers.load(tmp_path / "layers").caption == "disc"
    static = write_clip(tmp_path / "static.mp4", clips["none"][0])
    assert main(["split", str(static), "-o", str(tmp_path / "none"), "--caption", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no moving subject" in err[0] and not (tmp_path / "none").exists()


def test_split_help_lists_backends_with_availability(capsys):
    with pytest.raises(SystemExit):
        main(["split", "--help"])
    text = capsys.readouterr().out
    assert "segmenter  motion" in text and "restorer   propagate" in text
    rows = {(r["kind"], r["name"]): r for r in describe_backends()}
    assert rows[("segmenter", "motion")]["available"]


def test_cli_split_sets_backend_options_and_rejects_bad_ones(tmp_path, clips, capsys):
    path = write_clip(tmp_path / "in.mp4", clips["static"][0])
    out = tmp_path / "layers"
    assert main(["split", str(path), "-o", str(out), "--caption", "a disc", "--set", "propagate.dilation=8",
                 "--set", "motion.motion_threshold=1.0"]) == 0
    backends = json.loads((out / "layers.json").read_text())["backends"]
    assert backends["restorer"]["dilation"] == 8
    capsys.readouterr()
    for bad, message in ((["--set", "propagate.nonsense=1"], "unknown option(s) nonsense"),
                         (["--set", "sam2.key_every=4"], "backend 'sam2' is not used"),
                         (["--set", "dilation=8"], "expected BACKEND.KEY=VALUE")):
        target = tmp_path / "bad"
        assert main(["split", str(path), "-o", str(target), "--caption", "x", *bad]) == 2
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1
        assert not target.exists()


# ------------------------------------------------------------------------------------------ choosing the subject


def two_movers_clip(count: int = 24, height: int = 72, width: int = 108, seed: int = 2):
    """Two striped discs over a smooth random texture: a large one on the left moving right and a smaller one on
    the right moving down (1.5 px/frame each); they stay more than 10 px apart.

    Returns (frames (T, H, W, 3) uint8, left disc's alpha (T, H, W) float32, right disc's alpha)."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, size=(height // 4 + 2, width // 4 + 2, 3)).astype(np.float32)
    scene = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    scene = np.clip(cv2.GaussianBlur(scene, (0, 0), 1.0) * 0.8 + 25, 0, 255)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    frames, alphas = [], ([], [])
    for t in range(count):
        frame = scene.copy()
        for (cx, cy, radius), alpha_list in zip(((0.2 * width + 1.5 * t, 0.5 * height, 12.0),
                                                 (0.82 * width, 0.2 * height + 1.5 * t, 10.0)), alphas, strict=True):
            alpha = np.clip(radius - np.hypot(xs - cx, ys - cy) + 0.5, 0, 1).astype(np.float32)
            stripes = np.where(((xs - cx) // 4) % 2 == 0, 230.0, 40.0)
            subject = np.stack([stripes, 200 - stripes * 0.5, 255 - stripes], axis=-1)
            frame = subject * alpha[..., None] + frame * (1 - alpha[..., None])
            alpha_list.append(alpha)
        frames.append(np.clip(np.rint(frame), 0, 255).astype(np.uint8))
    return np.stack(frames), np.stack(alphas[0]), np.stack(alphas[1])


@pytest.fixture(scope="module")
def two_movers():
    return two_movers_clip()


def covers(alpha: np.ndarray, truth: np.ndarray) -> float:
    """The share of `truth`'s pixels (over the clip) inside the matte `alpha`."""
    return float(((alpha > 0.5) & (truth > 0.5)).sum() / (truth > 0.5).sum())


@pytest.mark.parametrize("chosen, pick", [
    (0, {"point": (0.2, 0.5)}), (1, {"point": (0.82, 0.2)}),
    (0, {"box": (0.05, 0.3, 0.35, 0.75)}), (1, {"box": [0.7, 0.0, 0.98, 0.45]}),
])
def test_split_keeps_the_picked_mover_and_leaves_the_other_in_the_background(two_movers, chosen, pick):
    frames, *truths = two_movers
    layers = split(sm.Video(frames, 25), caption="a disc", **pick)
    assert iou(layers.alpha, truths[chosen]) >= 0.8
    assert covers(layers.alpha, truths[1 - chosen]) < 0.05
    subject = layers.meta["split"]["subject"]
    name = "point" if "point" in pick else "box"
    assert subject["chosen_by"] == name and subject[name] == list(pick[name]) and subject["found_at_frame"] == 0
    assert layers.meta["split"]["config"][name] == pytest.approx(pick[name])


def test_a_picked_subject_is_followed_across_windows(tmp_path, two_movers):
    frames, left, right = two_movers  # the right disc is the smaller: not the one chosen without a pick
    meta = split_to_folder(sm.Video(frames, 25), tmp_path / "layers", caption="disc", point=(0.82, 0.2),
                           window=16, overlap=4)
    assert meta["split"]["windows"] == 2
    header = json.loads((tmp_path / "layers" / "layers.json").read_text())
    assert header["backends"]["segmenter"]["pick"] == {"point": [0.82, 0.2]}
    assert header["extra"]["split"]["subject"] == {"chosen_by": "point", "point": [0.82, 0.2], "found_at_frame": 0}
    alpha = sm.Layers.load(tmp_path / "layers").alpha
    assert covers(alpha, left) < 0.05  # the other mover never enters, in either window
    # The second window (12 frames, short for a small disc) is rougher, but it follows the same disc.
    assert iou(alpha[:12], right[:12]) >= 0.7 and covers(alpha[12:], right[12:]) > 0.3


def test_without_a_pick_the_dominant_mover_is_kept(two_movers):
    frames, left, right = two_movers
    layers = split(sm.Video(frames, 25), caption="a disc")
    assert layers.meta["split"]["subject"] == {"chosen_by": "motion"}
    assert iou(layers.alpha, left) >= 0.8 and covers(layers.alpha, right) < 0.05


def test_a_pick_on_the_static_background_is_refused(tmp_path, two_movers):
    frames = two_movers[0]
    with pytest.raises(NoSubjectError, match=r"nothing moves at the point \(0.50, 0.90\)") as caught:
        split_to_folder(sm.Video(frames, 25), tmp_path / "out", caption="x", point=(0.5, 0.9))
    assert "\n" not in str(caught.value) and not (tmp_path / "out").exists()


@pytest.mark.parametrize("options, message", [
    ({"point": (2, 2)}, "fraction of the frame in [0, 1]"),
    ({"point": (0.5, float("nan"))}, "fraction of the frame in [0, 1]"),
    ({"point": (0.5,)}, "expected 2 fractions"),
    ({"point": "0.2,0.5"}, "is not list or None"),
    ({"point": (True, 0.5)}, "fraction of the frame"),
    ({"box": (0.5, 0.1, 0.2, 0.9)}, "needs x0 < x1 and y0 < y1"),
    ({"box": (0.1, 0.1, 0.2, 1.5)}, "fraction of the frame in [0, 1]"),
    ({"box": (0.1, 0.1, 0.2)}, "expected 4 fractions"),
    ({"point": (0.2, 0.5), "box": (0.1, 0.1, 0.3, 0.9)}, "not both"),
    ({"point": (0.2, 0.5), "all_objects": True}, "all_objects keeps every mover"),
    ({"point": (0.2, 0.5), "segmenter": "median"}, "segmenter 'median' cannot choose a subject"),
])
def test_bad_picks_are_option_errors(two_movers, options, message):
    with pytest.raises(sm.OptionError, match=re.escape(message)) as caught:
        split(sm.Video(two_movers[0], 25), caption="x", **options)
    assert "\n" not in str(caught.value)


def test_cli_split_point(tmp_path, two_movers, capsys):
    frames, left, right = two_movers
    path = write_clip(tmp_path / "two.mp4", frames)
    assert main(["split", str(path), "-o", str(tmp_path / "layers"), "--caption", "disc", "--point", "0.82,0.2"]) == 0
    layers = sm.Layers.load(tmp_path / "layers")
    assert iou(layers.alpha, right) >= 0.7 and covers(layers.alpha, left) < 0.05
    capsys.readouterr()
    for bad, message in ((["--point", "2,2"], "fraction of the frame in [0, 1]"),
                         (["--point", "0.2"], "expected 2 comma-separated fractions"),
                         (["--box", "0.1,0.2,0.3"], "expected 4 comma-separated fractions"),
                         (["--point", "0.2,0.5", "--all-objects"], "all_objects keeps every mover"),
                         (["--point", "0.5,0.9"], "nothing moves at the point (0.50, 0.90)")):
        target = tmp_path / "bad"
        assert main(["split", str(path), "-o", str(target), "--caption", "x", *bad]) == 2
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1 and not target.exists()
