"""Model-backed metric features (CLIP / DINOv2 identity, VideoMAE action distributions) with tiny random models
saved to local folders, as the real ones would be."""

from __future__ import annotations

import json

import numpy as np
import pytest

from splitmerge.data.synthetic import render_scene
from splitmerge.errors import MissingFileError
from splitmerge.eval.bench import make_bench
from splitmerge.eval.evaluate import evaluate
from splitmerge.eval.feature_models import ActionDistribution, ImageFeatures, LearnedFlow, model_metrics
from splitmerge.video.transforms import color_jitter

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("feature-models")
    torch.manual_seed(0)
    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, image_size=32,
                  patch_size=8)
    clip = transformers.CLIPModel(transformers.CLIPConfig(
        vision_config={**vision, "projection_dim": 16},
        text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                         vocab_size=64, max_position_embeddings=32, eos_token_id=59, bos_token_id=58),
        projection_dim=16))
    clip.save_pretrained(root / "tiny-clip")
    # A CLIP tokenizer of single characters (no merges), saved with the model, as a real CLIP folder has one.
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list(".,'")
    vocab = {token: i for i, token in enumerate(letters + [f"{c}</w>" for c in letters] +
                                                ["<|startoftext|>", "<|endoftext|>"])}
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"))
    tokenizer.save_pretrained(root / "tiny-clip")
    transformers.Dinov2Model(transformers.Dinov2Config(**vision)).save_pretrained(root / "tiny-dinov2")
    videomae = transformers.VideoMAEForVideoClassification(transformers.VideoMAEConfig(
        **vision, num_frames=4, tubelet_size=2, num_labels=7))
    videomae.save_pretrained(root / "tiny-videomae")
    perceiver = transformers.PerceiverForOpticalFlow(transformers.PerceiverConfig(
        num_latents=8, d_latents=32, d_model=32, num_blocks=1, num_self_attends_per_block=1,
        num_self_attention_heads=2, num_cross_attention_heads=1, train_size=[16, 24]))
    perceiver.save_pretrained(root / "tiny-perceiver-flow")
    return root


@pytest.fixture(scope="module")
def scene():
    return render_scene(3, frames=8, size=(64, 96))[0]


@pytest.mark.parametrize("name", ["tiny-clip", "tiny-dinov2"])
def test_identity_features_see_identical_and_changed_subjects(folders, scene, name):
    features = ImageFeatures(folders / name)
    first = features(scene.foreground)
    assert first.shape[0] in (16, 32) and np.linalg.norm(first) == pytest.approx(1.0, abs=1e-5)
    assert np.array_equal(first, features(scene.foreground))       # deterministic
    recoloured, _ = color_jitter(scene.foreground, scene.alpha, brightness=0.4, contrast=1.0, saturation=1.0,
                                 hue=0.4)
    assert 100 * first @ first == pytest.approx(100, abs=1e-3)
    assert 100 * first @ features(recoloured) < 100 - 1e-3


def test_clip_folders_with_a_tokenizer_score_text_alignment(folders, scene):
    features = ImageFeatures(folders / "tiny-clip")
    text = features.text("a cup moves right.")
    assert text is not None and np.linalg.norm(text) == pytest.approx(1.0, abs=1e-5)
    assert np.array_equal(text, features.text("a cup moves right."))
    assert not np.array_equal(text, features.text("zzz"))
    keep = 1.0 - (scene.alpha > 0.01)
    scores = model_metrics(features, None, scene.foreground, scene.background, scene.foreground, keep, scene.frames,
                           prompt="a cup moves right.")
    other = model_metrics(features, None, scene.foreground, scene.background, scene.foreground, keep, scene.frames,
                          prompt="zzz")
    assert scores["text_alignment@tiny-clip"] != other["text_alignment@tiny-clip"]   # the prompt matters
    assert "text_alignment@tiny-clip" not in model_metrics(features, None, scene.foreground, scene.background,
                                                           scene.foreground, keep, scene.frames)  # no prompt
    assert ImageFeatures(folders / "tiny-dinov2").text("a cup") is None


def test_action_distribution_and_kl(folders, scene):
    action = ActionDistribution(folders / "tiny-videomae")
    probabilities = action(scene.foreground)
    assert probabilities.shape == (7,) and probabilities.sum() == pytest.approx(1.0)
    keep = 1.0 - (scene.alpha > 0.01)
    same = model_metrics(None, action, scene.foreground, scene.background, scene.foreground, keep, scene.frames)
    assert same["fg_motion@tiny-videomae"] == pytest.approx(0.0, abs=1e-9)
    frozen = np.repeat(scene.foreground[:1], len(scene.foreground), axis=0)
    moved = model_metrics(None, action, scene.foreground, scene.background, frozen, keep, scene.frames)
    assert moved["fg_motion@tiny-videomae"] > 0


def test_learned_flow_gives_pixel_flow_and_a_bg_motion_error(folders, scene):
    flow = LearnedFlow(folders / "tiny-perceiver-flow")
    field = flow(scene.frames[:3])
    assert field.shape == (2, 64, 96, 2) and np.isfinite(field).all()
    assert np.array_equal(field, flow(scene.frames[:3]))
    keep = 1.0 - (scene.alpha[:3] > 0.01)
    same = model_metrics(None, None, scene.foreground[:3], scene.background[:3], scene.foreground[:3], keep,
                         scene.background[:3], flow)
    assert same["bg_motion@tiny-perceiver-flow"] == pytest.approx(0.0, abs=1e-9)
    shuffled = scene.background[:3][::-1].copy()
    moved = model_metrics(None, None, scene.foreground[:3], scene.background[:3], scene.foreground[:3], keep,
                          shuffled, flow)
    assert moved["bg_motion@tiny-perceiver-flow"] > 0


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(MissingFileError, match="no config.json"):
        ImageFeatures(tmp_path)


def test_evaluate_names_every_model_metric_by_its_backend(folders, tmp_path):
    bench = make_bench("synthetic", tmp_path / "bench", cases=1, frames=8, size=(64, 96))
    metrics = evaluate(bench, ["copy-paste"], tmp_path / "eval",
                       features={"identity_model": str(folders / "tiny-dinov2"),
                                 "action_model": str(folders / "tiny-videomae")})
    scores = metrics["rows"][0]["scores"]
    for key in ("fg_identity@tiny-dinov2", "bg_identity@tiny-dinov2", "fg_motion@tiny-videomae",
                "fg_identity@appearance"):
        assert key in scores, key
    assert metrics["higher_is_better"]["fg_motion@tiny-videomae"] is False
    record = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert "fg_identity@tiny-dinov2" in record["summary"]["copy-paste"]
