"""`splitmerge train`: the Composer's training loop, in one file (accelerate: CPU, one GPU, DDP or FSDP).

Every random draw is a function of (seed, step, rank): which clips a step trains on, their augmentation, the
input noise on fg and bg, the caption dropout and the diffusion noise. So the run needs no saved RNG state: a
run resumed from a checkpoint (model, optimizer and schedule, all safetensors/JSON) continues with exactly the
losses an uninterrupted run logs.

Run folder: ``config.json`` (the resolved config), ``log.jsonl`` (one line per step: step, loss, loss_fg,
loss_bg, lr, seconds), ``loss.png``, ``checkpoints/step-NNNNNN/`` (``composer/``, ``optimizer.safetensors``,
``state.json``, ``ema.safetensors`` when EMA is on), ``validation/step-NNNNNN.png`` (inputs | generated |
truth on held-out clips), ``validation.jsonl`` (their PSNR, colour error, placement IoU and mirror accuracy
beside copy-paste's) and ``model/`` (the final Composer, loadable with `Composer.from_pretrained`; the EMA weights
when EMA is on).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_file
from ..config_types import check_field_types, is_integer
from ..errors import MissingFileError, OptionError
from ..paths import check_output
from .backbones import compile_blocks
from .checkpoint import (Ema, gather_optimizer, gather_weights, latest_checkpoint, prune_checkpoints, restore,
                         write_checkpoint)
from .composer import Composer, ComposerConfig
from .light_fit import fit_clip_light, fit_light
from .precision import MODES as PRECISIONS
from .precision import resolve as resolve_precision
from .sharding import check_sharding, cpu_fsdp_requested, is_sharded, shard_on_cpu, unsharded, weight_checksum
from .random_weights import parse as parse_random
from .random_weights import reference as random_reference
from .text_cache import TextCache
from .weight_files import WEIGHT_REFERENCES, check_weights, expand_variables, resolve

CONFIGS = Path(__file__).resolve().parents[1] / "configs"  # presets ship inside the package
# The scene reader's fresh procedural scenes (`reader_scenes`) take training seeds from here up: far above a
# built mix's (0 to its --synthetic count), below the benchmarks' (`data.synthetic.BENCHMARK_SEED`).
READER_SCENE_SEED = 500_000
READER_SCENE_SEEDS = 400_000


@dataclass
class TrainConfig:
    """A training run. Presets are YAML files of these fields (``splitmerge/configs/<name>.yaml``); flags
    override."""

    composer: dict = field(default_factory=dict)         # ComposerConfig fields
    pretrained: str | None = None                        # a diffusers transformer folder to widen and fine-tune
    architecture: str | None = None                      # what `pretrained` is (configs/architectures/<name>)
    random_init: bool = False                            # that architecture with random weights, nothing loaded
    #                                                      (a smoke test: `merge.random_weights`)
    random_init_layers: int | None = None                # with random_init: the transformer's and T5's depth
    data: str | None = None
    split: str | None = "train"
    frames: int = 8
    size: tuple[int, int] = (32, 48)
    batch_size: int = 2
    learning_rate: float = 1e-3
    reader_warmup: int = 0                               # steps of the scene reader alone first (`warm_up_reader`)
    reader_samples: int = 4000                           # its cached training frames, one per augmented clip
    reader_scenes: int = 0                               # + fresh procedural scenes, one frame each (`SceneDataset`)
    reader_batch: int = 32
    reader_learning_rate: float = 2e-3
    reader_augment: dict = field(default_factory=lambda: {"flip_p": 0.5, "crop_p": 1.0})  # its frames' changes
    weight_decay: float = 0.0
    warmup_steps: int = 10
    schedule: str = "cosine"                             # cosine or constant (after warm-up)
    max_steps: int = 100                                 # the schedule's length
    stop_at: int | None = None                           # stop after this step (the schedule is kept)
    grad_clip: float = 1.0
    augment: bool | dict = True                          # the paper's transformation-aware augmentation; a
    #                                                      dict sets AugmentConfig fields, e.g. {flip_p: 0.5}
    input_noise: bool = True                             # the paper's noise on fg and bg inputs
    ema: float | None = None                             # EMA decay of the weights, e.g. 0.999
    mixed_precision: str = "no"                          # no (fp32), auto, bf16, fp16 (`merge.precision`)
    compile: bool = False                                # compile the backbone's blocks (`compile_blocks`)
    checkpoint_every: int = 50
    keep_last: int | None = None                         # checkpoints kept (the newest); None keeps every one
    text_cache: bool | str = False                       # captions' features kept in RUN/text_cache (each encoded
    #                                                      once: `merge.text_cache`; for large text encoders), or
    #                                                      in the folder given (shared by runs on the same captions)
    validate_every: int = 50
    validation_clips: int = 2
    validation_steps: int = 10
    seed: int = 0
    num_workers: int = 0                                 # DataLoader worker processes reading batches ahead

    def __post_init__(self):
        check_field_types(self, "training config")
        if min(self.size) < 2:
            raise OptionError(f"size {self.size}: height and width must be at least 2 pixels")
        self.size = tuple(int(v) for v in self.size)
        if self.mixed_precision not in PRECISIONS:
            raise OptionError(f"mixed_precision {self.mixed_precision!r}: expected one of {', '.join(PRECISIONS)}"
                              " (no: fp32; auto: bf16 where this machine runs it faster)")
        if self.schedule not in ("cosine", "constant"):
            raise OptionError(f"schedule {self.schedule!r}: expected cosine or constant")
        for name in ("frames", "batch_size", "max_steps", "checkpoint_every", "validate_every", "reader_samples",
                     "reader_batch"):
            if int(getattr(self, name)) < 1:
                raise OptionError(f"{name} must be a positive integer")
        if not is_integer(self.num_workers) or self.num_workers < 0:
            raise OptionError(f"num_workers {self.num_workers!r}: the DataLoader's worker processes, 0 or more")
        if self.keep_last is not None and (not is_integer(self.keep_last) or self.keep_last < 1):
            raise OptionError(f"keep_last {self.keep_last!r}: the number of newest checkpoints kept, at least 1")
        if self.reader_warmup < 0:
            raise OptionError(f"reader_warmup {self.reader_warmup}: must be >= 0")
        if not is_integer(self.reader_scenes) or not 0 <= self.reader_scenes <= READER_SCENE_SEEDS:
            raise OptionError(f"reader_scenes {self.reader_scenes!r}: a count from 0 to {READER_SCENE_SEEDS}")
        if self.reader_warmup and not self.composer.get("reader_width"):
            raise OptionError("reader_warmup: the Composer has no scene reader (composer: {reader_width: W})")
        if self.stop_at is not None and not 1 <= int(self.stop_at) <= self.max_steps:
            raise OptionError(f"stop_at {self.stop_at}: must be between 1 and max_steps ({self.max_steps})")
        augment_settings(self)  # a malformed augment dict fails here, before any run folder exists
        try:
            replace(augment_settings(self), **self.reader_augment)
        except TypeError as error:
            raise OptionError(f"reader_augment: {error}") from None
        unknown = sorted(set(self.composer) - {item.name for item in fields(ComposerConfig)})
        if unknown:
            raise OptionError(f"composer: unknown fields {', '.join(unknown)}")
        ComposerConfig(**self.composer)  # validates early

    @classmethod
    def load(cls, path: str | Path, **overrides) -> "TrainConfig":
        """A YAML config (a preset or a user's file) with `overrides` (None values ignored)."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"{path}: no such training config")
        try:
            record = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise OptionError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
        if not isinstance(record, dict):
            raise OptionError(f"{path}: expected a mapping of TrainConfig fields, got {type(record).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(record) - known
        if unknown:
            raise OptionError(f"{path}: unknown fields {', '.join(sorted(unknown))}")
        record.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**_expand_except_weights(with_random_weights(record)))
        except OptionError as error:
            raise OptionError(f"{path}: {error}") from None


def with_random_weights(record: dict) -> dict:
    """`record` (TrainConfig fields) with its weights references replaced by random ones when it asks for
    ``random_init``: ``random:<architecture>/transformer`` and so on (`merge.random_weights`), so no weights folder
    (nor the variable naming it) is needed."""
    if not record.get("random_init"):
        if record.get("random_init_layers") is not None:
            raise OptionError("random_init_layers: only with random_init (--random-init)")
        return record
    architecture, layers = record.get("architecture"), record.get("random_init_layers")
    if not isinstance(architecture, str) or not record.get("pretrained"):
        raise OptionError("random_init: the config names no architecture to build (a pretrained preset such as "
                          "cogvideox-5b-i2v-stm or wan-1.3b-stm has one)")
    if layers is not None and (not is_integer(layers) or layers < 1):
        raise OptionError(f"random_init_layers {layers!r}: a depth of 1 or more")
    parse_random(random_reference(architecture))   # a bundled architecture, or a one-line error
    composer = dict(record.get("composer") or {})
    if isinstance(composer.get("codec"), dict) and composer["codec"].get("kind") == "vae":
        composer["codec"] = {**composer["codec"], "path": random_reference(architecture, "vae")}
    if composer.get("text_encoder") == "t5":
        composer["text_encoder_path"] = random_reference(architecture, "text_encoder", layers)
    return {**record, "composer": composer, "pretrained": random_reference(architecture, "transformer", layers)}


def _expand_except_weights(record: dict) -> dict:
    """`_expand` every value but the weights references (`pretrained` and the composer's
    `weight_files.WEIGHT_REFERENCES`), which stay as written (``$SPLITMERGE_WAN/vae``, so ``composer.json`` names
    them the same way) once `resolve` has checked them."""
    composer = record.get("composer")
    expanded = {key: value if key in ("pretrained", "composer") else _expand(value) for key, value in record.items()}
    references = [record.get("pretrained")]
    if isinstance(composer, dict):   # (anything else is refused by the config's own type checks)
        expanded["composer"] = {key: value if key in WEIGHT_REFERENCES else _expand(value)
                                for key, value in composer.items()}
        references += [composer.get(key) for key in WEIGHT_REFERENCES]
    for reference in references:
        if isinstance(reference, dict):
            reference = reference.get("path")
        if isinstance(reference, str):
            resolve(reference)
    return expanded


def _expand(value):
    """Environment variables in every string of a config ($DATA/clips); an unset one is an error that names it
    (`weight_files.expand_variables`)."""
    if isinstance(value, dict):
        return {key: _expand(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item) for item in value]
    if isinstance(value, str) and "$" in value:
        return expand_variables(value, f"config value {value!r}")
    return value


def build_composer(config: TrainConfig) -> Composer:
    """The Composer a config asks for: built from its settings, or around a pretrained backbone (widened)."""
    composer_config = ComposerConfig(**config.composer)
    check_weights(composer_config, config.pretrained)   # every folder named before the first one loads
    if config.pretrained:
        from .backbones import load_backbone

        composer_config.base = str(config.pretrained)   # the reference, as the config gives it (`resolve`)
        return Composer.from_backbone(composer_config, load_backbone(composer_config.backbone,
                                                                     resolve(config.pretrained),
                                                                     composer_config.backbone_config))
    return Composer(composer_config)


def preset_path(name: str) -> Path:
    """The YAML of the preset `name` (a plain name of a file in the package's configs folder, nothing else)."""
    known_names = {p.stem for p in CONFIGS.glob("*.yaml")}
    path = CONFIGS / f"{name}.yaml"
    if name not in known_names:
        known = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
        raise OptionError(f"preset {name!r}: unknown; expected one of {', '.join(known)}")
    return path


# ------------------------------------------------------------------------------------------------------ pieces


def warm_up_reader(model: Composer, config: TrainConfig, run: Path | None = None) -> dict:
    """Train the Composer's scene reader alone before the Composer's steps: on `reader_samples` single frames
    (one per clip of the training split, each clip with a fresh augmentation, cycling through the clips), then
    `reader_scenes` fresh procedural scenes' (`SceneDataset`, seeds from `READER_SCENE_SEED`; the
    run's augmentation with `reader_augment`'s changes: by default every frame cropped and mirrored at p 0.5, so
    the reader learns the evidence, not the training prior: at the paper's p 0.7 it learnt to mirror all), batches
    of `reader_batch` at `reader_learning_rate` (one-cycle schedule), `reader_warmup` steps, on its own loss
    (`Composer.reader_error`: the augmentation's inverse and flip, known for every sample; with
    `reader_light_weight` also its light against the light each frame's true effects show, `merge.light_fit`;
    with `reader_depth_weight` its map against the ground's depth law where a frame knows it, `merge.depth_law`).
    Inside the joint training its batch is the Composer's (4 clips on the CPU presets) at the transformer's rate,
    and in 500 steps it had not moved off chance (docs/training.md). Deterministic from `config.seed`; every
    process computes the same weights. Logs to ``RUN/reader_warmup.jsonl`` as it goes when `run` is given.
    Returns the last record."""
    from ..data.torch_dataset import SceneDataset, StmDataset, collate_samples

    augment = replace(augment_settings(config), **config.reader_augment) if config.augment else None
    frames = StmDataset(config.data, split=config.split, frames=1, size=config.size, augment=augment,
                        seed=config.seed)
    scenes = (SceneDataset(config.reader_scenes, READER_SCENE_SEED, frames=1, size=config.size, augment=augment,
                           seed=config.seed) if config.reader_scenes else None)

    def sample(index: int) -> dict:  # the dataset's clips cycled, then the fresh scenes
        if index >= config.reader_samples:
            return scenes[index - config.reader_samples]
        frames.set_epoch(index // len(frames))
        return frames[index % len(frames)]

    views, transforms = [], []  # per chunk: `reader_views` (n, K, 1, h, w) or None each; no samples kept
    lights = []  # per chunk with `reader_light_weight`: the light its truth's effects show (`fit_light`), each (n, 1)
    light = bool(model.config.reader_light_weight)
    extents, grounds = [], []  # per chunk with `reader_depth_weight`: the input matte's extent (n, 1, 2), ground (n, 2)
    total = config.reader_samples + config.reader_scenes
    for first in range(0, total, 256):
        batch = collate_samples([sample(index) for index in range(first, min(first + 256, total))])
        with torch.no_grad():
            views.append(model.reader_views(batch["foreground"], batch["alpha"], batch["background"]))
        transforms += batch["transform"]
        if light:
            lights.append(fit_light(batch["alpha_target"], batch["effects"]))
        depth = model.depth_inputs(batch["alpha"], batch["ground"], 1)
        if depth is not None:
            extents.append(depth[0])
            grounds.append(depth[1])
    conditions = [None if parts[0] is None else torch.cat(parts) for parts in zip(*views, strict=True)]
    fitted = {name: torch.cat([chunk[name] for chunk in lights]) for name in lights[0]} if lights else None
    extent, ground = (torch.cat(extents), torch.cat(grounds)) if extents else (None, None)
    height, width = config.size
    optimizer = torch.optim.AdamW([p for reader in model.readers().values() for p in reader.parameters()],
                                  lr=config.reader_learning_rate)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.reader_learning_rate,
                                                   total_steps=config.reader_warmup)
    generator = torch.Generator().manual_seed(config.seed)
    record, started = {}, time.perf_counter()
    log = None
    if run is not None:  # written as it goes (a warm-up of minutes should show progress), from the start again
        run.mkdir(parents=True, exist_ok=True)
        log = (run / "reader_warmup.jsonl").open("w")
    try:
        for step in range(config.reader_warmup):
            picks = torch.randint(0, len(transforms), (config.reader_batch,), generator=generator)
            loss = model.reader_error(*model.read_views(*(None if view is None else view[picks]
                                                          for view in conditions)),
                                      [transforms[i] for i in picks.tolist()], height, width,
                                      None if fitted is None else {k: v[picks] for k, v in fitted.items()},
                                      None if extent is None else (extent[picks], ground[picks]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if step % 50 == 49 or step + 1 == config.reader_warmup:
                record = {"step": step + 1, "loss": round(loss.item(), 6),
                          "seconds": round(time.perf_counter() - started, 3)}
                if log is not None:
                    log.write(json.dumps(record) + "\n")
                    log.flush()
    finally:
        if log is not None:
            log.close()
    return record


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine to zero or constant."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.learning_rate
    progress = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


class StepBatches(torch.utils.data.Dataset):
    """Step `step`'s batch for one rank, as a dataset a `DataLoader` can read ahead in worker processes: every
    sample is a pure function of (seed, step, index) (`StmDataset.sample`, the step as its epoch), so the batches
    are the same with any number of workers, and a resumed run starts at its step."""

    def __init__(self, dataset, config: TrainConfig, rank: int, world: int):
        from ..data.torch_dataset import collate_samples

        self.dataset, self.config, self.rank, self.world = dataset, config, rank, world
        self.collate = collate_samples

    def __len__(self) -> int:
        return self.config.max_steps

    def __getitem__(self, step: int) -> dict:
        indices = batch_indices(self.config, step, len(self.dataset), self.rank, self.world)
        return self.collate([self.dataset.sample(index, step) for index in indices])


def step_batches(dataset, config: TrainConfig, rank: int, world: int, start: int, last: int, pin: bool):
    """The batches of steps `start`..`last` - 1 in order: read ahead by `config.num_workers` worker processes
    (none: in this process), pinned in page-locked memory for a GPU when `pin`."""
    return torch.utils.data.DataLoader(StepBatches(dataset, config, rank, world), batch_size=None,
                                       sampler=range(start, last), num_workers=config.num_workers, pin_memory=pin,
                                       prefetch_factor=2 if config.num_workers else None,
                                       persistent_workers=False)


def batch_indices(config: TrainConfig, step: int, size: int, rank: int, world: int) -> list[int]:
    """The dataset indices rank `rank` trains on at `step`: every rank a different slice of one draw."""
    rng = np.random.default_rng([config.seed, step, 7])
    total = config.batch_size * world
    drawn = rng.permutation(size)[:total] if total <= size else rng.integers(0, size, total)
    return [int(i) for i in drawn[rank * config.batch_size:(rank + 1) * config.batch_size]]


def _plot_losses(run: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    if not rows:
        return
    steps = [r["step"] for r in rows]
    figure, axes = plt.subplots(figsize=(6, 3.2), dpi=100)
    for key, colour in (("loss", "#222"), ("loss_fg", "#d9534f"), ("loss_bg", "#3b7dd8")):
        values = np.array([r[key] for r in rows])
        window = max(1, len(values) // 30)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        axes.plot(steps[window - 1:], smooth, label=key, color=colour, linewidth=1.2)
    axes.set_xlabel("step")
    axes.set_yscale("log")
    axes.legend(fontsize=8)
    axes.set_title(f"training loss (moving mean over {max(1, len(rows) // 30)} steps)", fontsize=9)
    figure.tight_layout()
    with atomic_file(run / "loss.png") as temporary:
        figure.savefig(temporary, format="png")
    plt.close(figure)


# -------------------------------------------------------------------------------------------------------- loop


def train(config: TrainConfig, run: str | Path, resume: bool = False) -> dict:
    """Train (or resume) into the run folder `run`. Returns a summary (steps, last loss, seconds, paths).

    A new run that fails before its first checkpoint leaves no run folder behind."""
    fresh = not Path(run).exists()
    try:
        return _train(config, run, resume)
    except BaseException:
        if fresh and latest_checkpoint(Path(run)) is None:
            shutil.rmtree(run, ignore_errors=True)
        raise


def _train(config: TrainConfig, run: str | Path, resume: bool) -> dict:
    from accelerate import Accelerator

    from ..data.torch_dataset import NoiseConfig, StmDataset, add_input_noise, collate_samples
    from ..video.preview import grid, write_png

    if not config.data:
        raise OptionError("train: no dataset (--data DATASET)")
    run = check_output(run, [config.data, resolve(config.pretrained)], kind="folder")
    checkpoint = latest_checkpoint(run) if resume else None
    if not resume and run.exists() and any(run.iterdir()):
        raise OptionError(f"{run}: exists and is not empty; pass --resume to continue it, or use a new folder")
    if resume and not (run / "config.json").is_file():
        raise OptionError(f"{run}: no training run to resume (no config.json); start it without --resume")
    # cpu=True on a machine without CUDA, so torchrun's processes join one gloo group (MULTI_CPU).
    precision, reason = resolve_precision(config.mixed_precision)
    accelerator = Accelerator(mixed_precision=precision, cpu=not torch.cuda.is_available())
    rank, world = accelerator.process_index, accelerator.num_processes
    if accelerator.is_main_process and config.mixed_precision in ("auto", "bf16"):
        print(f"train: mixed precision {reason}", file=sys.stderr)
    torch.manual_seed(config.seed)  # the initial weights: the same on every rank
    config.composer = {**config.composer, "sample_frames": config.frames, "sample_size": list(config.size)}
    model = build_composer(config)
    if config.text_cache:   # each caption encoded once for the run (`merge.text_cache`)
        folder = run / "text_cache" if config.text_cache is True else check_output(
            Path(config.text_cache).expanduser(), [config.data], kind="folder", flag="text_cache")
        model.text_cache = TextCache(folder, model.text_cache_key())
    if config.compile and not compile_blocks(model.transformer):
        print("train: compile: no C++ compiler found (c++, g++ or clang++); the blocks run uncompiled",
              file=sys.stderr)
    light = bool(model.config.reader_light_weight)
    augment = augment_settings(config) if config.augment else None  # (a dict may say enabled: false)
    dataset = StmDataset(config.data, split=config.split, frames=config.frames, size=config.size, augment=augment,
                         seed=config.seed)
    refuse_upsampling(dataset.rows, config.size)
    if config.reader_warmup and checkpoint is None:
        warm_up_reader(model, config, run if accelerator.is_main_process else None)
    model, optimizer = _prepare(accelerator, model, config)
    core = accelerator.unwrap_model(model)
    main = accelerator.is_main_process
    start = restore(checkpoint, model, optimizer, core, main) if checkpoint is not None else 0
    ema = Ema(core, config.ema, updates=start) if config.ema else None
    if ema is not None and checkpoint is not None and (checkpoint / "ema.safetensors").is_file():
        ema.load(checkpoint / "ema.safetensors")
    noise = NoiseConfig(enabled=config.input_noise)
    if accelerator.is_main_process:
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
        for log in ("log.jsonl", "validation.jsonl"):
            _truncate_log(run / log, start)  # steps logged after the checkpoint are redone
    validation = _validation_batch(config, collate_samples)
    started, loss_value = time.perf_counter(), math.nan
    last = config.stop_at or config.max_steps
    batches = step_batches(dataset, config, rank, world, start, last, pin=accelerator.device.type == "cuda")
    step_seconds = []   # each step's forward, backward and update (not its checkpoint or validation)
    for step, batch in zip(range(start, last), batches, strict=True):
        began = time.perf_counter()
        if light:  # the reader's light is regressed onto the truth's as in its warm-up (merge/light_fit.py)
            batch["light"] = fit_clip_light(batch["alpha_target"], batch["effects"])
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step * 1_009 + rank)
        batch["foreground_clean"], batch["background_clean"] = batch["foreground"], batch["background"]
        batch["foreground"], batch["background"] = add_input_noise(batch["foreground"], batch["background"],
                                                                   generator, noise)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        with accelerator.autocast():
            out = model(batch, generator)  # forward() is the loss: DDP all-reduces the gradients
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(out["loss"])
        if config.grad_clip:
            accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        if ema is not None:
            ema.update(core)
        losses = {key: accelerator.reduce(value.detach().float(), "mean").item() for key, value in out.items()}
        loss_value = losses["loss"]
        step_seconds.append(time.perf_counter() - began)
        if accelerator.is_main_process:
            row = {"step": step + 1, **{k: round(v, 6) for k, v in losses.items()},
                   "lr": learning_rate(config, step), "seconds": round(time.perf_counter() - started, 3)}
            with (run / "log.jsonl").open("a") as log:
                log.write(json.dumps(row) + "\n")
        done = step + 1
        if done % config.checkpoint_every == 0 or done == last:   # every process gathers, the main one writes
            weights, state = gather_weights(model), gather_optimizer(model, optimizer)
            averages = ema.gather(main) if ema is not None else None
            if main:
                write_checkpoint(run, done, core, weights, state, averages)
                prune_checkpoints(run, config.keep_last)
                _plot_losses(run)
            del weights, state, averages
        if validation is not None and (done % config.validate_every == 0 or done == last):
            # every process samples (a sharded model's forward needs them all); the main one writes
            with unsharded(core):
                _validate(run, done, core, validation, config, grid, write_png, rank, world, write=main)
        accelerator.wait_for_everyone()
    # One number per process that any difference in the weights changes: under DDP they must all agree.
    checksums = accelerator.gather(torch.tensor([weight_checksum(core)], dtype=torch.float64,
                                                device=accelerator.device)).tolist()
    summary = {"run": str(run), "steps": last, "resumed_from": start, "loss": loss_value,
               "seconds": round(time.perf_counter() - started, 2), "model": str(run / "model"),
               "processes": world, "weight_checksums": checksums, "main_process": main,
               "mixed_precision": precision, "sharded": is_sharded(core),
               "seconds_per_step": round(float(np.median(step_seconds[1:] or step_seconds or [math.nan])), 3),
               **peak_memory(accelerator.device)}
    weights = gather_weights(model)
    if ema is not None:  # the final model is the moving average (the checkpoints keep both)
        weights.update(ema.gather(main))
        summary["weights"] = "ema"
    if main:
        core.save_pretrained(run / "model", weights)
        with atomic_file(run / "summary.json") as temporary:
            temporary.write_text(json.dumps(summary, indent=2) + "\n")
    accelerator.wait_for_everyone()
    return summary


def refuse_upsampling(rows: list[dict], size: tuple[int, int]) -> None:
    """A one-line error when training at `size` (H, W) would enlarge a dataset clip (its manifest row's height
    and width; clips are cover-cropped to the size): a paper-scale preset (480x720) on a dataset built at the
    default 240x360 would otherwise train on 2x upsampled blur without a word."""
    height, width = size
    worst = max(rows, key=lambda row: max(height / row["height"], width / row["width"]))
    factor = max(height / worst["height"], width / worst["width"])
    if factor > 1.0 + 1e-9:
        raise OptionError(f"size {height}x{width}: the dataset has clips of {worst['height']}x{worst['width']}, "
                          f"which training would upsample x{factor:.2f}; build the dataset at the training size "
                          f"(splitmerge build --size {height}x{width}) or train at a smaller size")


def peak_memory(device: torch.device) -> dict:
    """This process's peak memory in GiB: on a GPU what the CUDA allocator handed out
    (``max_memory_allocated``), else the process's peak resident memory."""
    if device.type == "cuda":
        return {"peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2),
                "peak_memory_of": "cuda max_memory_allocated"}
    import resource

    return {"peak_memory_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "peak_memory_of": "process peak resident set"}


def _prepare(accelerator, model: Composer, config: TrainConfig):
    """The model and its AdamW as accelerate prepares them (DDP, or FSDP2 from an accelerate config); with
    ``SPLITMERGE_CPU_FSDP=1`` on CPUs, sharded here as accelerate would on GPUs (`merge.sharding`). The
    optimizer is made after sharding there (sharding replaces the parameters)."""
    check_sharding(accelerator)
    if cpu_fsdp_requested():
        model = shard_on_cpu(model)
        return model, accelerator.prepare(_adamw(model, config))
    return accelerator.prepare(model, _adamw(model, config))


def _adamw(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    trainable = [p for p in model.parameters() if p.requires_grad]  # LoRA: the adapters and the input projection
    return torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay, foreach=True)


def _truncate_log(path: Path, step: int) -> None:
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    with atomic_file(path) as temporary:
        temporary.write_text("".join(line + "\n" for line in kept))


def augment_settings(config: TrainConfig):
    """The run's transformation-aware augmentation (`AugmentConfig`; a dict ``augment`` changes fields). Validation
    draws from it even when training does not augment (the no-augmentation ablation is judged on transformed
    inputs too)."""
    from ..video.transforms import AugmentConfig

    if isinstance(config.augment, dict):
        try:
            return AugmentConfig(**config.augment)
        except TypeError as error:
            raise OptionError(f"augment: {error}") from None
    return AugmentConfig()


VALIDATION_FLIP_P = 0.5  # the honest protocol: a model that mirrors everything gains nothing


def _validation_batch(config: TrainConfig, collate) -> dict | None:
    """Held-out clips (the dataset's val/test split, else the first training clips) with the paper's transform
    drawn once (flip p 0.5), for the same pictures every time; each caption is the plain prompt of its input as
    given (`decompose.caption.plain_caption`: no left or right, nothing read off the truth), as on the benchmarks
    (docs/cli.md)."""
    from ..data.torch_dataset import held_out_dataset, plain_captions

    augment = replace(augment_settings(config), enabled=True, flip_p=VALIDATION_FLIP_P)
    data = held_out_dataset(config.data, config.split, frames=config.frames, size=config.size, augment=augment,
                            seed=config.seed + 1)
    if data is None:
        return None
    batch = collate([data[i] for i in range(min(config.validation_clips, len(data)))])
    batch["caption"] = plain_captions(batch, [row["fps"] for row in data.rows])
    return batch


def _validate(run: Path, step: int, core: Composer, batch: dict, config: TrainConfig, grid, write_png,
              rank: int = 0, world: int = 1, write: bool = True) -> None:
    """Sample the held-out clips: a picture (inputs | generated [| its matte] | truth) and one line of
    ``validation.jsonl`` with what the training is for, measured against the copy-paste of the same inputs:
    PSNR to the truth, CIEDE2000 colour error on the true subject region, (layered outputs) the placement IoU
    of the generated matte with the true one and (warp) how often its mirror choice undoes the input's flip.

    The clips are shared out: process r samples clips r, r + world, ..., each alone with noise drawn from the
    seed and the clip's index (so a clip's result does not depend on how many processes share the work), padded
    with repeats so every process runs the same forward passes, as a sharded model needs; the results are
    gathered and only with `write` (the main process) written."""
    count = len(batch["caption"])
    mine = list(range(rank, count, world)) or [0]
    mine += [mine[0]] * (math.ceil(count / world) - len(mine))   # (repeats are dropped when the results merge)
    results = _validation_results(core, _take(batch, mine), mine, config)
    if world > 1:
        from accelerate.utils import gather_object

        results = gather_object(results)
    if not write:
        return
    by_clip = {}
    for result in results:
        by_clip.setdefault(result["index"], result)
    ordered = [by_clip[index] for index in range(count)]
    layered = core.layered
    labels = ["input subject (transformed)", "background", "generated"] + ["its matte"] * layered + ["truth"]
    write_png(run / "validation" / f"step-{step:06d}.png", grid([r["row"] for r in ordered], labels, height=120))
    keys = dict.fromkeys(key for result in ordered for key in result["scores"])
    record = {"step": step, **{key: round(float(np.mean([r["scores"][key] for r in ordered if key in r["scores"]])),
                                          4) for key in keys}}
    with (run / "validation.jsonl").open("a") as log:
        log.write(json.dumps(record) + "\n")


def _take(batch: dict, indices: list[int]) -> dict:
    """The clips `indices` of a collated batch (tensors and lists alike)."""
    return {key: value[indices] if torch.is_tensor(value) else [value[i] for i in indices]
            for key, value in batch.items()}


def _validation_results(core: Composer, batch: dict, indices: list[int], config: TrainConfig) -> list[dict]:
    """Each clip of `batch` sampled: {index, row (the picture's panels), scores (this clip's figures)}."""
    from ..data.torch_dataset import from_signed
    from ..eval.metrics import colour_error, mask_iou, psnr
    from ..video.layers import composite

    core.eval()
    layered = core.layered
    outputs, mattes, mirror = [], [], []
    for i, index in enumerate(indices):
        clip = _take(batch, [i])
        inputs = (clip["foreground"], clip["alpha"], clip["background"], list(clip["caption"]))
        made = core.sample(*inputs, steps=config.validation_steps, with_matte=layered,
                           generator=torch.Generator().manual_seed(config.seed * 1_009 + index))
        outputs.append(made[0] if layered else made)
        mattes.append(made[1] if layered else None)
        if core.config.output == "warp":  # does it mirror back exactly the flipped inputs? (copy-paste never does)
            mirror.append(bool(core.mirror_logit(*inputs, torch.Generator().manual_seed(config.seed))[0] > 0))
    core.train()
    generated = torch.cat(outputs)
    results = []
    for i, index in enumerate(indices):
        inputs, truth, made = from_signed(batch["foreground"][i]), from_signed(batch["video"][i]), from_signed(
            generated[i])
        background = from_signed(batch["background"][i])
        alpha, target = batch["alpha"][i, 0].numpy(), batch["alpha_target"][i, 0].numpy()
        copy = composite(inputs, alpha, background)
        subject = target > 0.5
        scores = {"psnr": psnr(truth, made), "psnr_copy": psnr(truth, copy)}
        if subject.any():
            scores.update(colour=colour_error(truth, made, subject), colour_copy=colour_error(truth, copy, subject))
        scores["iou_copy"] = mask_iou(alpha, target)
        middle = inputs.shape[0] // 2
        row = [inputs[middle], background[middle], made[middle]]
        if layered:
            matte = mattes[i][0, 0].float().cpu().numpy()   # (sampled on the GPU when training there)
            scores["iou"] = mask_iou(matte, target)
            row.append(np.repeat((matte[middle] * 255).round().astype(np.uint8)[..., None], 3, axis=-1))
        if mirror:
            flipped = bool(batch["transform"][i]["flip"])
            scores.update(mirror=float(mirror[i] == flipped), mirror_copy=float(not flipped))
        results.append({"index": index, "row": row + [truth[middle]], "scores": scores})
    return results
