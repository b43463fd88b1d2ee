"""What the paper-scale presets need before they meet a GPU (issue 20), checked on the CPU with tiny random
models: CogVideoX's rotary position embeddings, one noise schedule for training and sampling."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("diffusers")

from splitmerge.errors import OptionError  # noqa: E402
from splitmerge.merge.backbones import build_backbone, cogvideox_rotary, run_backbone  # noqa: E402
from splitmerge.merge.composer import Composer, ComposerConfig  # noqa: E402
from test_composer import TINY_WAN  # noqa: E402

ROTARY_COGVIDEOX = {"num_attention_heads": 2, "attention_head_dim": 16, "time_embed_dim": 32, "text_embed_dim": 32,
                    "num_layers": 1, "sample_width": 12, "sample_height": 8, "sample_frames": 4, "patch_size": 2,
                    "temporal_compression_ratio": 1, "max_text_seq_length": 8, "in_channels": 4, "out_channels": 4,
                    "use_rotary_positional_embeddings": True}


def test_cogvideox_gets_its_rotary_embeddings_as_the_pipeline_builds_them():
    """A CogVideoX transformer with rotary embeddings (as CogVideoX-5B-I2V's config has) is called with the
    embeddings diffusers' own pipeline helper makes for the same latents; without them its output differs."""
    from diffusers import CogVideoXImageToVideoPipeline

    torch.manual_seed(0)
    model = build_backbone("cogvideox", **ROTARY_COGVIDEOX).eval()
    latents = torch.randn(1, 4, 3, 10, 12)   # (B, C, T, H, W): not the config's sample size (a cropped grid)
    timestep, text = torch.tensor([500]), torch.randn(1, 8, 32)
    pipeline = SimpleNamespace(transformer=model, vae_scale_factor_spatial=1)
    theirs = CogVideoXImageToVideoPipeline._prepare_rotary_positional_embeddings(pipeline, 10, 12, 3, "cpu")
    ours = cogvideox_rotary(model, 3, 10, 12, "cpu")
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    with torch.no_grad():
        called = run_backbone(model, "cogvideox", latents, timestep, text)
        direct = model(hidden_states=latents.transpose(1, 2), encoder_hidden_states=text, timestep=timestep,
                       image_rotary_emb=theirs, return_dict=False)[0].transpose(1, 2)
        unrotated = model(hidden_states=latents.transpose(1, 2), encoder_hidden_states=text, timestep=timestep,
                          return_dict=False)[0].transpose(1, 2)
    assert torch.equal(called, direct) and not torch.allclose(called, unrotated, atol=1e-4)
    plain = build_backbone("cogvideox", **{**ROTARY_COGVIDEOX, "use_rotary_positional_embeddings": False})
    assert cogvideox_rotary(plain, 3, 10, 12, "cpu") is None


def test_a_rotary_cogvideox_composer_trains_and_samples():
    config = ComposerConfig(backbone="cogvideox", backbone_config={**ROTARY_COGVIDEOX, "text_embed_dim": 384},
                            text_encoder="none", text_length=8, objective="v")
    torch.manual_seed(0)
    model = Composer(config)
    b, t, h, w = 1, 2, 16, 24
    batch = {"video": torch.rand(b, 3, t, h, w) * 2 - 1, "foreground": torch.zeros(b, 3, t, h, w) - 1,
             "alpha": torch.zeros(b, 1, t, h, w), "alpha_target": torch.zeros(b, 1, t, h, w),
             "background": torch.rand(b, 3, t, h, w) * 2 - 1,
             "caption": ["a box"]}
    loss = model.loss(batch, torch.Generator().manual_seed(0))["loss"]
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    frames = model.sample(batch["foreground"], batch["alpha"], batch["background"], batch["caption"], steps=2)
    assert frames.shape == batch["video"].shape and torch.isfinite(frames).all()


def test_training_and_sampling_share_the_v_schedule():
    """The v objective trains on the noise levels it samples through: zero terminal SNR in both (the sampler had
    it, training did not)."""
    model = Composer(ComposerConfig(backbone="cogvideox", backbone_config={**ROTARY_COGVIDEOX,
                                                                           "text_embed_dim": 384},
                                    text_encoder="none", text_length=8, objective="v"))
    training, sampling = model._ddpm(), model._sampler()
    assert torch.allclose(training.alphas_cumprod, sampling.alphas_cumprod)
    assert float(training.alphas_cumprod[-1]) < 1e-6   # the last level is pure noise


def test_the_vae_follows_its_inputs_to_their_device(tmp_path):
    """`Composer.to` and accelerate never move the frozen VAE: it moves to the device of what it is given (here the
    `meta` device, where shapes are computed without memory) and returns latents there."""
    from diffusers import AutoencoderKLWan

    from splitmerge.merge.codecs import VaeCodec

    torch.manual_seed(0)
    AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                     temperal_downsample=[False, True, True], latents_mean=[0.1] * 4,
                     latents_std=[2.0] * 4).save_pretrained(tmp_path / "vae")
    codec = VaeCodec(tmp_path / "vae")
    video = torch.rand(1, 3, 5, 16, 16, device="meta")
    latent = codec.encode(video)
    assert latent.device.type == "meta" and next(codec.vae.parameters()).device.type == "meta"
    assert latent.shape == (1, 4, 2, 16 // codec.spatial, 16 // codec.spatial)
    assert codec.decode(latent).device.type == "meta"


@pytest.mark.parametrize("backbone", ["wan", "cogvideox"])
def test_gradient_checkpointing_changes_memory_not_the_step(backbone):
    """`gradient_checkpointing: true` recomputes the blocks in the backward pass: the same loss and gradients."""
    from test_composer import TINY_COGVIDEOX, TINY_WAN, make_batch

    settings = TINY_WAN if backbone == "wan" else TINY_COGVIDEOX
    batch = make_batch(size=(1, 4, 16, 24))
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = Composer(ComposerConfig(backbone=backbone, backbone_config=dict(settings), text_encoder="none",
                                        text_length=8, gradient_checkpointing=checkpointing))
        assert model.transformer.gradient_checkpointing is checkpointing
        loss = model.loss(batch, torch.Generator().manual_seed(0))["loss"]
        loss.backward()
        grads.append((float(loss.detach()), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads[0][1], grads[1][1], strict=True))


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    """`keep_last: 2` on a 12-step run checkpointed every 4 steps keeps steps 8 and 12, and a resumed run still
    finds its checkpoint; an unfinished (partial) folder neither counts nor goes."""
    from test_train import small_config

    from splitmerge.cli import main
    from splitmerge.data import build
    from splitmerge.merge.checkpoint import prune_checkpoints

    data = tmp_path / "data"
    build([], data, synthetic=2, frames=8, size=(32, 48))
    run = tmp_path / "run"
    config = small_config(tmp_path, keep_last=2, max_steps=12, checkpoint_every=4)
    assert main(["train", "--config", str(config), "--data", str(data), "-o", str(run), "--stop-at", "8"]) == 0
    assert main(["train", "--config", str(config), "--data", str(data), "-o", str(run), "--resume"]) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000008", "step-000012"]
    partial = run / "checkpoints" / "step-000016"
    partial.mkdir()
    assert prune_checkpoints(run, 1) == [run / "checkpoints" / "step-000008"] and partial.is_dir()
    assert prune_checkpoints(run, None) == []
    bad = small_config(tmp_path, keep_last=0)
    assert main(["train", "--config", str(bad), "--data", str(data), "-o", str(tmp_path / "zero")]) == 2


def test_every_weights_folder_is_checked_before_any_loads(tmp_path, monkeypatch):
    """A missing VAE, T5 or tokenizer is named before the transformer loads (not after it, or at the first
    forward pass); pickle-only weights do not count."""
    from splitmerge.errors import MissingFileError
    from splitmerge.merge import backbones
    from splitmerge.merge.train import TrainConfig, build_composer, preset_path
    from splitmerge.merge.weight_files import check_weights

    folder = tmp_path / "weights"
    for part in ("transformer", "vae", "text_encoder"):
        (folder / part).mkdir(parents=True)
        (folder / part / "config.json").write_text("{}")
        (folder / part / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    (folder / "tokenizer").mkdir()
    monkeypatch.setenv("SPLITMERGE_WAN", str(folder))
    loaded = []
    monkeypatch.setattr(backbones, "load_backbone", lambda *args: loaded.append(args))
    config = TrainConfig.load(preset_path("wan-1.3b-stm"))
    with pytest.raises(MissingFileError, match="no tokenizer"):
        build_composer(config)
    (folder / "tokenizer" / "tokenizer.json").write_text("{}")
    check_weights(ComposerConfig(**config.composer), config.pretrained)   # all there now
    (folder / "vae" / "diffusion_pytorch_model.safetensors").rename(folder / "vae" / "diffusion_pytorch_model.bin")
    with pytest.raises(MissingFileError, match="vae: no .safetensors weights"):
        build_composer(config)
    assert loaded == []   # nothing was loaded before the error


def test_captions_are_encoded_once_and_read_back_unchanged(tmp_path, monkeypatch):
    """With a `TextCache`, a caption goes through the text encoder once; later steps read the very same features
    (also the empty caption of classifier-free guidance's dropout); another token length starts a new set."""
    from splitmerge.merge import text
    from splitmerge.merge.text_cache import TextCache

    model = Composer(ComposerConfig(text_encoder="minilm", text_length=8, backbone_config={
        "patch_size": [1, 2, 2], "num_attention_heads": 2, "attention_head_dim": 16, "num_layers": 1,
        "ffn_dim": 32, "freq_dim": 32, "text_dim": 384, "rope_max_seq_len": 32}))
    direct = model.encode_text(["a cat walks", "a red box", ""])
    calls = []
    encoder = text.default_encoder()
    original = encoder.tokens
    monkeypatch.setattr(encoder, "tokens", lambda captions, length: calls.append(list(captions)) or
                        original(captions, length))
    model.text_cache = TextCache(tmp_path / "cache", model.text_cache_key())
    first = model.encode_text(["a cat walks", "a red box", ""])
    again = model.encode_text(["a red box", "a cat walks", "a cat walks", ""])
    assert calls == [["", "a cat walks", "a red box"]] and model.text_cache.encoded == 3
    assert torch.equal(first, direct) and torch.equal(again[0], direct[1]) and torch.equal(again[3], direct[2])
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 3
    longer = TextCache(tmp_path / "cache", model.text_cache_key().replace("|8", "|9"))
    assert longer.folder != model.text_cache.folder


def test_a_run_with_the_text_cache_logs_the_same_losses(tmp_path):
    from test_train import losses, small_config

    from splitmerge.cli import main
    from splitmerge.data import build

    data = tmp_path / "data"
    build([], data, synthetic=2, frames=8, size=(32, 48))
    runs = {}
    for cached in (False, True):
        config = small_config(tmp_path, text_cache=cached, max_steps=4, checkpoint_every=4, validate_every=4)
        runs[cached] = tmp_path / f"run{int(cached)}"
        assert main(["train", "--config", str(config), "--data", str(data), "-o", str(runs[cached])]) == 0
    assert losses(runs[True]) == losses(runs[False])
    assert list((runs[True] / "text_cache").rglob("*.safetensors")) and not (runs[False] / "text_cache").exists()


def test_composer_json_names_weights_by_reference(tmp_path, monkeypatch):
    """A preset's ``$SPLITMERGE_WAN/vae`` stays a reference in the config (checked: an unset variable is named),
    and is resolved where the weights load, so a saved Composer loads on a machine that sets the variable
    elsewhere."""
    from splitmerge.merge.train import TrainConfig, preset_path
    from splitmerge.merge.weight_files import resolve

    monkeypatch.setenv("SPLITMERGE_WAN", str(tmp_path / "here"))
    config = TrainConfig.load(preset_path("wan-1.3b-stm"))
    assert config.pretrained == "$SPLITMERGE_WAN/transformer"
    assert config.composer["codec"]["path"] == "$SPLITMERGE_WAN/vae"
    assert config.composer["text_encoder_path"] == "$SPLITMERGE_WAN"
    assert resolve(config.composer["codec"]["path"]) == tmp_path / "here" / "vae"
    monkeypatch.setenv("SPLITMERGE_WAN", "/elsewhere")
    assert resolve(config.composer["codec"]["path"]) == Path("/elsewhere/vae")
    monkeypatch.delenv("SPLITMERGE_WAN")
    with pytest.raises(OptionError, match="set the environment variable SPLITMERGE_WAN"):
        resolve("$SPLITMERGE_WAN/vae")


def test_dataloader_workers_give_the_same_batches_and_losses(tmp_path):
    """Batches read ahead by two worker processes are the ones the training process would make (samples are pure
    functions of seed, step and index), so a run logs the same losses with `num_workers: 2` as with 0, and a
    run stopped and resumed with workers logs them too."""
    from test_train import losses, small_config

    from splitmerge.cli import main
    from splitmerge.data import StmDataset, build
    from splitmerge.merge.train import StepBatches, TrainConfig, step_batches

    data = tmp_path / "data"
    build([], data, synthetic=3, frames=8, size=(32, 48))
    config = TrainConfig(data=str(data), frames=8, size=(32, 48), batch_size=2, max_steps=5, num_workers=2)
    dataset = StmDataset(data, frames=8, size=(32, 48))
    ahead = list(step_batches(dataset, config, 0, 1, 2, 5, pin=False))
    here = [StepBatches(dataset, config, 0, 1)[step] for step in range(2, 5)]
    assert all(torch.equal(a["video"], b["video"]) and a["id"] == b["id"] for a, b in zip(ahead, here, strict=True))
    runs = {}
    for workers in (0, 2):
        path = small_config(tmp_path, num_workers=workers, max_steps=6, checkpoint_every=3, validate_every=6)
        runs[workers] = tmp_path / f"run{workers}"
        if workers:
            assert main(["train", "--config", str(path), "--data", str(data), "-o", str(runs[workers]),
                         "--stop-at", "3"]) == 0
            assert main(["train", "--config", str(path), "--data", str(data), "-o", str(runs[workers]),
                         "--resume"]) == 0
        else:
            assert main(["train", "--config", str(path), "--data", str(data), "-o", str(runs[workers])]) == 0
    assert losses(runs[2]) == losses(runs[0])
    with pytest.raises(OptionError, match="num_workers"):
        TrainConfig(num_workers=-1)


def test_sampling_runs_where_the_gpu_is_in_bf16(monkeypatch, tmp_path):
    """`load_composer` puts the model on `inference_device` (a GPU when there is one; `SPLITMERGE_DEVICE` says
    otherwise, a device that is not there is a one-line error); sampling autocasts to bf16 on a GPU only; a VAE
    encodes and decodes in tiles and slices."""
    import contextlib

    from diffusers import AutoencoderKLWan

    from splitmerge.merge.codecs import VaeCodec
    from splitmerge.merge.composer import sampling_autocast
    from splitmerge.merge.stm import inference_device

    monkeypatch.delenv("SPLITMERGE_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert inference_device().type == expected
    monkeypatch.setenv("SPLITMERGE_DEVICE", "cpu")
    assert inference_device() == torch.device("cpu")
    for bad in ("tpu", "gpu0") + (() if torch.cuda.is_available() else ("cuda",)):
        monkeypatch.setenv("SPLITMERGE_DEVICE", bad)
        with pytest.raises(OptionError, match="SPLITMERGE_DEVICE"):
            inference_device()
    assert isinstance(sampling_autocast(torch.device("cpu")), contextlib.nullcontext)
    with warnings.catch_warnings():   # (without a GPU torch says it disables the autocast it builds)
        warnings.simplefilter("ignore", UserWarning)
        assert isinstance(sampling_autocast(torch.device("cuda")), torch.autocast)
    AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                     temperal_downsample=[False, True, True], latents_mean=[0.1] * 4,
                     latents_std=[2.0] * 4).save_pretrained(tmp_path / "vae")
    assert VaeCodec(tmp_path / "vae").vae.use_tiling


def test_the_weights_average_follows_its_weights_to_their_device():
    """The EMA is made (or read from a checkpoint) on the CPU before `accelerator.prepare` moves the model to a
    GPU: each average moves to its weight's device at its first update (here the `meta` device) instead of
    failing on a cross-device add."""
    from splitmerge.merge.checkpoint import Ema

    model = torch.nn.Linear(3, 2)
    ema = Ema(model, 0.9)
    model.to("meta")
    ema.update(model)
    assert {tensor.device.type for tensor in ema.shadow.values()} == {"meta"} and ema.updates == 1


def test_a_composer_saved_from_gathered_weights_loads_back_by_name(tmp_path, monkeypatch):
    """`save_pretrained(folder, weights)` writes weights given by parameter name (what a sharded run gathers) in
    diffusers' layout, in shards with an index past the shard size (10 GB; 4 KB here), and `saved_weights` reads
    them back under the same names; a LoRA Composer saves (and reads back) only its adapters and input projection."""
    from splitmerge.merge import composer_files

    torch.manual_seed(0)
    model = Composer(ComposerConfig(backbone="wan", backbone_config=dict(TINY_WAN), text_encoder="none",
                                    text_length=8, output="direct"))
    weights = {name: value.clone() + 1 for name, value in model.state_dict().items()}
    monkeypatch.setattr(composer_files, "SHARD_SIZE", 4096)
    model.save_pretrained(tmp_path / "sharded", weights)
    shards = sorted(p.name for p in (tmp_path / "sharded" / "transformer").glob("*.safetensors"))
    assert len(shards) > 2 and (tmp_path / "sharded" / "transformer" /
                                "diffusion_pytorch_model.safetensors.index.json").is_file()
    loaded = Composer.from_pretrained(tmp_path / "sharded")
    assert all(torch.equal(loaded.state_dict()[name], value) for name, value in weights.items())
    read = composer_files.saved_weights(model, tmp_path / "sharded")
    assert read.keys() == weights.keys() and all(torch.equal(read[k], weights[k]) for k in weights)

    lora = Composer.from_backbone(ComposerConfig(backbone="wan", text_encoder="none", text_length=8, lora_rank=2,
                                                 output="direct", codec={"kind": "pixel", "spatial": 2}),
                                  build_backbone("wan", **{**TINY_WAN, "in_channels": 12, "out_channels": 12}))
    trainable = {name for name, p in lora.named_parameters() if p.requires_grad}
    lora.save_pretrained(tmp_path / "lora")
    assert set(composer_files.saved_weights(lora, tmp_path / "lora", shapes_only=True)) == trainable


def test_a_checkpoint_of_another_model_or_format_is_refused_before_loading(tmp_path, capsys):
    """Every process checks a checkpoint's names and shapes (file headers) before any collective starts: another
    model's checkpoint, optimizer moments that do not fit and the optimizer format keyed by position (before
    names) are one-line errors, exit 2, and the checkpoint is left as it was."""
    import json
    import shutil

    import yaml
    from test_train import small_config

    from splitmerge.cli import main
    from splitmerge.data import build

    data = tmp_path / "data"
    build([], data, synthetic=2, frames=8, size=(32, 48))
    run = tmp_path / "run"
    config = small_config(tmp_path, max_steps=4, checkpoint_every=2, validate_every=4)
    assert main(["train", "--config", str(config), "--data", str(data), "-o", str(run), "--stop-at", "2"]) == 0
    checkpoint = run / "checkpoints" / "step-000002"
    kept = tmp_path / "kept"
    shutil.copytree(checkpoint, kept)
    capsys.readouterr()

    def refused(config_path: Path, expected: str) -> None:
        assert main(["train", "--config", str(config_path), "--data", str(data), "-o", str(run), "--resume"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], lines
        assert sorted(p.name for p in checkpoint.rglob("*")) == sorted(p.name for p in kept.rglob("*"))
        shutil.rmtree(checkpoint)
        shutil.copytree(kept, checkpoint)

    composer = yaml.safe_load(config.read_text())["composer"]
    wider = {**composer, "backbone_config": {**composer["backbone_config"], "ffn_dim": 96}}
    deeper = {**composer, "backbone_config": {**composer["backbone_config"], "num_layers": 3}}
    for name, changed, expected in (("wider", wider, "another model's checkpoint?"),
                                    ("deeper", deeper, "no transformer.blocks.2.")):
        (tmp_path / name).mkdir()
        refused(small_config(tmp_path / name, composer=changed), expected)
    record = json.loads((checkpoint / "optimizer.json").read_text())
    (checkpoint / "optimizer.json").write_text(json.dumps({k: v for k, v in record.items() if k != "format"}))
    refused(config, "written before checkpoints were keyed by name")
    from safetensors.torch import load_file, save_file

    moments = load_file(str(checkpoint / "optimizer.safetensors"))
    name = next(key for key in moments if key.endswith("/exp_avg"))
    save_file({**moments, name: torch.zeros(3)}, str(checkpoint / "optimizer.safetensors"))
    refused(config, f"{name} does not fit")
    assert main(["train", "--config", str(config), "--data", str(data), "-o", str(run), "--resume"]) == 0


def test_random_init_builds_the_presets_architecture_with_no_weights_folder(tmp_path, monkeypatch):
    """`random_init: true` needs neither the weights nor the variable naming them: the preset's references become
    ``random:<architecture>/<part>[@layers]``, which build the bundled full-width architecture (here cut to one
    layer) with the same random weights every time; a config without an architecture or with a bad reference is a
    one-line error."""
    from splitmerge.merge import random_weights
    from splitmerge.merge.codecs import VaeCodec
    from splitmerge.merge.text import T5TextEncoder
    from splitmerge.merge.train import TrainConfig, preset_path

    monkeypatch.delenv("SPLITMERGE_WAN", raising=False)
    config = TrainConfig.load(preset_path("wan-1.3b-stm"), random_init=True, random_init_layers=1)
    assert config.pretrained == "random:wan2.1-t2v-1.3b/transformer@1"
    assert config.composer["codec"]["path"] == "random:wan2.1-t2v-1.3b/vae"
    assert config.composer["text_encoder_path"] == "random:wan2.1-t2v-1.3b/text_encoder@1"
    first = random_weights.random_transformer(config.pretrained)
    second = random_weights.random_transformer(config.pretrained)
    assert first.config.num_layers == 1 and first.config.num_attention_heads * first.config.attention_head_dim == 1536
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters(), strict=True))
    vae = VaeCodec("random:cogvideox-5b-i2v/vae")
    assert (vae.channels, vae.spatial, vae.temporal, vae.scaling) == (16, 8, 4, 0.7)
    encoder = T5TextEncoder("random:cogvideox-5b-i2v/text_encoder@1")
    features = encoder.tokens(["a cat walks left on grass", ""], 226)
    assert features.shape == (2, 226, 4096) and torch.isfinite(features).all()
    assert torch.equal(features, T5TextEncoder("random:cogvideox-5b-i2v/text_encoder@1").tokens(
        ["a cat walks left on grass", ""], 226))
    ids = random_weights.byte_tokenizer(32128)(["ab"], add_special_tokens=True)["input_ids"][0]
    assert len(ids) == 3 and ids[-1] == 1 and all(2 < i < 32128 for i in ids[:-1])
    bare = tmp_path / "bare.yaml"
    bare.write_text("pretrained: /nowhere\nrandom_init: true\n")
    with pytest.raises(OptionError, match="names no architecture"):
        TrainConfig.load(bare)
    with pytest.raises(OptionError, match="random_init_layers: only with random_init"):
        TrainConfig.load(preset_path("wan-1.3b-stm"), random_init_layers=2)
    for bad in ("random:nothing/vae", "random:wan2.1-t2v-1.3b/unet", "random:wan2.1-t2v-1.3b/vae@0"):
        with pytest.raises(OptionError, match="random"):
            random_weights.parse(bad)


def test_the_fsdp_launch_configs_wrap_blocks_the_backbones_have():
    """launch/fsdp-*.yaml are FSDP version 2 accelerate configs whose wrapped class is the backbone's transformer
    block (accelerate fails at `prepare` on a class the model lacks); the CPU sharding wraps the same class."""
    import diffusers
    import yaml

    from splitmerge.merge.sharding import block_classes

    launch = Path(__file__).resolve().parents[1] / "launch"
    for name, model in (("cogvideox", diffusers.CogVideoXTransformer3DModel),
                        ("wan", diffusers.WanTransformer3DModel)):
        record = yaml.safe_load((launch / f"fsdp-{name}.yaml").read_text())
        fsdp = record["fsdp_config"]
        assert record["distributed_type"] == "FSDP" and fsdp["fsdp_version"] == 2
        assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
        blocks = {n for n in model._no_split_modules if n.endswith("Block")}
        assert {fsdp["fsdp_transformer_layer_cls_to_wrap"]} == blocks
    wan = build_backbone("wan", **{**TINY_WAN, "in_channels": 4, "out_channels": 4})
    assert block_classes(wan) == {"WanTransformerBlock"}


def test_validation_clips_shared_out_between_processes_score_as_sampled_together(tmp_path):
    """Validation shares its clips out between processes (clip i on process i mod world), each clip sampled alone
    with noise from the seed and its index: two processes' halves merged score exactly as one process sampling
    them all."""
    from test_train import small_config

    from splitmerge.data import build
    from splitmerge.data.torch_dataset import collate_samples
    from splitmerge.merge.train import TrainConfig, _take, _validation_batch, _validation_results, build_composer

    data = tmp_path / "data"
    build([], data, synthetic=3, frames=8, size=(32, 48))
    config = TrainConfig.load(small_config(tmp_path, validation_clips=3, validation_steps=2), data=str(data))
    batch = _validation_batch(config, collate_samples)
    torch.manual_seed(0)
    model = build_composer(config)
    whole = {r["index"]: r["scores"] for r in _validation_results(model, batch, [0, 1, 2], config)}
    halves = _validation_results(model, _take(batch, [0, 2]), [0, 2], config) + _validation_results(
        model, _take(batch, [1]), [1], config)
    assert len(whole) == 3 and whole == {r["index"]: r["scores"] for r in halves}


def test_a_lora_cogvideox_with_learned_positions_resumes_with_the_same_losses(tmp_path):
    """CogVideoX-5B-I2V's learned position embeddings are a saved buffer of the frozen base: a LoRA checkpoint
    does not hold them (they come from the base) and a resumed LoRA run still logs the straight run's losses."""
    import diffusers
    import yaml
    from test_train import losses

    from splitmerge.cli import main
    from splitmerge.data import build
    from splitmerge.merge.train import preset_path

    data = tmp_path / "data"
    build([], data, synthetic=2, frames=8, size=(32, 48))
    torch.manual_seed(0)
    base = tmp_path / "base"
    diffusers.CogVideoXTransformer3DModel(  # cpu-tiny's pixel codec: 12 channels at 16x24, I2V inputs 24
        num_attention_heads=2, attention_head_dim=16, in_channels=24, out_channels=12, time_embed_dim=32,
        text_embed_dim=384, num_layers=1, sample_width=24, sample_height=16, sample_frames=8, patch_size=2,
        temporal_compression_ratio=1, max_text_seq_length=4, use_learned_positional_embeddings=True,
        use_rotary_positional_embeddings=True).save_pretrained(base)
    record = yaml.safe_load(preset_path("cpu-tiny").read_text())
    record["composer"].update(backbone="cogvideox", backbone_config={}, text_encoder="none", text_length=4,
                              lora_rank=4, output="direct", matte_channel=False)
    record.update(pretrained=str(base), max_steps=4, checkpoint_every=2, validate_every=4, validation_steps=2)
    config = tmp_path / "lora.yaml"
    config.write_text(yaml.safe_dump(record))
    runs = {name: tmp_path / name for name in ("straight", "resumed")}
    common = ["train", "--config", str(config), "--data", str(data)]
    assert main([*common, "-o", str(runs["straight"])]) == 0
    assert main([*common, "-o", str(runs["resumed"]), "--stop-at", "2"]) == 0
    assert main([*common, "-o", str(runs["resumed"]), "--resume"]) == 0
    assert losses(runs["resumed"]) == losses(runs["straight"]) and len(losses(runs["straight"])) == 4


def test_training_refuses_to_upsample_the_dataset(tmp_path):
    """A run whose size is larger than the dataset's clips (a 480x720 preset on a default 240x360 build) is a
    one-line error naming both sizes and the fix, before any run folder is made."""
    from test_train import small_config

    from splitmerge.cli import main
    from splitmerge.data import build
    from splitmerge.merge.train import refuse_upsampling

    data = tmp_path / "data"
    build([], data, synthetic=2, frames=8, size=(32, 48))
    config = small_config(tmp_path, size=[64, 96])
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--data", str(data), "-o", str(run)]) == 2
    assert not run.exists()
    with pytest.raises(OptionError, match=r"clips of 240x360, .* upsample x2.00; .*--size 480x720"):
        refuse_upsampling([{"height": 240, "width": 360}], (480, 720))
    refuse_upsampling([{"height": 240, "width": 360}], (240, 320))   # a smaller or equal size is fine
