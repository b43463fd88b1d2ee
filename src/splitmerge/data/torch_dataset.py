"""PyTorch datasets that feed training: a built Dataset folder (map-style) or WebDataset shards (iterable).

Each sample is the dict DESIGN.md names, at a requested frame count and size:

    video         (3, T, H, W) float32 in [-1, 1]   the original clip: the target
    foreground    (3, T, H, W) float32 in [-1, 1]   premultiplied subject, after the augmentation
    alpha         (1, T, H, W) float32 in [0, 1]    its matte, transformed with it
    alpha_target  (1, T, H, W) float32 in [0, 1]    the untransformed matte (the identity loss uses it)
    background    (3, T, H, W) float32 in [-1, 1]   the clean plate
    effects       (1, T, H, W) float32 >= 0          the subject's effects on the scene (its shadow) as a grey gain
                                                    over the background, 1 = untouched (all ones for a clip
                                                    without them): part of the target, never of the input
    caption       str
    ground        (2,) float32                        the scene's depth law where it is known (synthetic
                                                    clips at their own aspect): (horizon, the subject's height
                                                    per unit of depth below it), normalised (`scene_ground`);
                                                    NaN otherwise (real footage, WebDataset shards)
    transform     dict: {"start": first frame taken, "flip", "crop", "jitter"} as applied (JSON-able)
    id            str

The augmentation is the paper's transformation-aware one on the foreground layer only (`AugmentConfig`: each
piece can be switched off; ``augment=None`` switches all off). A sample is a pure function of (seed, epoch,
index): `set_epoch` draws new transforms each epoch, the same ones on every run. The input noise on fg and bg is
added in the training step (`add_input_noise`), not here.
"""

from __future__ import annotations

import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from ..errors import LayersFormatError, OptionError
from ..video.geometry import apply_resize, parse_size, plan_resize
from ..video.io import read_gain, read_matte, read_video
from ..video.layers import EFFECTS_SCALE, LayersStream
from ..video.transforms import AugmentConfig, augment
from .manifest import clip_files, clip_folder, id_number, read_manifest

LAYER_FILES = ("source.mp4", "foreground.mp4", "alpha.mkv", "background.mp4")


