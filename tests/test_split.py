"""The Split stage: camera motion, the motion segmenter, the propagate restorer, filters, the pipeline, the CLI."""

from __future__ import annotations

import json

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
