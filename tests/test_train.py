"""`splitmerge train`: the cpu-tiny preset trains, a SIGKILLed run resumes with the same losses, and two DDP
processes (gloo, torchrun) keep identical weights."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from splitmerge.cli import main
from splitmerge.data import build
from splitmerge.errors import OptionError
from splitmerge.merge.composer import Composer, ComposerConfig
from splitmerge.merge.train import TrainConfig, learning_rate, preset_path

pytest.importorskip("accelerate")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train") / "dataset"
    build([], folder, synthetic=6, frames=8, size=(32, 48))
    return folder


def small_config(tmp_path: Path, **fields) -> Path:
    """cpu-tiny with fewer steps and more checkpoints, as a YAML file."""
    record = yaml.safe_load(preset_path("cpu-tiny").read_text())
    record.update({"max_steps": 12, "checkpoint_every": 4, "validate_every": 12, "validation_steps": 3, **fields})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(record))
    return path


def losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())]


def test_cpu_tiny_trains_logs_checkpoints_and_saves_a_model(dataset, tmp_path):
    """It learns something: on the training clips, with the same noise draws, the trained model's background
    error and placement error are below a fresh model's (a fresh warp Composer is copy-paste, whatever its seed,
    so it gives exactly 1.0). Train seeds 0-11 (0-5 with 2 threads and with 1, 6-11 with 1): background error
    trained / fresh 0.32-0.65 (worst 0.651, seed 8), asserted < 0.8; placement error 0.73-0.85 (worst 0.845,
    seed 8), asserted < 0.95. (The logged losses are too noisy to judge: the mean of the last 5 against the first
    5 was 0.62-1.79 over those seeds, above 1 for 6 of the 12.)"""
    import torch

    from splitmerge.data import StmDataset
    from splitmerge.data.torch_dataset import collate_samples

    run = tmp_path / "run"
    assert main(["train", "--preset", "cpu-tiny", "--data", str(dataset), "-o", str(run)]) == 0
    logged = losses(run)
    assert [step for step, _ in logged] == list(range(1, 31))
    assert (run / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (run / "validation" / "step-000030.png").read_bytes()[:4] == b"\x89PNG"
    files = {p.name for p in (run / "checkpoints" / "step-000010").rglob("*") if p.is_file()}
    assert {"optimizer.safetensors", "state.json", "diffusion_pytorch_model.safetensors"} <= files
    assert not any(p.suffix in (".pt", ".bin", ".pkl") for p in run.rglob("*"))  # no pickles anywhere
    model = Composer.from_pretrained(run / "model")
    assert model.config.text_encoder == "minilm"
    torch.manual_seed(0)
    fresh = Composer(model.config)
    clips = StmDataset(dataset, split="train", frames=8, size=(32, 48), seed=0)

    def errors(composer: Composer) -> dict:
        generator, parts = torch.Generator().manual_seed(0), {"loss_bg": 0.0, "loss_place": 0.0}
        with torch.no_grad():
            for epoch in range(3):
                clips.set_epoch(epoch)
                out = composer.loss(collate_samples([clips[i] for i in range(len(clips))]), generator)
                parts = {key: value + float(out[key]) for key, value in parts.items()}
        return parts

    trained, untrained = errors(model), errors(fresh)
    assert trained["loss_bg"] < 0.8 * untrained["loss_bg"]
    assert trained["loss_place"] < 0.95 * untrained["loss_place"]
    assert main(["train", "--preset", "cpu-tiny", "--data", str(dataset), "-o", str(run)]) == 2  # not empty


def test_sigkill_then_resume_continues_with_the_same_losses(dataset, tmp_path):
    config = small_config(tmp_path)
    straight = tmp_path / "straight"
    command = [sys.executable, "-m", "splitmerge.cli", "train", "--config", str(config), "--data", str(dataset)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    assert subprocess.run([*command, "-o", str(straight)], env=env, capture_output=True).returncode == 0
    killed = tmp_path / "killed"
    process = subprocess.Popen([*command, "-o", str(killed)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (killed / "checkpoints" / "step-000008").exists():
            break
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert (killed / "checkpoints" / "step-000004").exists()
    assert not (killed / "model").exists(), "the kill should land before the end"
    resumed = subprocess.run([*command, "-o", str(killed), "--resume"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert losses(killed) == losses(straight)
    assert not [p for p in killed.rglob("*") if ".partial" in p.name]
    # --stop-at keeps the 12-step schedule: stopped at 6 (checkpointed there) and resumed, the same losses again.
    stopped = tmp_path / "stopped"
    assert main(["train", "--config", str(config), "--data", str(dataset), "-o", str(stopped), "--stop-at", "6"]) == 0
    assert [step for step, _ in losses(stopped)] == list(range(1, 7))
    assert (stopped / "checkpoints" / "step-000006").is_dir()
    assert main(["train", "--config", str(config), "--data", str(dataset), "-o", str(stopped), "--resume"]) == 0
    assert losses(stopped) == losses(straight)
    validated = [json.loads(line) for line in (straight / "validation.jsonl").read_text().splitlines()]
    assert [r["step"] for r in validated] == [12] and {"psnr", "psnr_copy", "iou", "iou_copy"} <= set(validated[0])


@pytest.mark.skipif(not any(shutil.which(name) for name in ("c++", "g++", "clang++")),
                    reason="TorchInductor needs a C++ compiler")
def test_compiled_blocks_train_the_same_model_as_uncompiled_ones(dataset, tmp_path):
    """`compile: true` (`merge.backbones.compile_blocks`) changes the speed, not the model: 4 cpu-tiny steps log
    the uncompiled run's losses within 1e-3 relative (measured here: equal to the 6 decimals logged) and save the
    same weight names."""
    from safetensors import safe_open

    runs = {}
    for compiled in (False, True):
        config = small_config(tmp_path, max_steps=4, checkpoint_every=4, validate_every=4, compile=compiled)
        runs[compiled] = tmp_path / f"compiled-{compiled}"
        assert main(["train", "--config", str(config), "--data", str(dataset), "-o", str(runs[compiled])]) == 0
    plain, compiled = losses(runs[False]), losses(runs[True])
    assert [step for step, _ in compiled] == [1, 2, 3, 4]
    assert all(abs(a - b) <= 1e-3 * abs(a) for (_, a), (_, b) in zip(plain, compiled, strict=True))
    names = []
    for run in runs.values():
        with safe_open(str(run / "model" / "transformer" / "diffusion_pytorch_model.safetensors"), "pt") as weights:
            names.append(sorted(weights.keys()))
    assert names[0] == names[1]


def _torchrun(config: Path, dataset: Path, run: Path, *extra: str, sharded: bool = False):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "SPLITMERGE_CPU_FSDP": str(int(sharded))}
    result = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", "29531", "-m", "splitmerge.cli",
                             "train", "--config", str(config), "--data", str(dataset), "-o", str(run), *extra],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else None


def _final_weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "model" / "transformer" / "diffusion_pytorch_model.safetensors"))


def test_two_processes_save_resume_and_continue_with_the_same_losses(dataset, tmp_path):
    """Two gloo processes, under DDP and sharded (FSDP2, as accelerate shards on GPUs: `merge.sharding`): each
    run stopped at step 2 (a checkpoint gathered from both, written by one) and resumed logs the losses of the
    straight run and ends with its very weights and moving average; DDP's processes keep identical weights;
    sharded and unsharded runs train the same model (losses within 1e-4 relative: only the order of the sums
    differs)."""
    import torch

    config = small_config(tmp_path, max_steps=4, checkpoint_every=2, validate_every=4, ema=0.9)
    runs = {}
    for sharded in (False, True):
        straight, resumed = tmp_path / f"straight-{sharded}", tmp_path / f"resumed-{sharded}"
        summary = _torchrun(config, dataset, straight, sharded=sharded)
        assert summary["processes"] == 2 and summary["sharded"] == sharded and summary["weights"] == "ema"
        assert summary["weight_checksums"][0] == summary["weight_checksums"][1]
        _torchrun(config, dataset, resumed, "--stop-at", "2", sharded=sharded)
        assert sorted(p.name for p in (resumed / "checkpoints").iterdir()) == ["step-000002"]
        assert json.loads((resumed / "summary.json").read_text())["steps"] == 2
        assert _torchrun(config, dataset, resumed, "--resume", sharded=sharded)["resumed_from"] == 2
        assert losses(resumed) == losses(straight) and len(losses(straight)) == 4
        first, second = _final_weights(straight), _final_weights(resumed)
        assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
        # both processes sampled the validation clips (a sharded model needs them all); one wrote them
        assert len((straight / "validation.jsonl").read_text().splitlines()) == 1
        runs[sharded] = straight
    for (_, plain), (_, sharded) in zip(losses(runs[False]), losses(runs[True]), strict=True):
        assert abs(plain - sharded) <= 1e-4 * abs(plain)


def test_config_errors_and_schedule(tmp_path):
    config = TrainConfig(max_steps=100, warmup_steps=10, learning_rate=1.0)
    assert learning_rate(config, 0) == pytest.approx(0.1) and learning_rate(config, 9) == pytest.approx(1.0)
    assert learning_rate(config, 99) < 0.01
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_sizes: 3\n")
    with pytest.raises(OptionError, match="unknown fields batch_sizes"):
        TrainConfig.load(bad)
    with pytest.raises(OptionError, match="preset 'huge'"):
        preset_path("huge")
    assert main(["train", "--preset", "cpu-tiny", "-o", str(tmp_path / "r")]) == 2  # no --data
    with pytest.raises(OptionError, match="augment: .*flip_chance"):
        TrainConfig(augment={"flip_chance": 0.5})
    assert not tmp_path.joinpath("r").exists()


def test_augmentation_settings_come_from_the_config_and_survive_no_augment(tmp_path, monkeypatch):
    """A config may change the augmentation (here: mirror half the inputs); --no-augment switches the transforms
    off but keeps those settings, which validation draws from (enabled again), so both ablation arms are
    validated on the same inputs."""
    from splitmerge.merge.train import augment_settings

    config = small_config(tmp_path, augment={"flip_p": 0.5})
    assert augment_settings(TrainConfig.load(config)).flip_p == 0.5
    assert augment_settings(TrainConfig.load(preset_path("cpu-small"))).flip_p == 0.7  # the paper's
    seen = {}
    monkeypatch.setattr("splitmerge.merge.train.train", lambda config, run, resume=False: seen.update(
        augment=config.augment) or {"main_process": False})
    main(["train", "--config", str(config), "--data", str(tmp_path), "-o", str(tmp_path / "r"), "--no-augment"])
    assert seen["augment"] == {"flip_p": 0.5, "enabled": False}


def _tiny_t5(folder: Path, kind: str) -> int:
    """A tiny T5/UMT5 encoder and a word-level tokenizer saved as a diffusers pipeline lays them out."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["<pad>", "</s>", "<unk>", "a", "cup", "cat", "box", "ball", "moves", "left", "right", "on", "grass"]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>",
                                         unk_token="<unk>").save_pretrained(folder / "tokenizer")
    config_cls = transformers.UMT5Config if kind == "umt5" else transformers.T5Config
    model_cls = transformers.UMT5EncoderModel if kind == "umt5" else transformers.T5EncoderModel
    model_cls(config_cls(vocab_size=len(words), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2)
              ).save_pretrained(folder / "text_encoder")
    return 32