def load_clip_window(folder: Path, start: int, count: int, size: tuple[int, int] | None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Frames [start, start + count) of a Layers folder at `size` (cover crop): (frames, alpha, foreground,
    background) as (T, H, W, 3) uint8, (T, H, W) float32, uint8, uint8."""
    frames = read_video(folder / "source.mp4", size=size, start=start, max_frames=count).frames
    foreground = read_video(folder / "foreground.mp4", size=size, start=start, max_frames=count).frames
    background = read_video(folder / "background.mp4", size=size, start=start, max_frames=count).frames
    alpha = read_matte(folder / "alpha.mkv", size=size, start=start, max_frames=count)
    return frames, alpha, foreground, background


def load_effects_window(folder: Path, start: int, count: int, size: tuple[int, int] | None) -> np.ndarray | None:
    """Frames [start, start + count) of a Layers folder's effects at `size` (the same cover crop as the frames),
    as a grey gain (T, H, W) float32 (colour gains averaged over their channels); None without effects."""
    stream = LayersStream(folder)
    if not stream.has_effects:
        return None
    _, _, gains = next(stream.chunks(start + count, start + count, colour=False, effects=True))
    gains = gains[start:start + count]
    return _grey_gains(gains, size)


def _grey_gains(gains: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """(T, H, W) or (T, H, W, 3) gains -> grey (T, H', W') float32 at `size` (cover crop; None: as they are)."""
    if gains.ndim == 4:
        gains = gains.mean(axis=-1)
    if size is None or tuple(size) == gains.shape[1:]:
        return np.ascontiguousarray(gains, dtype=np.float32)
    plan = plan_resize(gains.shape[1:], tuple(size))
    return np.stack([apply_resize(gain, plan) for gain in gains]).astype(np.float32)


def to_signed(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float().div_(127.5).sub_(1.0)


def from_signed(video: torch.Tensor) -> np.ndarray:
    """Inverse of `to_signed`: (3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8 (clamped, rounded)."""
    return ((video.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).cpu().numpy()


def _matte(alpha: np.ndarray) -> torch.Tensor:
    """(T, H, W) float -> (1, T, H, W) float32."""
    return torch.from_numpy(np.ascontiguousarray(alpha, dtype=np.float32))[None]


NO_GROUND = (float("nan"), float("nan"))


def scene_ground(params, height: int) -> tuple[float, float]:
    """A synthetic scene's depth law (`SceneParams.depth_law`) in a view `height` px high as a sample's
    ``ground``: (the horizon in grid_sample's normalised rows, pixel row r's centre at (2 r + 1) / H - 1; the
    subject's height per unit of depth below it, a ratio of lengths), as `merge.depth_law` takes it."""
    horizon, per_depth = params.depth_law(height)
    return 2 * (horizon + 0.5) / height - 1, per_depth


def make_sample(frames, alpha, foreground, background, caption: str, key: str, rng: np.random.Generator,
                config: AugmentConfig | None, start: int, effects: np.ndarray | None = None,
                ground: tuple[float, float] = NO_GROUND) -> dict:
    """The training sample of one clip window (see the module docstring); `rng` draws the augmentation;
    `effects` (T, H, W) grey gains or None (no effects: ones); `ground` the scene's depth law or NaNs."""
    if config is not None and config.enabled:
        moved_fg, moved_alpha, params = augment(foreground, alpha, rng, config)
    else:
        moved_fg, moved_alpha, params = foreground, alpha, {"flip": False, "crop": None, "jitter": None}
    return {"video": to_signed(frames), "foreground": to_signed(moved_fg), "alpha": _matte(moved_alpha),
            "alpha_target": _matte(alpha), "background": to_signed(background),
            "effects": _matte(np.ones_like(alpha) if effects is None else effects),
            "ground": torch.tensor(ground, dtype=torch.float32), "caption": caption,
            "transform": {"start": int(start), **params}, "id": key}


def plain_captions(batch: dict, fps: list[float]) -> list[str]:
    """Per clip of a collated `batch`, the plain prompt of its input as given (`decompose.caption.plain_caption`
    of the transformed subject over the background, at `fps`): what held-out validation and diagnostics caption
    with instead of the truth's caption (the honest protocol, docs/cli.md)."""
    from ..decompose.caption import plain_caption
    from ..video.layers import composite

    captions = []
    for i, alpha in enumerate(batch["alpha"][:, 0].numpy()):
        pasted = composite(from_signed(batch["foreground"][i]), alpha, from_signed(batch["background"][i]))
        captions.append(plain_caption(pasted, alpha, fps[i]))
    return captions


def collate_samples(samples: list[dict]) -> dict:
    """Batch samples: tensors stacked on a new first axis, captions, transforms and ids kept as lists."""
    batch = {}
    for name in samples[0]:
        values = [sample[name] for sample in samples]
        batch[name] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return batch


class StmDataset(Dataset):
    """The ok clips of a built Dataset folder (one split, or all), as training samples.

    Args:
        dataset: the Dataset folder.
        split: "train", "val", "test", or None for every ok clip.
        frames: T per sample (a window at a random start when the clip is longer); None: the whole clip.
        size: (H, W) or "HxW" per sample (cover crop, then resize); None: the clip's own size.
        augment: the foreground augmentation (default: the paper's); None: no augmentation.
        seed: with the epoch and the index, decides every random draw.
    """

    def __init__(self, dataset: str | Path, split: str | None = "train", frames: int | None = None, size=None,
                 augment: AugmentConfig | None = AugmentConfig(), seed: int = 0):  # noqa: B008 (frozen defaults)
        self.root = Path(dataset)
        self.rows = [row for row in read_manifest(self.root)
                     if row["status"] == "ok" and (split is None or row["split"] == split)]
        if not self.rows:
            raise OptionError(f"{self.root}: no ok clips{f' in split {split!r}' if split else ''}")
        for row in self.rows:  # a missing file or one leading outside the dataset is refused now, not mid-epoch
            clip_files(self.root, row, LAYER_FILES)
        shortest = min(row["num_frames"] for row in self.rows)
        if frames is not None and not 1 <= frames <= shortest:
            raise OptionError(f"frames {frames}: must be between 1 and the shortest clip ({shortest} frames)")
        self.frames, self.size, self.augment, self.seed = frames, parse_size(size), augment, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw other windows and transforms in epoch `epoch` (call before each epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.sample(index, self.epoch)

    def sample(self, index: int, epoch: int) -> dict:
        """Clip `index` as epoch `epoch` draws it: a pure function of (seed, epoch, index), whatever process asks
        (a DataLoader worker gives the very sample the training process would)."""
        row = self.rows[index]
        rng = np.random.default_rng([self.seed, int(epoch), index])
        count = self.frames or row["num_frames"]
        start = int(rng.integers(0, row["num_frames"] - count + 1))
        folder = clip_folder(self.root, row)
        layers = load_clip_window(folder, start, count, self.size)
        effects = load_effects_window(folder, start, count, self.size)
        return make_sample(*layers, row["caption"], row["id"], rng, self.augment, start, effects,
                           self._ground(row, layers[1].shape[1]))

    def _ground(self, row: dict, height: int) -> tuple[float, float]:
        """A synthetic clip's depth law at `height` when it was loaded at its own aspect (a uniform resize keeps
        the normalised law); NaNs otherwise."""
        if row.get("kind") != "synthetic" or self.size is not None and (
                self.size[0] * row["width"] != self.size[1] * row["height"]):
            return NO_GROUND
        from .synthetic import draw_params

        return scene_ground(draw_params(int(row["seed"]), int(row["num_frames"]), (row["height"], row["width"])),
                            row["height"])


class SceneDataset(Dataset):
    """Procedural scenes (`data.synthetic.render_scene`) rendered on demand as training samples: scene
    `first_seed + index`, no dataset folder. Unlimited fresh scenes for a part that memorises the ~1500 of a
    built mix (the scene reader's depth, docs/training.md); the seeds must stay below the benchmarks'
    (`synthetic.BENCHMARK_SEED`).

    Args:
        count: scenes; first_seed: the first one's seed.
        frames: T per sample (the scene is rendered with max(T, 2) frames and a window drawn); size: (H, W).
        augment: the foreground augmentation, or None; seed: with the epoch and the index, decides the draws.
    """

    def __init__(self, count: int, first_seed: int, frames: int = 1, size=(64, 96),
                 augment: AugmentConfig | None = AugmentConfig(), seed: int = 0):  # noqa: B008 (frozen defaults)
        from .synthetic import BENCHMARK_SEED

        if count < 1 or first_seed < 0 or first_seed + count > BENCHMARK_SEED:
            raise OptionError(f"scenes {first_seed}..{first_seed + count - 1}: training seeds are 0 to "
                              f"{BENCHMARK_SEED - 1} (those above are the benchmarks')")
        if frames < 1:
            raise OptionError(f"frames {frames}: must be >= 1")
        self.count, self.first_seed, self.frames = int(count), int(first_seed), int(frames)
        self.size, self.augment, self.seed, self.epoch = parse_size(size), augment, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Draw other windows and transforms in epoch `epoch`."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        from .synthetic import render_scene

        seed = self.first_seed + index
        layers, params = render_scene(seed, max(self.frames, 2), self.size)
        rng = np.random.default_rng([self.seed, self.epoch, seed, 11])
        start = int(rng.integers(0, layers.num_frames - self.frames + 1))
        window = slice(start, start + self.frames)
        return make_sample(layers.frames[window], layers.alpha[window], layers.foreground[window],
                           layers.background[window], layers.caption, f"scene-{seed}", rng, self.augment, start,
                           layers.effects[window], scene_ground(params, self.size[0]))


def held_out_dataset(dataset: str | Path, fallback: str | None = "train", **options) -> StmDataset | None:
    """The dataset's held-out clips for validation: its ``val`` split, else ``test``, else `fallback` (the
    training split: better the same clips than none); None when none has ok clips. `options` as `StmDataset`."""
    for split in ("val", "test", fallback):
        try:
            return StmDataset(dataset, split=split, **options)
        except OptionError:
            continue
    return None


class StmIterableDataset(IterableDataset):
    """Samples streamed from WebDataset shards written by ``splitmerge dataset export --format webdataset``.

    Shards are split between DataLoader workers (and shuffled per epoch when `shuffle` is on), each sample read
    once per epoch. Options as `StmDataset`; `shards` is a list of .tar paths.
    """

    def __init__(self, shards: list[str | Path], frames: int | None = None, size=None,
                 augment: AugmentConfig | None = AugmentConfig(), seed: int = 0,  # noqa: B008
                 shuffle: bool = True):
        self.shards = [Path(shard) for shard in shards]
        missing = [str(shard) for shard in self.shards if not shard.is_file()]
        if not self.shards or missing:
            raise OptionError(f"shards: {', '.join(missing) or 'none given'}: no such file")
        self.frames, self.size, self.augment, self.seed, self.shuffle = frames, parse_size(size), augment, seed, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _my_shards(self) -> list[Path]:
        order = list(self.shards)
        if self.shuffle:
            np.random.default_rng([self.seed, self.epoch]).shuffle(order)
        info = get_worker_info()
        return order if info is None else order[info.id::info.num_workers]

    def __iter__(self):
        for shard in self._my_shards():
            for key, members in _samples_of(shard):
                yield self._sample(shard, key, members)

    def _sample(self, shard: Path, key: str, members: dict) -> dict:
        frames = _shard_frames(shard, key, members)
        rng = np.random.default_rng([self.seed, self.epoch, id_number(key)])
        count = self.frames or frames
        if count > frames:
            raise OptionError(f"frames {count}: sample {key!r} of {shard} has only {frames} frames")
        start = int(rng.integers(0, frames - count + 1))
        with tempfile.TemporaryDirectory(prefix="splitmerge-sample-") as folder:
            for name in LAYER_FILES:
                (Path(folder) / name).write_bytes(members[name])
            layers = load_clip_window(Path(folder), start, count, self.size)
            effects = _shard_effects(Path(folder), members, start, count, self.size)
        return make_sample(*layers, members["txt"].decode("utf-8", "replace"), key, rng, self.augment, start,
                           effects)


def _shard_effects(folder: Path, members: dict, start: int, count: int, size) -> np.ndarray | None:
    """A shard sample's effects window (its ``effects.mkv`` member, written at `EFFECTS_SCALE` by the export),
    as `load_effects_window` gives them; None when the sample has none."""
    if "effects.mkv" not in members:
        return None
    path = folder / "effects.mkv"
    path.write_bytes(members["effects.mkv"])
    gains = read_gain(path, EFFECTS_SCALE, max_frames=start + count)[start:start + count]
    return _grey_gains(gains, size)



def _shard_frames(shard: Path, key: str, members: dict) -> int:
    """The frame count of sample `key` from its ``.json`` row, its members checked present; else a
    `LayersFormatError` naming the shard and the sample."""
    import json

    missing = [name for name in (*LAYER_FILES, "txt", "json") if name not in members]
    if missing:
        raise LayersFormatError(f"{shard}: sample {key!r} has no {', '.join(missing)} member")
    try:
        frames = json.loads(members["json"])["num_frames"]
    except (ValueError, TypeError, KeyError):
        frames = None
    if not isinstance(frames, int) or frames < 1:
        raise LayersFormatError(f"{shard}: sample {key!r}: its .json member has no positive num_frames")
    return frames


def _samples_of(shard: Path):
    """Yield (key, {member suffix: bytes}) per sample of a WebDataset tar (members grouped by key)."""
    try:
        with tarfile.open(shard) as archive:
            current, members = None, {}
            for info in archive:
                if not info.isfile():
                    continue
                key, _, suffix = info.name.partition(".")
                if key != current and current is not None:
                    yield current, members
                    members = {}
                current = key
                members[suffix] = archive.extractfile(info).read()
            if current is not None:
                yield current, members
    except (tarfile.TarError, EOFError) as error:
        raise LayersFormatError(f"{shard}: not a readable tar shard ({error})") from None


@dataclass(frozen=True)
class NoiseConfig:
    """The paper's input noise (PAPER.md): per sample, sigma = exp(N(mean, std)) in [-1, 1] pixel units, added to
    the foreground and the background inputs before encoding. `enabled=False` switches it off (ablations)."""

    enabled: bool = True
    fg_log_sigma: tuple[float, float] = (-1.0, 0.5)
    bg_log_sigma: tuple[float, float] = (-3.0, 0.5)


def add_input_noise(foreground: torch.Tensor, background: torch.Tensor, generator: torch.Generator,
                    config: NoiseConfig = NoiseConfig()) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: B008
    """Noisy copies of batched (B, C, T, H, W) inputs; one sigma per sample, drawn from `generator`."""
    if not config.enabled:
        return foreground, background

    def noisy(tensor: torch.Tensor, log_sigma: tuple[float, float]) -> torch.Tensor:
        mean, std = log_sigma
        shape = (tensor.shape[0],) + (1,) * (tensor.dim() - 1)
        sigma = torch.exp(mean + std * torch.randn(shape, generator=generator, device=tensor.device))
        return tensor + sigma * torch.randn(tensor.shape, generator=generator, device=tensor.device)

    return noisy(foreground, config.fg_log_sigma), noisy(background, config.bg_log_sigma)
