"""The matting stage: its training material, the network, its training and its place in the split pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import splitmerge as sm
from splitmerge.cli import main
from splitmerge.data.cutouts import CLIP_CUTOUTS, load_cutout, procedural_cutout
from splitmerge.data.matting_data import (ARRAYS, BENCHMARK_MATERIAL, _check_disjoint, examples_from_case,
                                          generate, load_shards, training_case)
from splitmerge.decompose.matting import BUNDLED, NetMatting, subject_box
from splitmerge.decompose.matting_net import (GAIN_MIN, MULTIPLE, MattingConfig, MattingNet, load_matting,
                                              save_matting)
from splitmerge.decompose.matting_train import PatchSampler, matting_loss, train_matting
from splitmerge.decompose.pipeline import split
from splitmerge.decompose.restore import extend_hole
from splitmerge.errors import LayersFormatError, MissingFileError, OptionError, ShapeError
from splitmerge.eval.split_truth import HARD_CASES, TruthCase

from conftest import moving_subject_clip


def test_procedural_cutouts_are_exact_varied_and_repeatable():
    first, again, other = procedural_cutout(3), procedural_cutout(3), procedural_cutout(4)
    assert np.array_equal(first.rgb, again.rgb) and np.array_equal(first.alpha, again.alpha)
    assert first.alpha.shape != other.alpha.shape or not np.array_equal(first.alpha, other.alpha)
    assert first.alpha.min() == 0 and first.alpha.max() == pytest.approx(1.0, abs=0.01)
    assert ((first.alpha > 0) & (first.alpha < 1)).any()  # an anti-aliased, soft edge
    assert load_cutout("shape:3").name == "shape:3"
    with pytest.raises(OptionError, match="shape:SEED"):
        load_cutout("shape:x")


def test_clip_cutouts_are_real_subjects_cut_from_the_sample_clips():
    cutout = load_cutout("man-30")
    assert cutout.rgb.shape[:2] == cutout.alpha.shape and cutout.alpha.max() == pytest.approx(1.0, abs=0.01)
    assert 0.3 < (cutout.alpha > 0.5).mean() < 0.95  # an object, not its whole box
    assert np.array_equal(load_cutout("man-30").alpha, cutout.alpha)


def test_training_material_never_touches_the_benchmark():
    real = 0
    for index in range(300):
        case = training_case(index, seed=5)
        real += case.subject in CLIP_CUTOUTS
        _check_disjoint(case)  # raises on any benchmark photo, clip or cut-out
        used = " ".join([case.background, case.subject, *case.movers])
        assert not any(f":{name}" in used or f"{name}@" in used for name in BENCHMARK_MATERIAL)
    assert 80 < real < 160  # REAL_SUBJECTS = 0.4 of the subjects are real
    assert training_case(7, seed=5, real_subjects=0.0).subject == "shape:500022"  # the rest of the recipe stays
    assert training_case(7, seed=5, real_subjects=0.0).background == training_case(7, seed=5).background
    with pytest.raises(OptionError, match="benchmark"):
        _check_disjoint(TruthCase("bad", "photo:rocket", "shape:1", "static", "walk"))
    with pytest.raises(OptionError, match="benchmark"):
        _check_disjoint(TruthCase("bad", "photo:moon", "astronaut", "static", "walk"))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("matting_shards")
    generate(folder, 3, seed=1, log=None)
    return folder


def test_examples_are_what_the_pipeline_gives_with_the_exact_answer(shards):
    arrays = load_shards(sorted(shards.glob("*.npz")))
    count = len(arrays["alpha"])
    assert count >= 12
    assert arrays["frame"].shape == (count, 240, 360, 3) and arrays["plate"].shape == (count, 240, 360, 3)
    for name in ARRAYS:
        assert arrays[name].dtype == np.uint8 and len(arrays[name]) == count
    assert (arrays["alpha"] > 128).any() and (arrays["coarse"] > 128).any()
    # The truth and the segmenter's matte overlap but differ: there is something to learn.
    truth, coarse = arrays["alpha"] > 128, arrays["coarse"] > 128
    iou = (truth & coarse).sum() / (truth | coarse).sum()
    assert 0.3 < iou < 0.99
    # generate is resumable: existing shards are kept as they are.
    before = {path.name: path.stat().st_mtime_ns for path in shards.glob("*.npz")}
    generate(shards, 3, seed=1, log=None)
    assert {path.name: path.stat().st_mtime_ns for path in shards.glob("*.npz")} == before


def test_a_clip_without_a_subject_gives_no_examples():
    case = TruthCase("still", "photo:moon", "shape:1", "static", "walk", frames=8, subject_height=0.0001)
    assert examples_from_case(case) is None


def test_the_network_maps_inputs_to_a_matte_and_a_gain_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = MattingNet(MattingConfig(widths=(4, 8, 8, 8))).eval()
    frame, plate = torch.rand(2, 3, 32, 48), torch.rand(2, 3, 32, 48)
    coarse = torch.rand(2, 1, 32, 48)
    with torch.no_grad():
        alpha, gain = model(frame, plate, coarse)
    assert alpha.shape == gain.shape == (2, 1, 32, 48)
    assert float(alpha.min()) >= 0 and float(alpha.max()) <= 1
    assert float(gain.min()) >= GAIN_MIN and float(gain.max()) <= 1
    with pytest.raises(ShapeError, match=str(MULTIPLE)):
        model(frame[..., :30, :], plate[..., :30, :], coarse[..., :30, :])
    save_matting(model, tmp_path / "m", {"note": "test"})
    loaded = load_matting(tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(loaded(frame, plate, coarse)[0], alpha)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["note"] == "test"
    assert not list((tmp_path / "m").glob("*.pt")) and not list((tmp_path / "m").glob("*.bin"))


def test_a_damaged_matting_folder_is_a_clear_error(tmp_path):
    with pytest.raises(MissingFileError, match="matting.safetensors"):
        load_matting(tmp_path)
    save_matting(MattingNet(MattingConfig(widths=(4, 8, 8, 8))), tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text('{"widths": [4, 8]}')
    with pytest.raises(LayersFormatError, match="config.json"):
        load_matting(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text('{"widths": [8, 8, 8, 8]}')
    with pytest.raises(LayersFormatError, match="does not fit"):
        load_matting(tmp_path / "m")


def test_the_network_learns_to_find_what_differs_from_the_plate():
    """A few dozen steps on patches where the subject is exactly what differs from the plate: the loss falls by
    more than half. Seeds 0-5 on this machine fell to 0.03-0.17 of the start (worst 0.17, seed 5); the test runs
    seeds 0-2 (worst 0.16) and needs < 0.5."""
    rng = np.random.default_rng(0)
    plate = rng.integers(0, 255, (8, 32, 32, 3)).astype(np.uint8)
    alpha = np.zeros((8, 32, 32), np.uint8)
    alpha[:, 8:24, 10:22] = 255
    frame = plate.copy()
    frame[alpha > 0] = rng.integers(0, 255, (int((alpha > 0).sum()), 3))
    arrays = {"frame": frame, "plate": plate, "coarse": np.roll(alpha, 3, axis=2), "alpha": alpha,
              "gain": np.full_like(alpha, 255)}
    ratios = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = MattingNet(MattingConfig(widths=(8, 16, 16, 16)))
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        sampler = PatchSampler(arrays, patch=32, seed=seed)
        losses = []
        for _ in range(60):
            loss, _ = matting_loss(model, *sampler.batch(8))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        ratios.append(np.mean(losses[-5:]) / np.mean(losses[:5]))
    assert max(ratios) < 0.5, ratios


def test_train_matting_writes_a_loadable_model_and_its_record(shards, tmp_path):
    record = train_matting(shards, tmp_path / "model", steps=4, batch=2, widths=(4, 8, 8, 8), every=2, log=None)
    assert record["steps"] == 4 and record["held_out_clips"] >= 1
    assert {"J", "J_coarse", "sad", "gain_mae"} <= set(record["final"])
    load_matting(tmp_path / "model")
    curve = json.loads((tmp_path / "model" / "training.json").read_text())
    assert len(curve["checks"]) == 2


def test_subject_box_is_a_multiple_of_the_network_step_inside_the_frame():
    coarse = np.zeros((100, 150), np.float32)
    assert subject_box(coarse) is None
    coarse[40:50, 70:75] = 1
    top, bottom, left, right = subject_box(coarse, margin=10)
    assert (bottom - top) % MULTIPLE == 0 and (right - left) % MULTIPLE == 0
    assert 0 <= top <= 30 and bottom >= 60 and 0 <= left <= 60 and right >= 85 and bottom <= 100 and right <= 150
    coarse[:] = 0
    coarse[95:, 140:] = 1  # near the corner: the box stays inside the frame
    top, bottom, left, right = subject_box(coarse, margin=10)
    assert bottom == 100 and right == 150 and (bottom - top) % MULTIPLE == 0


def test_extend_hole_fills_only_where_the_final_matte_grew():
    frames = np.full((2, 40, 40, 3), 100, np.uint8)
    background = frames.copy()
    scene = np.full_like(frames, 30)
    coarse = np.zeros((2, 40, 40), np.float32)
    coarse[:, 10:20, 10:20] = 1
    alpha = coarse.copy()
    alpha[1, 10:20, 25:30] = 1  # frame 1: a limb the segmenter missed
    out = extend_hole(background, scene, coarse, alpha, dilation=1, feather=0.5)
    assert np.array_equal(out[0], background[0])
    assert (out[1, 15, 27] == 30).all() and (out[1, 15, 38] == 100).all()
    assert np.array_equal(out[1, 10:20, 10:20], background[1, 10:20, 10:20])  # the restorer's hole is kept
    effects = np.ones_like(coarse)
    effects[0, 30:35, 5:15] = 0.6  # frame 0: a shadow beyond the hole: the background there holds no shadow
    out = extend_hole(background, scene, coarse, coarse, effects, dilation=1, feather=0.5)
    assert (out[0, 32, 10] == 30).all() and (out[0, 5, 35] == 100).all() and np.array_equal(out[1], background[1])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("matting_model")
    torch.manual_seed(0)
    return save_matting(MattingNet(MattingConfig(widths=(4, 8, 8, 8))), folder)


def test_split_with_the_net_matting_gives_valid_layers(tiny_model, tmp_path):
    frames, _, _ = moving_subject_clip(count=16)
    options = {"net": {"model_path": str(tiny_model)}}
    layers = split(sm.Video(frames, 25), caption="a test", matting="net", backend_options=options)
    assert layers.alpha.dtype == np.float32 and 0 <= layers.alpha.min() and layers.alpha.max() <= 1
    assert layers.effects.min() >= GAIN_MIN and layers.effects.max() <= 1
    coarse = split(sm.Video(frames, 25), caption="a test", effects=False).alpha
    for t in range(len(coarse)):  # nothing changes outside the box around the segmenter's matte
        box = subject_box(coarse[t])
        outside = np.ones(coarse[t].shape, bool)
        outside[box[0]:box[1], box[2]:box[3]] = False
        assert (layers.alpha[t][outside] == 0).all() and (layers.effects[t][outside] == 1).all()
    assert layers.meta["backends"]["matting"] == {"name": "net", "model_path": "given"}
    assert "matting" in layers.meta["seconds"]
    version_1 = split(sm.Video(frames, 25), caption="a test", matting="net", backend_options=options,
                      effects=False)
    assert version_1.effects is None


def test_cli_split_matting_flags(tiny_model, tmp_path, capsys):
    frames, _, _ = moving_subject_clip(count=16)
    source = tmp_path / "clip.mp4"
    sm.write_video(source, sm.Video(frames, 25), crf=12)
    code = main(["split", str(source), "-o", str(tmp_path / "layers"), "--matting", "net",
                 "--matting-model", str(tiny_model), "--caption", "a test"])
    assert code == 0
    assert json.loads((tmp_path / "layers" / "layers.json").read_text())["backends"]["matting"]["name"] == "net"
    assert main(["split", str(source), "-o", str(tmp_path / "other"), "--matting", "nope"]) == 2
    assert "matting 'nope': unknown" in capsys.readouterr().err


BUNDLED_SHA256 = "601fa31b4ff17398a1e01a0a2c6b58c575d349b0ad1bcae9b26bc2149349be13"


def test_the_bundled_network_is_the_one_its_card_describes():
    import hashlib

    assert NetMatting.availability() == (True, "")
    digest = hashlib.sha256((BUNDLED / "matting.safetensors").read_bytes()).hexdigest()
    assert digest == BUNDLED_SHA256
    assert BUNDLED_SHA256 in (BUNDLED / "README.md").read_text()
    assert load_matting(BUNDLED).config.widths == (8, 16, 32, 64)


def test_the_bundled_network_improves_on_the_matte_it_is_given():
    """On the hard case with a non-rigid subject and its shadow (material the network never saw), the segmenter's
    matte with the shadow in it holds 0.795 of the shadow's pixels and the network's 0.081, at J 0.702 and 0.714
    on this machine (before stop 27 decided the segmenter's outline against the plate, the J gain was 0.090; the
    given matte is that much better now). The leak must halve and J not fall by 0.02 on any CPU."""
    from splitmerge.eval import mask_iou
    from splitmerge.eval.split_truth import render_case

    truth = render_case(HARD_CASES[0])
    video = sm.Video(truth.frames, truth.fps)
    learned = split(video, caption="a test", matting="net")
    given = split(video, caption="a test", effects=False)
    shadow = (truth.effects < 0.9) & (truth.alpha < 0.1)
    leak_learned, leak_given = (learned.alpha[shadow] > 0.5).mean(), (given.alpha[shadow] > 0.5).mean()
    assert leak_learned < 0.5 * leak_given, (leak_learned, leak_given)
    assert mask_iou(learned.alpha, truth.alpha) > mask_iou(given.alpha, truth.alpha) - 0.02