@pytest.mark.parametrize("preset", ["cogvideox-5b-i2v-stm", "wan-1.3b-stm"])
def test_gpu_presets_build_from_tiny_random_variants(preset, tmp_path, monkeypatch):
    import diffusers
    import torch

    from splitmerge.merge.backbones import input_projection
    from splitmerge.merge.train import build_composer

    torch.manual_seed(0)
    folder = tmp_path / "weights"
    if preset.startswith("cogvideox"):
        text_dim = _tiny_t5(folder, "t5")
        diffusers.AutoencoderKLCogVideoX(down_block_types=("CogVideoXDownBlock3D",) * 4,
                                         up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8,) * 4,
                                         latent_channels=4, layers_per_block=1, norm_num_groups=2
                                         ).save_pretrained(folder / "vae")
        diffusers.CogVideoXTransformer3DModel(  # image-to-video: noisy 4 + image 4 latent channels
            num_attention_heads=2, attention_head_dim=16, in_channels=8, out_channels=4, time_embed_dim=32,
            text_embed_dim=text_dim, num_layers=1, sample_width=6, sample_height=4, sample_frames=9,
            max_text_seq_length=12).save_pretrained(folder / "transformer")
        monkeypatch.setenv("SPLITMERGE_COGVIDEOX", str(folder))
        expected_inputs = 12   # 4 + 4 + 4, no matte channel (the paper's preset)
    else:
        text_dim = _tiny_t5(folder, "umt5")
        diffusers.AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                   temperal_downsample=[False, True, True], latents_mean=[0.0] * 4,
                                   latents_std=[1.0] * 4).save_pretrained(folder / "vae")
        diffusers.WanTransformer3DModel(  # text-to-video: 4 latent channels in
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
            text_dim=text_dim, freq_dim=32, ffn_dim=64, num_layers=1, rope_max_seq_len=64
        ).save_pretrained(folder / "transformer")
        monkeypatch.setenv("SPLITMERGE_WAN", str(folder))
        expected_inputs = 13   # 4 + 4 + 4 + matte
    config = TrainConfig.load(preset_path(preset), frames=9, size=(32, 48))
    config.composer["text_length"] = 12
    model = build_composer(config)
    assert input_projection(model.transformer, model.config.backbone).weight.shape[1] == expected_inputs
    b, t, (h, w) = 1, config.frames, config.size
    alpha = torch.zeros(b, 1, t, h, w)
    alpha[..., 8:24, 12:36] = 1
    batch = {"video": torch.rand(b, 3, t, h, w) * 2 - 1, "foreground": torch.rand(b, 3, t, h, w) * 2 - 1,
             "alpha": alpha, "alpha_target": alpha, "background": torch.rand(b, 3, t, h, w) * 2 - 1,
             "caption": ["a cat moves left on grass"]}
    out = model.loss(batch, torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and config.mixed_precision == "bf16"
    monkeypatch.delenv("SPLITMERGE_WAN", raising=False)
    monkeypatch.delenv("SPLITMERGE_COGVIDEOX", raising=False)
    with pytest.raises(OptionError, match="set the environment variable SPLITMERGE_"):
        TrainConfig.load(preset_path(preset))


def test_lora_fine_tune_trains_adapters_only_and_saves_a_peft_adapter(dataset, tmp_path):
    import diffusers
    import torch
    import yaml

    from splitmerge.merge.backbones import input_projection

    torch.manual_seed(0)
    base = tmp_path / "base"
    diffusers.WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16,
                                    in_channels=12, out_channels=12, text_dim=384, freq_dim=32, ffn_dim=64,
                                    num_layers=2, rope_max_seq_len=64).save_pretrained(base)
    record = yaml.safe_load(preset_path("cpu-tiny").read_text())
    record["composer"].update(text_encoder="none", text_length=4, lora_rank=4, backbone_config={}, output="direct")
    record.update(pretrained=str(base), max_steps=3, checkpoint_every=3, validate_every=3, validation_steps=2)
    config_path = tmp_path / "lora.yaml"
    config_path.write_text(yaml.safe_dump(record))
    run = tmp_path / "run"
    assert main(["train", "--config", str(config_path), "--data", str(dataset), "-o", str(run)]) == 0
    saved = {p.relative_to(run / "model").as_posix() for p in (run / "model").rglob("*") if p.is_file()}
    assert {"composer.json", "input_projection.safetensors", "adapter/adapter_model.safetensors",
            "adapter/adapter_config.json"} <= saved and not any(p.startswith("transformer/") for p in saved)
    model = Composer.from_pretrained(run / "model")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in model.parameters())
    pretrained = diffusers.WanTransformer3DModel.from_pretrained(base)
    frozen = dict(pretrained.named_parameters())
    block = "blocks.0.ffn.net.0.proj.weight"
    assert torch.equal(dict(model.transformer.named_parameters())[block], frozen[block])   # the base is untouched
    assert input_projection(model.transformer, "wan").weight.shape[1] == 3 * 12 + 1  # cpu-tiny: 2x2 cells
    again = Composer.from_pretrained(run / "model")
    batch = {k: v[:1] if torch.is_tensor(v) else v[:1] for k, v in
             {"video": torch.rand(1, 3, 8, 32, 48), "foreground": torch.rand(1, 3, 8, 32, 48),
              "alpha": torch.ones(1, 1, 8, 32, 48), "alpha_target": torch.ones(1, 1, 8, 32, 48),
              "background": torch.rand(1, 3, 8, 32, 48), "caption": ["x"]}.items()}
    assert model.loss(batch, torch.Generator().manual_seed(0))["loss"].item() == \
        again.loss(batch, torch.Generator().manual_seed(0))["loss"].item()


