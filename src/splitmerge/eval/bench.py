"""Benchmarks: folders of composition cases, with ground truth where it exists (`splitmerge bench make`).

Kinds:
- ``synthetic``: held-out synthetic scenes (seeds from `BENCHMARK_SEED` on): the scene's subject layer,
  transformed as training transforms it, over the scene's clean background -> the original scene is the truth,
  with its true matte and the subject's true feet positions and heights.
- ``self``: held-out clips of a built dataset (its test, then val split), or clips split here from real videos
  (``sources``: files, folders, globs, lists; ``samples`` = the bundled clips; every clip is used): the paper's
  training task as a test; the original clip (the real frames) is the truth.
- ``cross``: a subject layer from one clip and the background of another (a dataset's, or synthetic scenes'); no
  truth, as in the paper's test set.

Prompts (the honest protocol, docs/cli.md): a case's ``prompt`` is what a user would write for the inputs as
given: the measured caption of the subject layer *as given* (transformed, over the case's background), with no
word for left or right; nothing is read off the truth. ``stated_prompt`` adds the truth's direction of motion
("It moves to the left."), as a user stating the motion they want (for ``cross``: the subject's own caption).
``given_placement``: the inputs keep the truth's place, size and orientation; only the colour jitter applies
(the harmonization track: colour alone is scored).

Folder (one format for all kinds):

    BENCH/bench.json                {"format": "splitmerge.bench", "version": 2, kind, cases: [ids], settings}
    BENCH/cases/<id>/case.json      {id, kind, prompt, stated_prompt, truth: bool, transform (as applied),
                                     placement, source}
    BENCH/cases/<id>/foreground/    a Layers folder: the (transformed) subject layer to insert; its `frames` are
                                    that layer pasted over the case's background; its caption is the prompt
    BENCH/cases/<id>/background.mp4 the background video to insert it into
    BENCH/cases/<id>/truth.mp4, truth_alpha.mkv   the true result and the subject's true matte (when truth)
    BENCH/split/                    (self from sources) the dataset the videos were split into
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_dir, atomic_file
from ..decompose.caption import plain_caption
from ..errors import LayersFormatError, MissingFileError, OptionError
from ..paths import check_output, check_own_folder, inside, safe_name
from ..video.io import read_matte, read_video, write_matte, write_video
from ..video.layers import Layers, Video, composite
from ..video.transforms import AugmentConfig, augment

KINDS = ("synthetic", "self", "cross")
VERSION = 2  # version 1 benchmarks carried the truth's caption as the prompt: they leak the answer
# Every benchmark input is transformed: the crop (a move and resize) and the colour jitter always apply.
BENCH_AUGMENT = AugmentConfig(flip_p=0.5, crop_p=1.0, jitter_p=1.0)
# The harmonization track: the truth's placement, only the colour jitter.
GIVEN_PLACEMENT_AUGMENT = AugmentConfig(flip_p=0.0, crop_p=0.0, jitter_p=1.0)
PROMPTS = ("plain", "stated")


@dataclass
class BenchCase:
    """One case of a benchmark folder (paths are inside `folder`)."""

    folder: Path
    id: str
    kind: str
    prompt: str
    stated_prompt: str
    truth: bool
    transform: dict
    placement: dict
    source: dict

    def prompt_for(self, track: str) -> str:
        """The case's prompt on track ``plain`` (what a user writes for the inputs as given) or ``stated`` (plus
        the truth's direction of motion)."""
        if track not in PROMPTS:
            raise OptionError(f"prompt {track!r}: expected one of {', '.join(PROMPTS)}")
        return self.prompt if track == "plain" else self.stated_prompt

    def foreground(self) -> Layers:
        return Layers.load(self.folder / "foreground")

    def background(self) -> Video:
        return read_video(self.folder / "background.mp4")

    def truth_video(self) -> Video:
        if not self.truth:
            raise OptionError(f"case {self.id}: has no truth")
        return read_video(self.folder / "truth.mp4")

    def truth_alpha(self) -> np.ndarray:
        if not self.truth:
            raise OptionError(f"case {self.id}: has no truth")
        return read_matte(self.folder / "truth_alpha.mkv")


def motion_direction(frames: np.ndarray, alpha: np.ndarray, fps: float) -> int:
    """+1 / -1 when the subject of `frames` (T, H, W, 3) uint8 with matte `alpha` (T, H, W) moves right / left
    in the camera-stabilised frame, as its measured caption says it; 0 when that names no sideways direction."""
    from ..decompose.backends import SplitClip
    from ..decompose.caption import describe_motion, subject_track
    from ..merge.orientation import stated_direction

    clip = SplitClip(frames, fps)
    present, centroids, areas = subject_track(clip, alpha)
    return stated_direction(describe_motion(present, centroids, areas, clip.size[0], clip.fps))


