"""The optional model backends, ``sam2`` (refiner) and ``wan-vace`` (restorer), run end to end on the CPU.

The weights are tiny random models built from configs and saved with ``save_pretrained`` (safetensors) to temporary
folders, so every code path of the backends runs (loading, prompting, propagation, the diffusion loop, resizing,
blending) without a download. A random model's masks and pixels are garbage: the tests check the properties that
hold whatever the weights are.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("diffusers")

import torch  # noqa: E402

import splitmerge as sm  # noqa: E402
from splitmerge.errors import OptionError  # noqa: E402
from splitmerge.decompose.backends import (BackendUnavailable, Segmentation, SplitClip, describe_backends,  # noqa: E402
                                       get_backend)
from splitmerge.decompose.inpaint import ENV_VAR as INPAINT_ENV  # noqa: E402
from splitmerge.decompose.inpaint import DiffusersInpaintRestorer  # noqa: E402
from splitmerge.decompose.motion import boxes_and_points  # noqa: E402
from splitmerge.decompose.pipeline import NoSubjectError, split  # noqa: E402
from splitmerge.decompose.restore import hole_masks  # noqa: E402
from splitmerge.decompose.sam2 import ENV_VAR as SAM2_ENV  # noqa: E402
from splitmerge.video.geometry import working_size  # noqa: E402
from splitmerge.decompose.sam2 import Sam2Refiner  # noqa: E402

from conftest import moving_subject_clip  # noqa: E402

SAM2_SIZE = 64  # the tiny SAM2's square input


# ------------------------------------------------------------------------------------------------ tiny models


@pytest.fixture(scope="module")
def sam2_dir(tmp_path_factory):
    """A random SAM2 video model (about 1 M parameters, 64 px input) saved as a transformers folder."""
    from transformers import (Sam2HieraDetConfig, Sam2VideoConfig, Sam2VideoMaskDecoderConfig, Sam2VideoModel,
                              Sam2VideoPromptEncoderConfig, Sam2VisionConfig)

    size = SAM2_SIZE
    backbone = Sam2HieraDetConfig(hidden_size=8, image_size=[size, size], blocks_per_stage=[1, 1, 2, 1],
                                  embed_dim_per_stage=[8, 16, 32, 64], num_attention_heads_per_stage=[1, 1, 1, 1],
                                  window_size_per_stage=[4, 4, 4, 2], global_attention_blocks=[3],
                                  window_positional_embedding_background_size=[2, 2])
    # The memory path needs hidden width > memory width (64 is fixed by the memory attention): 128 here.
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[64, 32, 16, 8], fpn_hidden_size=128,
                              backbone_feature_sizes=[[size // 4] * 2, [size // 8] * 2, [size // 16] * 2])
    config = Sam2VideoConfig(
        vision_config=vision, image_size=size, num_maskmem=3,
        prompt_encoder_config=Sam2VideoPromptEncoderConfig(hidden_size=128, image_size=size, mask_input_channels=8),
        mask_decoder_config=Sam2VideoMaskDecoderConfig(hidden_size=128, mlp_dim=64, num_attention_heads=4,
                                                       iou_head_hidden_dim=32),
        memory_attention_hidden_size=128, memory_attention_num_layers=1, memory_attention_feed_forward_hidden_size=32,
        memory_attention_rope_feat_sizes=[size // 16, size // 16], memory_encoder_hidden_size=128,
        mask_downsampler_embed_dim=128, memory_fuser_embed_dim=128, memory_fuser_intermediate_dim=64)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam2")
    Sam2VideoModel(config).save_pretrained(path)
    return path


def _tiny_wan_parts():
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanVACETransformer3DModel

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    transformer = WanVACETransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=3, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32, vace_layers=[0, 2], vace_in_channels=96)
    return {"vae": vae, "transformer": transformer, "scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0)}


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory):
    """A random Wan VACE pipeline saved without text encoder and tokenizer (as diffusers' own tests build it)."""
    from diffusers import WanVACEPipeline

    path = tmp_path_factory.mktemp("wan")
    WanVACEPipeline(tokenizer=None, text_encoder=None, **_tiny_wan_parts()).save_pretrained(path)
    return path


def _tiny_umt5(words: str):
    """A tiny random UMT5 text encoder and a word-level tokenizer over `words`: (tokenizer, encoder)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2,
             **{w: i + 3 for i, w in enumerate(sorted({w.strip(",") for w in words.split()}))}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>",
                                        unk_token="<unk>")
    torch.manual_seed(0)
    encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(vocab), d_model=32, d_kv=8, d_ff=32, num_layers=1,
                                          num_heads=4, relative_attention_num_buckets=8))
    return tokenizer, encoder


@pytest.fixture(scope="module")
def wan_t5_dir(tmp_path_factory):
    """The same pipeline with a tiny random UMT5 text encoder and a word-level tokenizer."""
    from diffusers import WanVACEPipeline

    tokenizer, encoder = _tiny_umt5("an empty scene only the background nobody person blurry")
    path = tmp_path_factory.mktemp("wan_t5")
    WanVACEPipeline(tokenizer=tokenizer, text_encoder=encoder, **_tiny_wan_parts()).save_pretrained(path)
    return path


# ------------------------------------------------------------------------------------------------------ clips


@pytest.fixture(scope="module")
def disc():
    """9 frames 64x64: a striped disc moving right, its true matte, and a segmentation that misses frame 0."""
    frames, alpha, _ = moving_subject_clip(count=9, height=64, width=64, speed=3.0)
    seen = alpha.copy()
    seen[0] = 0.0
    boxes, points = boxes_and_points(seen)
    return frames, alpha, Segmentation(seen, boxes, points, info={"objects": 1})


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


# ------------------------------------------------------------------------------------------------- sam2 refiner


def test_sam2_refines_a_segmentation_deterministically(sam2_dir, disc):
    frames, _, segmentation = disc
    refiner = Sam2Refiner(model_path=sam2_dir, key_every=4)
    clip = SplitClip(frames, 25)
    refined = refiner.refine(clip, segmentation)
    alpha = refined.alpha
    assert alpha.shape == frames.shape[:3] and alpha.dtype == np.float32
    assert 0.0 <= alpha.min() <= alpha.max() <= 1.0
    assert refined.boxes.shape == (9, 4) and len(refined.points) == 9
    visible = (alpha > 0.5).any(axis=(1, 2))
    assert np.array_equal(~np.isnan(refined.boxes[:, 0]), visible)
    for t in np.flatnonzero(visible):  # boxes and points recomputed from the new matte
        x0, y0, x1, y1 = refined.boxes[t]
        ys, xs = np.nonzero(alpha[t] > 0.5)
        assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max(), ys.max())
        x, y = refined.points[t][0].astype(int)
        assert alpha[t, y, x] > 0.5
    info = refined.info["refiner"]
    assert refined.info["objects"] == 1 and info["name"] == "sam2"
    # Key frames: every 4th found frame (frame 0 was not found) plus the largest one.
    assert {1, 5}.issubset(info["key_frames"]) and 0 not in info["key_frames"]
    if info["recovered_frames"] == 0:  # the frame the segmenter missed stays empty unless SAM2 is confident
        assert alpha[0].max() == 0.0
    again = refiner.refine(clip, segmentation)
    assert np.array_equal(again.alpha, alpha)
    assert refiner.describe_config() == {"name": "sam2", "model": sam2_dir.name, "key_every": 4,
                                         "input_size": SAM2_SIZE, "device": "cpu"}


def test_sam2_leaves_an_empty_segmentation_alone(sam2_dir, disc):
    frames = disc[0]
    empty = np.zeros(frames.shape[:3], np.float32)
    boxes, points = boxes_and_points(empty)
    nothing = Segmentation(empty, boxes, points, found=False, reason="no moving subject found")
    assert Sam2Refiner(model_path=sam2_dir).refine(SplitClip(frames, 25), nothing) is nothing


def test_sam2_availability_names_the_fix(monkeypatch, tmp_path, sam2_dir):
    monkeypatch.delenv(SAM2_ENV, raising=False)
    ok, reason = Sam2Refiner.availability()
    assert not ok and SAM2_ENV in reason and "--refiner-model" in reason
    monkeypatch.setenv(SAM2_ENV, str(tmp_path))
    ok, reason = Sam2Refiner.availability()
    assert not ok and "config.json" in reason and SAM2_ENV in reason
    monkeypatch.setenv(SAM2_ENV, str(sam2_dir))
    assert Sam2Refiner.availability() == (True, "")
    rows = {(row["kind"], row["name"]): row for row in describe_backends()}
    assert rows[("refiner", "sam2")]["available"]


def test_sam2_bad_weights_raise_one_line_errors(monkeypatch, tmp_path, sam2_dir):
    monkeypatch.delenv(SAM2_ENV, raising=False)
    with pytest.raises(BackendUnavailable) as error:
        Sam2Refiner()
    assert "--refiner-model" in _one_line(error)
    with pytest.raises(BackendUnavailable) as error:
        Sam2Refiner(model_path=tmp_path / "missing")
    assert "no such folder" in _one_line(error)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "config.json").write_text("{not json")
    with pytest.raises(BackendUnavailable) as error:
        Sam2Refiner(model_path=garbage)
    assert "unreadable" in _one_line(error)
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((sam2_dir / "config.json").read_text())
    with pytest.raises(BackendUnavailable) as error:
        Sam2Refiner(model_path=no_weights)
    assert "cannot be loaded" in _one_line(error)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(BackendUnavailable) as error:
        Sam2Refiner(model_path=other)
    assert "model_type is 'bert'; expected a transformers Sam2VideoModel" in _one_line(error)
    with pytest.raises(OptionError) as error:
        Sam2Refiner(model_path=sam2_dir, key_every=0)
    assert "key_every" in _one_line(error)


def test_sam2_through_the_registry(monkeypatch, sam2_dir):
    monkeypatch.delenv(SAM2_ENV, raising=False)  # model_path alone is enough: availability() receives it
    assert Sam2Refiner.availability(model_path=sam2_dir) == (True, "")
    refiner = get_backend("refiner", "sam2", model_path=sam2_dir, key_every=8)
    assert isinstance(refiner, Sam2Refiner) and refiner.key_every == 8 and refiner.path == sam2_dir


def test_split_with_the_sam2_refiner(monkeypatch, sam2_dir):
    monkeypatch.delenv(SAM2_ENV, raising=False)
    frames, _, _ = moving_subject_clip(count=12, height=64, width=80)
    try:
        layers = split(sm.Video(frames, 25.0), refiner="sam2", backend_options={"sam2": {"model_path": sam2_dir}},
                       caption="x")
    except NoSubjectError:
        return  # a random SAM2 may lose the subject everywhere: a clean refusal is a correct outcome
    assert layers.frames.shape == frames.shape and layers.alpha.shape == frames.shape[:3]
    assert layers.background.shape == frames.shape and layers.background.dtype == np.uint8
    assert 0.0 <= layers.alpha.min() <= layers.alpha.max() <= 1.0
    assert layers.meta["backends"]["refiner"]["name"] == "sam2"


# ------------------------------------------------------------------------------------------- wan-vace restorer


def test_wan_vace_fills_only_the_hole_deterministically(wan_dir):
    # 7 frames of 60x76: padded to 9 frames and run at 48x64, then trimmed and resized back.
    frames, alpha, _ = moving_subject_clip(count=7, height=60, width=76, speed=3.0)
    clip = SplitClip(frames, 25)
    restorer = DiffusersInpaintRestorer(model_path=wan_dir, steps=2, dilation=4)
    out = restorer.restore(clip, alpha)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert restorer.info["working_size"] == [48, 64] and restorer.info["frames"] == 9
    hole = hole_masks(alpha, 4)
    assert np.array_equal(out[~hole], frames[~hole])  # outside the dilated hole: the input, bit for bit
    inside = np.abs(out.astype(int) - frames.astype(int)).max(axis=-1)[hole & (alpha > 0.99)]
    assert (inside > 0).mean() > 0.9  # the subject itself is replaced
    assert np.array_equal(restorer.restore(clip, alpha), out)
    other = DiffusersInpaintRestorer(model_path=wan_dir, steps=2, dilation=4, seed=1).restore(clip, alpha)
    assert not np.array_equal(other, out) and np.array_equal(other[~hole], frames[~hole])
    empty = np.zeros_like(alpha)
    assert np.array_equal(restorer.restore(clip, empty), frames)
    # No dilation: the hole is the matte itself, too thin for the inner feather, and still replaced in full.
    tight = DiffusersInpaintRestorer(model_path=wan_dir, steps=1, dilation=0).restore(clip, alpha)
    subject = alpha > 0.01
    assert np.array_equal(tight[~subject], frames[~subject])
    assert (np.abs(tight.astype(int) - frames.astype(int)).max(axis=-1)[subject] > 0).mean() > 0.9
    config = restorer.describe_config()
    assert config["name"] == "wan-vace" and config["model"] == wan_dir.name and config["guidance"] == 5.0
    assert config["text"].startswith("zero embeddings")


def test_wan_vace_with_its_own_text_encoder(wan_t5_dir):
    frames, alpha, _ = moving_subject_clip(count=5, height=32, width=48, speed=3.0)
    restorer = DiffusersInpaintRestorer(model_path=wan_t5_dir, steps=1, guidance=3.0, prompt="an  empty scene")
    assert restorer.has_text and restorer.describe_config()["prompt"] == "an empty scene"
    positive, negative = restorer._prompt_embeds()
    assert positive.shape == negative.shape == (1, 512, 32) and not torch.equal(positive, negative)
    assert positive[0, 3:].abs().max() == 0  # zero past the prompt's 3 tokens, as the pipeline pads
    out = restorer.restore(SplitClip(frames, 25), alpha)
    hole = hole_masks(alpha, restorer.dilation)
    assert out.shape == frames.shape and np.array_equal(out[~hole], frames[~hole])


def test_working_size_keeps_the_aspect_under_the_area():
    assert working_size(64, 64, 16, 480 * 832) == (64, 64)
    assert working_size(60, 76, 16, 480 * 832) == (48, 64)
    height, width = working_size(1080, 1920, 16, 480 * 832)
    assert height % 16 == width % 16 == 0 and height * width <= 480 * 832 and abs(width / height - 16 / 9) < 0.05


def test_wan_vace_availability_and_bad_weights(monkeypatch, tmp_path, wan_dir):
    monkeypatch.delenv(INPAINT_ENV, raising=False)
    ok, reason = DiffusersInpaintRestorer.availability()
    assert not ok and INPAINT_ENV in reason and "--restorer-model" in reason
    with pytest.raises(BackendUnavailable) as error:
        get_backend("restorer", "wan-vace")
    assert INPAINT_ENV in _one_line(error)
    with pytest.raises(BackendUnavailable) as error:
        get_backend("restorer", "wan-vace", model_path=tmp_path / "missing")
    assert "no such folder" in _one_line(error)
    assert get_backend("restorer", "wan-vace", model_path=wan_dir).path == wan_dir
    with pytest.raises(BackendUnavailable) as error:
        DiffusersInpaintRestorer(model_path=tmp_path)
    assert "model_index.json" in _one_line(error)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text((wan_dir / "model_index.json").read_text())
    with pytest.raises(BackendUnavailable) as error:
        DiffusersInpaintRestorer(model_path=broken)
    assert "cannot be loaded" in _one_line(error)
    with pytest.raises(OptionError) as error:
        DiffusersInpaintRestorer(model_path=wan_dir, steps=0)
    assert "steps" in _one_line(error)
    monkeypatch.setenv(INPAINT_ENV, str(wan_dir))
    assert DiffusersInpaintRestorer.availability() == (True, "")
    restorer = get_backend("restorer", "wan-vace", steps=3)
    assert isinstance(restorer, DiffusersInpaintRestorer) and restorer.path == wan_dir and restorer.steps == 3


# ------------------------------------------------------------------------------------------ copy-paste + I2V


@pytest.fixture(scope="module")
def wan_i2v_dir(tmp_path_factory):
    """A random Wan image-to-video pipeline (image latent and mask concatenated, no CLIP image encoder) with a
    tiny UMT5 text encoder and a word-level tokenizer."""
    from diffusers import (AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline,
                           WanTransformer3DModel)

    tokenizer, encoder = _tiny_umt5("a disc walks")
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                        in_channels=36, out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32,
                                        num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                        rope_max_seq_len=32)
    path = tmp_path_factory.mktemp("wan_i2v")
    WanImageToVideoPipeline(tokenizer=tokenizer, text_encoder=encoder, vae=vae, transformer=transformer,
                            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0)).save_pretrained(path)
    return path


def test_copy_paste_i2v_animates_the_pasted_first_frame(wan_i2v_dir, tmp_path):
    from splitmerge.data.synthetic import render_scene

    layers, _ = render_scene(3, frames=7, size=(40, 56))  # not multiples of 16: run at 32x48, resized back
    background = sm.Video(layers.background, layers.fps)
    made = sm.compose(fg=layers, background=background, method="copy-paste+i2v", model=str(wan_i2v_dir),
                      prompt="a disc walks", steps=2, seed=1)
    again = sm.compose(fg=layers, background=background, method="copy-paste+i2v", model=str(wan_i2v_dir),
                       prompt="a disc walks", steps=2, seed=1)
    assert made.frames.shape == layers.frames.shape and np.array_equal(made.frames, again.frames)
    assert made.alpha is None and made.meta["pipeline"] == "WanImageToVideoPipeline"
    assert made.meta["size"] == [32, 48]
    with pytest.raises(OptionError, match="image-to-video pipeline folder"):
        sm.compose(fg=layers, background=background, method="copy-paste+i2v")
    with pytest.raises(sm.MissingFileError, match="model_index"):
        sm.compose(fg=layers, background=background, method="copy-paste+i2v", model=str(tmp_path))