def test_a_trained_composer_composes_through_sm_compose(dataset, tmp_path):

    import splitmerge as sm
    from splitmerge.data.synthetic import render_scene

    config = small_config(tmp_path, max_steps=2, checkpoint_every=2, validate_every=2)
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--data", str(dataset), "-o", str(run)]) == 0
    layers, _ = render_scene(7, frames=21, size=(48, 64))  # another length and size than it trained at
    background = sm.Video(layers.background, layers.fps)
    first = sm.compose(fg=layers, background=background, method="stm", model=str(run / "model"), steps=2, seed=3)
    again = sm.compose(fg=layers, background=background, method="stm", model=str(run / "model"), steps=2, seed=3)
    assert first.frames.shape == layers.frames.shape and np.array_equal(first.frames, again.frames)
    untouched = first.alpha == 0
    assert np.array_equal(first.frames[untouched], layers.background[untouched])  # the background kept exactly
    assert first.meta["matte"] == "model" and first.meta["windows"] == 4  # 21 frames in 8-frame windows
    assert "full resolution" in first.meta["rendered"]  # cpu-tiny is a warp Composer
    with pytest.raises(OptionError, match="no Composer"):
        sm.compose(fg=layers, background=background, method="stm", model=str(tmp_path / "none"))

    # A layer Composer has no map to apply: it generates at its size and keeps the background outside its matte.
    layer_config = small_config(tmp_path, max_steps=2, checkpoint_every=2, validate_every=2,
                                composer={**yaml.safe_load(config.read_text())["composer"], "output": "layer"})
    assert main(["train", "--config", str(layer_config), "--data", str(dataset), "-o", str(tmp_path / "lr")]) == 0
    kept = sm.compose(fg=layers, background=background, method="stm", model=str(tmp_path / "lr" / "model"), steps=2)
    assert np.array_equal(kept.frames[kept.alpha == 0], layers.background[kept.alpha == 0])
    raw = sm.compose(fg=layers, background=background, method="stm", model=str(tmp_path / "lr" / "model"), steps=2,
                     preserve_background=False)
    assert raw.alpha is None and raw.meta["preserved"] is False