def stating(prompt: str, direction: int) -> str:
    """`prompt` with a stated direction of motion (+1 right, -1 left) added; unchanged for 0."""
    return f"{prompt} It moves to the {'right' if direction > 0 else 'left'}." if direction else prompt


def _write_case(root: Path, key: str, kind: str, subject: Layers, background: np.ndarray, fps: float,
                transform: dict, truth: tuple[np.ndarray, np.ndarray] | None, placement: dict, source: dict,
                prompts: tuple[str, str] | None = None) -> None:
    """Write one case folder atomically. `subject` holds the (transformed) layer at the background's size.
    `prompts` (plain, stated) as given; by default the plain prompt is measured on the layer as given and the
    stated one adds the truth's direction of motion (no truth: the subject's own caption)."""
    pasted = composite(subject.foreground, subject.alpha, background)
    if prompts is None:
        plain = plain_caption(pasted, subject.alpha, fps)
        stated = stating(plain, motion_direction(*truth, fps)) if truth is not None else subject.caption or plain
        prompts = (plain, stated)
    with atomic_dir(root / "cases" / key) as folder:
        Layers(pasted, subject.alpha, subject.foreground, background, fps, prompts[0],
               {"bench_case": key}).save(folder / "foreground", preview=False)
        write_video(folder / "background.mp4", Video(background, fps), crf=14)
        if truth is not None:
            write_video(folder / "truth.mp4", Video(truth[0], fps), crf=14)
            write_matte(folder / "truth_alpha.mkv", truth[1], fps, bits=8)
        record = {"id": key, "kind": kind, "prompt": prompts[0], "stated_prompt": prompts[1],
                  "truth": truth is not None, "transform": transform, "placement": placement, "source": source}
        (folder / "case.json").write_text(json.dumps(record, indent=2) + "\n")


def _transformed(layers: Layers, seed: int, config: AugmentConfig) -> tuple[Layers, dict]:
    foreground, alpha, params = augment(layers.foreground, layers.alpha, np.random.default_rng([seed, 11]), config)
    return Layers(layers.frames, alpha, foreground, layers.background, layers.fps, layers.caption), params


def _synthetic_cases(root: Path, cases: int, seed: int, frames: int, size: tuple[int, int], config: AugmentConfig
                     ) -> list[str]:
    from ..data.synthetic import BENCHMARK_SEED, render_scene

    keys = []
    for index in range(cases):
        scene_seed = BENCHMARK_SEED + seed * 10_000 + index
        layers, params = render_scene(scene_seed, frames, size)
        moved, transform = _transformed(layers, scene_seed, config)
        key = f"synthetic-{scene_seed}"
        placement = {"horizon": params.horizon, "feet": params.feet, "heights": params.heights,
                     "light": params.light_name}
        _write_case(root, key, "synthetic", moved, layers.background, layers.fps, transform,
                    (layers.frames, layers.alpha), placement, {"synthetic_seed": scene_seed})
        keys.append(key)
    return keys


def _dataset_clips(data: Path, splits: tuple[str, ...]) -> list[dict]:
    from ..data.manifest import read_manifest

    rows = [row for row in read_manifest(data) if row["status"] == "ok"]
    for split in splits:
        chosen = [row for row in rows if row["split"] == split]
        if chosen:
            return chosen
    raise OptionError(f"{data}: no ok clips in split(s) {', '.join(splits)} (held-out clips come from sources "
                      "hashed to test or val; build more sources, or pass --split train)")


def _self_cases(root: Path, data: Path, cases: int, seed: int, splits: tuple[str, ...], config: AugmentConfig,
                label: str) -> list[str]:
    """Cases from `cases` held-out clips of the dataset `data` (recorded as `label`)."""
    from ..data.manifest import id_number

    rows = _dataset_clips(data, splits)
    rng = np.random.default_rng([seed, 12])
    keys = []
    for row in sorted(rng.permutation(rows)[:cases].tolist(), key=lambda r: r["id"]):
        layers = Layers.load(data / row["clip"])
        moved, transform = _transformed(layers, id_number(row["id"]) % (2**31), config)
        key = f"self-{row['id']}"
        _write_case(root, key, "self", moved, layers.background, layers.fps, transform,
                    (layers.frames, layers.alpha), {}, {"dataset": label, "clip": row["id"],
                                                        "source_path": row["source_path"]})
        keys.append(key)
    return keys