def test_a_fresh_warp_composer_composes_exactly_a_copy_paste_at_full_resolution(tmp_path, monkeypatch):
    """The warp map is applied to the subject at the background's own size: an untrained warp Composer (the
    identity map) gives exactly copy-paste, pixel for pixel, though it runs at 32x48 on a 48x64 clip."""
    import torch

    import splitmerge as sm
    from splitmerge.data.synthetic import render_scene
    from splitmerge.video.layers import composite

    record = yaml.safe_load(preset_path("cpu-tiny").read_text())["composer"]
    torch.manual_seed(0)
    model = Composer(ComposerConfig(**{**record, "text_encoder": "none", "sample_frames": 8,
                                       "sample_size": [32, 48]}))
    model.save_pretrained(tmp_path / "fresh")
    layers, _ = render_scene(5, frames=11, size=(48, 64))
    result = sm.compose(fg=layers, background=sm.Video(layers.background, layers.fps), method="stm",
                        model=str(tmp_path / "fresh"), steps=2)
    assert np.array_equal(result.frames, composite(layers.foreground, layers.alpha, layers.background))
    assert np.allclose(result.alpha, layers.alpha, atol=1e-6) and result.meta["mirrored"] == [False]
    # Two subjects, each placed by its own map over the result so far: here, copy-paste of both in order.
    other, _ = render_scene(6, frames=11, size=(48, 64))
    both = sm.compose(fg=[layers, other], background=sm.Video(layers.background, layers.fps), method="stm",
                      model=str(tmp_path / "fresh"), steps=2)
    expected = composite(other.foreground, other.alpha, composite(layers.foreground, layers.alpha,
                                                                   layers.background))
    assert np.abs(both.frames.astype(int) - expected).max() <= 1  # (float rounding at .5, a few pixels)
    assert both.meta["mirrored"] == [False, False]
    # The caption says which way the subject moves: a layer running the other way is mirrored back (here about
    # the frame's centre: the identity map), unless mirror="keep".
    background = sm.Video(layers.background, layers.fps)
    flipped = sm.Layers(layers.frames, layers.alpha[:, :, ::-1].copy(), layers.foreground[:, :, ::-1].copy(),
                        layers.background, layers.fps, layers.caption)
    back = sm.compose(fg=flipped, background=background, method="stm", model=str(tmp_path / "fresh"), steps=2)
    assert back.meta["mirrored"] == [True] and back.meta["mirror"] == "caption"
    assert np.allclose(back.alpha, layers.alpha, atol=1e-6)
    kept = sm.compose(fg=flipped, background=background, method="stm", model=str(tmp_path / "fresh"), steps=2,
                      mirror="keep")
    assert kept.meta["mirrored"] == [False] and np.allclose(kept.alpha, flipped.alpha, atol=1e-6)
    # mirror="model": the Composer's own first-step choice (patched here to mirror), unless one is forced.
    sampled = Composer.warp_parameters
    monkeypatch.setattr(Composer, "warp_parameters", lambda self, *args, flip=None, **kwargs: (
        lambda found: (found[0], torch.full((1,), 5.0) if flip is None else flip, *found[2:]))(
        sampled(self, *args, flip=flip, **kwargs)))
    chosen = sm.compose(fg=layers, background=background, method="stm", model=str(tmp_path / "fresh"), steps=2,
                        mirror="model")
    assert chosen.meta["mirrored"] == [True] and np.allclose(chosen.alpha, layers.alpha[:, :, ::-1], atol=1e-6)
    # mirror="auto" (the default) is the model's choice for a Composer with a scene reader, which learnt it.
    Composer(ComposerConfig(**{**record, "text_encoder": "none", "sample_frames": 8, "sample_size": [32, 48],
                               "reader_width": 4})).save_pretrained(tmp_path / "reader")
    auto = sm.compose(fg=layers, background=background, method="stm", model=str(tmp_path / "reader"), steps=2)
    assert auto.meta["mirror"] == "model" and auto.meta["mirrored"] == [True]
    assert sm.compose(fg=layers, background=background, method="stm", model=str(tmp_path / "fresh"), steps=2,
                      mirror=False).meta["mirrored"] == [False]
    with pytest.raises(OptionError, match="mirror 'sideways'"):
        sm.compose(fg=layers, background=background, method="stm", model=str(tmp_path / "fresh"), steps=2,
                   mirror="sideways")


def test_windows_cover_the_clip_and_cross_fade():
    from splitmerge.merge.windows import CrossFade, window_starts, window_weights

    assert window_starts(5, 8, 2) == [0] and window_starts(8, 8, 2) == [0]
    assert window_starts(21, 8, 2) == [0, 4, 9, 13] and window_starts(14, 8, 2) == [0, 6]
    covered = sorted({f for s in window_starts(21, 8, 2) for f in range(s, s + 8)})
    assert covered == list(range(21))
    middle = window_weights(8, 2, first=False, last=False)
    assert list(middle[:2]) == pytest.approx([1 / 3, 2 / 3]) and list(middle[-2:]) == pytest.approx([2 / 3, 1 / 3])
    assert window_weights(8, 2, first=True, last=True).tolist() == [1.0] * 8
    # Windows that agree on every frame (a ramp, sampled as each window sees it) join into exactly that ramp; the
    # frames past the clip's end (the last one repeated) are dropped.
    fade = CrossFade(21, 8)
    assert fade.starts == window_starts(21, 8, 2) and fade.picks(3).tolist() == list(range(13, 21))
    for index in range(len(fade)):
        fade.add(index, np.stack([fade.picks(index), -fade.picks(index)], axis=1).astype(np.float32))
    assert np.allclose(fade.result(), np.stack([np.arange(21), -np.arange(21)], axis=1))
    short = CrossFade(5, 8)
    assert short.picks(0).tolist() == [0, 1, 2, 3, 4, 4, 4, 4] and short.kept(0) == 5
    with pytest.raises(RuntimeError, match="not every frame"):
        short.result()