def _cross_cases(root: Path, data: Path | None, cases: int, seed: int, frames: int, size: tuple[int, int]
                 ) -> list[str]:
    rng = np.random.default_rng([seed, 13])
    if data is not None:
        rows = _dataset_clips(data, ("train", "val", "test"))
        if len(rows) < 2:
            raise OptionError(f"{data}: a cross benchmark needs at least 2 ok clips")
        pool = [(row["id"], lambda row=row: Layers.load(data / row["clip"])) for row in rows]
    else:
        from ..data.synthetic import BENCHMARK_SEED, render_scene

        seeds = [BENCHMARK_SEED + 500_000 + seed * 10_000 + i for i in range(max(cases + 1, 2))]
        pool = [(f"s{s}", lambda s=s: render_scene(s, frames, size)[0]) for s in seeds]
    keys = []
    for index in range(cases):
        first, second = rng.choice(len(pool), size=2, replace=False)
        subject, scene = pool[first][1](), pool[second][1]()
        count = min(subject.num_frames, scene.num_frames)
        if subject.frames.shape[1:3] != scene.frames.shape[1:3]:
            raise OptionError("cross: subject and background clips differ in size")
        camera = subject.meta.get("camera")   # the subject's own camera, for a world anchor to remove
        layers = Layers(subject.frames[:count], subject.alpha[:count], subject.foreground[:count],
                        scene.background[:count], subject.fps, subject.caption,
                        {"camera": camera[:count]} if camera is not None else {})
        key = f"cross-{index:03d}-{pool[first][0]}-on-{pool[second][0]}"
        _write_case(root, key, "cross", layers, scene.background[:count], scene.fps,
                    {"flip": False, "crop": None, "jitter": None}, None, {},
                    {"subject": pool[first][0], "background": pool[second][0]})
        keys.append(key)
    return keys


def _write_header(folder: Path, kind: str, keys: list[str], settings: dict) -> None:
    """``bench.json``: the benchmark's record (format, kind, case ids, how it was made), written atomically."""
    record = {"format": "splitmerge.bench", "version": VERSION, "kind": kind, "cases": keys, "settings": settings}
    with atomic_file(folder / "bench.json") as temporary:
        temporary.write_text(json.dumps(record, indent=2) + "\n")


def make_bench(kind: str, output: str | Path, cases: int = 8, data: str | Path | None = None, seed: int = 0,
               frames: int = 49, size: tuple[int, int] = (240, 360), splits: tuple[str, ...] = ("test", "val"),
               sources: list | None = None, given_placement: bool = False, strides: tuple[int, ...] = (1,)
               ) -> Path:
    """Write a benchmark folder of `kind` (see the module docstring) and return its path. `data` is a built
    dataset (``self``, or ``cross``, which otherwise pairs synthetic scenes); ``self`` may instead split real
    videos, `sources` (``"samples"`` = the bundled clips), into `frames`-frame clips at `size` (`strides`), all of
    them candidates. `given_placement`: inputs keep the truth's placement, only their colours are jittered."""
    if kind not in KINDS:
        raise OptionError(f"kind {kind!r}: expected one of {', '.join(KINDS)}")
    if not isinstance(cases, int) or cases < 1:
        raise OptionError(f"cases {cases!r}: must be a positive integer")
    if data is not None and not Path(data).is_dir():
        raise MissingFileError(f"{data}: no such dataset folder")
    if sources and (kind != "self" or data is not None):
        raise OptionError("source videos make a self benchmark: give them without --data")
    if kind == "self" and data is None and not sources:
        raise OptionError("a self benchmark needs --data DATASET or --source VIDEO (e.g. --source samples)")
    if given_placement and kind == "cross":
        raise OptionError("--given-placement needs the truth's placement: a synthetic or self benchmark")
    root = check_output(output, [data, *[item for item in sources or () if str(item) != "samples"]],
                        kind="folder")
    check_own_folder(root, "bench.json", "a benchmark")
    config = GIVEN_PLACEMENT_AUGMENT if given_placement else BENCH_AUGMENT
    settings = {"cases": cases, "seed": seed, "data": str(data) if data else None, "frames": frames,
                "size": list(size), "augment": config.to_dict(), "given_placement": given_placement}
    with atomic_dir(root) as folder:
        if kind == "synthetic":
            keys = _synthetic_cases(folder, cases, seed, frames, tuple(size), config)
        elif kind == "self":
            label = str(data)
            if sources:
                data, splits = _split_sources(folder / "split", sources, frames, size, strides, seed)
                label = "split"  # inside the benchmark folder
                settings.update(sources=[str(item) for item in sources], strides=list(strides))
            keys = _self_cases(folder, Path(data), cases, seed, splits, config, label)
        else:
            keys = _cross_cases(folder, Path(data) if data else None, cases, seed, frames, tuple(size))
        _write_header(folder, kind, keys, settings)
    return root