def test_ema_weights_become_the_final_model(dataset, tmp_path):
    import torch
    from safetensors.torch import load_file

    config = small_config(tmp_path, max_steps=3, checkpoint_every=3, validate_every=3, ema=0.5)
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--data", str(dataset), "-o", str(run)]) == 0
    shadow = load_file(str(run / "checkpoints" / "step-000003" / "ema.safetensors"))
    final = dict(Composer.from_pretrained(run / "model").named_parameters())
    raw = dict(Composer.from_pretrained(run / "checkpoints" / "step-000003" / "composer").named_parameters())
    name = next(iter(shadow))
    assert torch.equal(final[name], shadow[name]) and not torch.equal(raw[name], shadow[name])
    assert json.loads((run / "summary.json").read_text())["weights"] == "ema"


def test_validation_follows_the_honest_protocol(dataset):
    """Validation clips are transformed at flip p 0.5 whatever the run's flip p, and captioned by the plain prompt
    of the input as given (no left or right), never by the truth's caption."""
    import re

    from splitmerge.data.manifest import read_manifest
    from splitmerge.data.torch_dataset import collate_samples
    from splitmerge.merge.train import VALIDATION_FLIP_P, _validation_batch

    config = TrainConfig(data=str(dataset), frames=8, size=(32, 48), validation_clips=6, augment={"flip_p": 1.0})
    batch = _validation_batch(config, collate_samples)
    truths = {row["caption"] for row in read_manifest(dataset)}
    assert VALIDATION_FLIP_P == 0.5 and len(batch["caption"]) == len(batch["transform"])
    assert {record["flip"] for record in batch["transform"]} == {True, False}  # the run's p 1.0 is not used
    for caption in batch["caption"]:
        assert caption not in truths and not re.search(r"\b(left|right)", caption), caption