def _split_sources(dataset: Path, sources: list, frames: int, size: tuple[int, int], strides: tuple[int, ...],
                   seed: int) -> tuple[Path, tuple[str, ...]]:
    """Split real videos into a dataset at `dataset` (the default Split backends, the paper's filters) for a
    self benchmark; every split is a candidate. ``samples`` stands for the bundled clips."""
    from ..data.build import build
    from ..samples import SAMPLES, sample_path

    paths = []
    for item in sources:
        paths += [str(sample_path(name)) for name in SAMPLES] if str(item) == "samples" else [item]
    build(paths, dataset, frames=frames, size=tuple(size), strides=tuple(strides), seed=seed)
    return dataset, ("test", "val", "train")


def pair_bench(output: str | Path, subject: Layers, background: Video, prompt: str, key: str = "pair") -> Path:
    """A one-case ``cross`` benchmark of a given pair (the demo's): `subject` is the layer to insert, already at
    the background's size and length (e.g. from `video.transforms.place`), `background` the video to insert it
    into. No truth; `evaluate` scores it with the paper's metrics and writes its report."""
    if subject.foreground.shape != background.frames.shape:
        raise OptionError(f"pair bench: the subject layer {subject.foreground.shape[:3]} must have the "
                          f"background's frames and size {background.frames.shape[:3]}")
    with atomic_dir(Path(output)) as folder:
        _write_case(folder, key, "cross", subject, background.frames, background.fps,
                    {"flip": False, "crop": None, "jitter": None}, None, {}, {"pair": key}, (prompt, prompt))
        _write_header(folder, "cross", [key], {"cases": 1, "pair": True})
    return Path(output)


def load_bench(path: str | Path) -> tuple[dict, list[BenchCase]]:
    """A benchmark folder's record and its cases."""
    root = Path(path)
    header = root / "bench.json"
    if not header.is_file():
        raise MissingFileError(f"{root}: no bench.json (make one with `splitmerge bench make`)")
    try:
        record = json.loads(header.read_text())
    except (ValueError, UnicodeDecodeError):
        raise LayersFormatError(f"{header}: not valid JSON") from None
    if not isinstance(record, dict) or record.get("format") != "splitmerge.bench":
        raise LayersFormatError(f"{header}: not a splitmerge benchmark")
    version = record.get("version", 1)
    if not isinstance(version, int) or version < VERSION:
        raise LayersFormatError(f"{header}: a version {version!r} benchmark, whose prompts were read off the truth; "
                                "make it again with `splitmerge bench make`")
    if record.get("kind") not in KINDS or not isinstance(record.get("settings"), dict):
        raise LayersFormatError(f"{header}: needs 'kind' (one of {', '.join(KINDS)}) and a 'settings' object")
    keys = record.get("cases")
    if not isinstance(keys, list) or not keys:
        raise LayersFormatError(f"{header}: 'cases' must be a non-empty list of case ids")
    return record, [_load_case(root, safe_name(key, f"{header}: case id")) for key in keys]


def _load_case(root: Path, key: str) -> BenchCase:
    """The case `key` of the benchmark `root` (`key` is a checked plain name: its folder is inside `root`)."""
    folder = inside(root, Path("cases") / key, f"{root / 'bench.json'}: case {key}")
    try:
        info = json.loads((folder / "case.json").read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        raise LayersFormatError(f"{folder}: missing or unreadable case.json") from None
    fields = {"kind": str, "prompt": str, "stated_prompt": str, "truth": bool, "transform": dict,
              "placement": (dict, type(None)), "source": dict}
    if not isinstance(info, dict):
        raise LayersFormatError(f"{folder / 'case.json'}: expected a JSON object")
    for name, kind in fields.items():
        if name not in info:
            raise LayersFormatError(f"{folder / 'case.json'}: missing {name!r}")
        if not isinstance(info[name], kind):
            raise LayersFormatError(f"{folder / 'case.json'}: {name!r} has the wrong type "
                                    f"({type(info[name]).__name__})")
    return BenchCase(folder, key, info["kind"], info["prompt"], info["stated_prompt"], info["truth"],
                     info["transform"], info["placement"], info["source"])