def test_a_drawn_composer_casts_its_shadow_at_full_resolution_streamed_as_in_memory(tmp_path):
    """A drawn warp Composer (effects_layer, relight) whose output bias casts a dark shadow: `sm.compose` gives
    its gain as `Composite.effects`, darkens the background only there (exact elsewhere), and the streamed
    `compose_to_file` writes the same frames and a version 2 Layers folder with the same effects."""
    import torch

    import splitmerge as sm
    from splitmerge.data.synthetic import render_scene
    from splitmerge.merge.composer import ComposerConfig
    from splitmerge.merge.stream import compose_to_file
    from splitmerge.merge.warp import SHADOW_DARK, SHADOW_SHEAR

    record = yaml.safe_load(preset_path("cpu-tiny").read_text())["composer"]
    torch.manual_seed(0)
    model = Composer(ComposerConfig(**{**record, "text_encoder": "none", "sample_frames": 8,
                                       "sample_size": [32, 48], "effects_layer": True, "relight": True}))
    with torch.no_grad():  # every cell votes for a dark shadow leaning right: darkness 0.9 sigmoid(6 - 4) = 0.79
        model.transformer.proj_out.bias.view(-1, model.out_channels)[:, SHADOW_DARK] = 6.0
        model.transformer.proj_out.bias.view(-1, model.out_channels)[:, SHADOW_SHEAR] = 1.0
    model.save_pretrained(tmp_path / "drawn")
    layers, _ = render_scene(5, frames=11, size=(48, 64))
    layers = sm.Layers(layers.frames, layers.alpha, layers.foreground, layers.background, layers.fps,
                       layers.caption)  # the input layer has no shadow
    layers.save(tmp_path / "subject")
    sm.write_video(tmp_path / "street.mp4", sm.Video(layers.background, layers.fps))
    street = sm.read_video(tmp_path / "street.mp4")
    kept = sm.compose(fg=sm.Layers.load(tmp_path / "subject"), background=street, method="stm",
                      model=str(tmp_path / "drawn"), steps=2)  # (what the streamed path reads: the saved layer)
    assert kept.effects is not None and kept.effects.shape == layers.alpha.shape
    shade = kept.effects < 1
    assert shade.mean() > 0.01 and kept.effects.min() < 0.5  # a visible shadow beside the subject
    untouched = (kept.alpha == 0) & ~shade
    assert np.array_equal(kept.frames[untouched], street.frames[untouched])  # the background exact elsewhere
    darker = shade & (kept.alpha == 0)
    assert (kept.frames[darker].astype(int).sum(-1) <= street.frames[darker].astype(int).sum(-1)).all()
    kept.save(tmp_path / "kept.mp4")
    compose_to_file(tmp_path / "subject", tmp_path / "street.mp4", tmp_path / "streamed.mp4", method="stm",
                    model=str(tmp_path / "drawn"), steps=2, layers_out=tmp_path / "out", chunk=3)
    streamed, in_memory = sm.read_video(tmp_path / "streamed.mp4"), sm.read_video(tmp_path / "kept.mp4")
    assert np.array_equal(streamed.frames, in_memory.frames)
    out = sm.Layers.load(tmp_path / "out")
    assert out.effects is not None and np.abs(out.effects - kept.effects).max() < 1e-4
    rebuilt = np.abs(out.recomposite().astype(int) - out.frames.astype(int))  # fg + (1 - a) E bg, H.264 layers
    assert rebuilt.mean() < 1.5


def test_the_drawn_preset_builds_and_its_ablation_flags_switch_the_shadow_and_the_reader_off(tmp_path,
                                                                                             monkeypatch):
    """`cpu-small-drawn` is `cpu-small` plus the drawn outputs (18: the warp's 12, the light's 6), a scene
    reader and their losses, under bf16 autocast where the CPU runs it fast (`auto`); `--no-effects-layer`
    trains it without the cast shadow, `--no-reader` without the reader (the ablations), nothing else changed;
    `--no-appearance` zeroes `appearance_weight` (off in the preset: measured worse)."""
    from splitmerge.merge.composer import ComposerConfig

    drawn = TrainConfig.load(preset_path("cpu-small-drawn"))
    plain = TrainConfig.load(preset_path("cpu-small"))
    added = {key: value for key, value in drawn.composer.items() if plain.composer.get(key) != value}
    assert added == {"inverse_weight": 1.0, "mirror_weight": 0.3, "effects_layer": True, "effects_weight": 1.0,
                     "relight": True, "reader_width": 32, "reader_symmetric": True, "mirror_margin": 4.0,
                     "reader_depth_weight": 1.0, "statistics_weight": 1.0}
    assert (drawn.reader_warmup, drawn.reader_samples) == (6000, 16000)
    assert drawn.mixed_precision == "auto" and plain.mixed_precision == "no"
    assert Composer(ComposerConfig(**{**drawn.composer, "text_encoder": "none",
                                      "backbone_config": {**drawn.composer["backbone_config"],
                                                          "num_layers": 1}})).out_channels == 18
    seen = {}
    monkeypatch.setattr("splitmerge.merge.train.train", lambda config, run, resume=False: seen.update(
        composer=config.composer) or {"main_process": False})
    main(["train", "--preset", "cpu-small-drawn", "--data", str(tmp_path), "-o", str(tmp_path / "r"),
          "--no-effects-layer"])
    assert seen["composer"]["effects_layer"] is False and seen["composer"]["effects_weight"] == 0.0
    assert seen["composer"]["reader_light_weight"] == 0 and seen["composer"]["light_reader_width"] == 0
    assert seen["composer"]["relight"] is True and seen["composer"]["reader_width"] == 32
    main(["train", "--preset", "cpu-small-drawn", "--data", str(tmp_path), "-o", str(tmp_path / "r"),
          "--no-reader"])
    assert seen["composer"]["reader_width"] == 0 and seen["composer"]["effects_layer"] is True
    assert seen["composer"]["reader_symmetric"] is False and seen["composer"]["reader_light_weight"] == 0
    assert seen["composer"]["light_reader_width"] == 0 and seen["composer"]["reader_depth_weight"] == 0
    main(["train", "--preset", "cpu-small-drawn", "--data", str(tmp_path), "-o", str(tmp_path / "r"),
          "--no-appearance"])
    assert seen["composer"]["appearance_weight"] == 0.0 and seen["composer"]["reader_width"] == 32


def test_the_scene_reader_warms_up_alone_before_the_composer_and_not_again_on_resume(dataset, tmp_path,
                                                                                     monkeypatch):
    """`reader_warmup`: the reader trains alone first (its own loss on cached single frames, logged to
    reader_warmup.jsonl), then the Composer's steps start from it; the same seed gives the same reader; a resumed
    run keeps its checkpoint's reader instead of warming up again; a config without a reader is refused."""
    import math

    import torch

    from splitmerge.merge.train import build_composer, warm_up_reader

    record = yaml.safe_load(preset_path("cpu-tiny").read_text())
    composer = {**record["composer"], "reader_width": 4, "reader_symmetric": True, "inverse_weight": 1.0,
                "mirror_weight": 1.0, "effects_layer": True, "reader_light_weight": 1.0,  # its light fitted too,
                "light_reader_width": 4,  # by a light reader of its own
                "reader_depth_weight": 1.0}  # and its map against the synthetic scenes' depth law
    config = small_config(tmp_path, composer=composer, max_steps=4, checkpoint_every=2, validate_every=4,
                          reader_warmup=40, reader_samples=24, reader_scenes=8, reader_batch=8)
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--data", str(dataset), "-o", str(run), "--stop-at", "2"]) == 0
    logged = [json.loads(line) for line in (run / "reader_warmup.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logged] == [40] and math.isfinite(logged[0]["loss"])
    steps = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(entry["loss_reader"]) for entry in steps)

    def warmed():
        settings = TrainConfig.load(config, data=str(dataset))
        torch.manual_seed(settings.seed)
        model = build_composer(settings)
        assert warm_up_reader(model, settings)["step"] == 40
        return {**model.reader.state_dict(), **{"light." + k: v for k, v in model.light_reader.state_dict().items()}}

    first, second = warmed(), warmed()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert float(first["vote.weight"].abs().sum()) > 0  # it learnt (a fresh reader votes 0)
    assert float(first["light.vote.weight"].abs().sum()) > 0
    monkeypatch.setattr("splitmerge.merge.train.warm_up_reader", lambda *args: pytest.fail("warmed up again"))
    assert main(["train", "--config", str(config), "--data", str(dataset), "-o", str(run), "--resume"]) == 0
    assert Composer.from_pretrained(run / "model").light_reader is not None
    with pytest.raises(OptionError, match="no scene reader"):
        TrainConfig.load(small_config(tmp_path, reader_warmup=10))
    with pytest.raises(OptionError, match="reader_augment"):
        TrainConfig(reader_augment={"flop": 0.5})
    with pytest.raises(OptionError, match="reader_scenes"):
        TrainConfig(reader_scenes=-1)
    with pytest.raises(OptionError, match="reader_depth_weight"):
        ComposerConfig(reader_depth_weight=1.0)  # no reader
