"""`splitmerge build`: many videos become a Dataset folder of Layers clips, resumably, on any engine.

    sources ─collect─▶ videos ─plan (engine)─▶ clip tasks ─make (engine)─▶ clips/<id>/ + rows/<id>.json
                                                                           └─▶ manifest.parquet + README.md

Planning (hash the file, find the scene cuts, choose the clips) and making (split one clip, apply the filters,
write its Layers folder, then its row) both run on the chosen engine. A clip is done when its row file exists;
both the clip folder and the row are written atomically, so a build killed at any moment (SIGKILL included) and
run again redoes only what had no row and ends with exactly the dataset an uninterrupted run makes. One broken
video fails its own rows, never the build. The settings that decide what a clip *is* are kept in build.json and
a resumed build must use the same ones.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..atomic import atomic_file
from ..errors import OptionError, SplitMergeError
from ..fileinfo import file_sha1
from ..video.geometry import parse_size
from . import engines
from .chunks import ClipTask, clip_id, plan_clips, split_of
from .manifest import CLIPS, ROWS, done_ids, empty_row, read_rows, write_manifest, write_row
from .sources import SourceVideo, collect_sources

DEFAULT_SIZE = (240, 360)   # small enough for a CPU; 480x720 is the paper's size
STRIDES = (1, 2, 3, 4)
BUILD_FILE = "build.json"


@dataclass
class BuildConfig:
    """How to build. `split` holds `SplitConfig` options (segmenter, restorer, captioner, backend_options...)."""

    frames: int = 49
    size: tuple[int, int] | str = DEFAULT_SIZE
    strides: tuple[int, ...] = (1,)
    max_clips: int = 4
    seed: int = 0
    synthetic: int = 0
    split: dict = field(default_factory=dict)
    workers: int = 1
    engine: str = "local"
    ray_address: str | None = None

    def __post_init__(self):
        self.size = parse_size(self.size)
        if self.size is None:
            raise OptionError("size: a build needs a clip size, e.g. 240x360")
        self.strides = tuple(int(s) for s in self.strides)
        if not self.strides or any(s not in STRIDES for s in self.strides):
            raise OptionError(f"strides {self.strides}: each must be one of {STRIDES}")
        for name, low in (("frames", 4), ("max_clips", 1), ("synthetic", 0), ("seed", 0), ("workers", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise OptionError(f"{name} {value!r}: must be an integer >= {low}")
        if self.engine not in engines.ENGINES:
            raise OptionError(f"engine {self.engine!r}: expected one of {', '.join(engines.ENGINES)}")
        if "caption" in self.split:
            raise OptionError("split options: a build takes captions from the source list, not one for all")

    def identity(self) -> dict:
        """The settings that decide what the clips are (engine and workers do not)."""
        split = dict(self.split)
        split["backend_options"] = {name: sorted(options) for name, options in split.get("backend_options", {}).items()}
        return {"frames": self.frames, "size": list(self.size), "strides": list(self.strides),
                "max_clips": self.max_clips, "seed": self.seed, "synthetic": self.synthetic, "split": split}


# ------------------------------------------------------------------------------------------------ the two steps


def plan_source(item: dict) -> dict:
    """Engine step 1: one source video -> {"tasks": [ClipTask dicts]}, or {"row": its one row} when it gives
    no clips (failed: unreadable; skipped: no shot long enough)."""
    source = SourceVideo(**item["source"])
    config = item["config"]
    try:
        sha1 = file_sha1(source.path)
        tasks = plan_clips(source, config["frames"], tuple(config["size"]), tuple(config["strides"]),
                           config["max_clips"], config["seed"], sha1=sha1)
    except (SplitMergeError, OSError) as error:
        return {"row": _source_row(source, "unreadable", "failed", _one_line(error))}
    if not tasks:
        reason = f"no scene-cut-free shot of {config['frames']} frames (at stride {min(config['strides'])} or more)"
        return {"row": _source_row(source, f"no clips:{sha1}", "skipped", reason, sha1)}
    return {"tasks": [task.to_dict() for task in tasks], "sha1": sha1}


def _source_row(source: SourceVideo, what: str, status: str, reason: str, sha1: str = "") -> dict:
    """The one row of a source that gives no clips (unreadable, or too short), so the manifest says why."""
    key = hashlib.sha1(f"{what}:{Path(source.path).resolve()}".encode()).hexdigest()[:12]
    return {**empty_row(), "id": key, "split": split_of(sha1) if sha1 else "train", "status": status,
            "reason": reason, "kind": "video", "source_path": source.path, "source_sha1": sha1,
            "license": source.license or "", "url": source.url or "", "caption": source.caption or ""}


def make_clip(item: dict) -> dict:
    """Engine step 2: split one clip into ``clips/<id>`` (kept only when it passes the filters) and write its row.
    Returns the row. Never raises for a bad clip: the row says what went wrong."""
    from ..decompose.pipeline import NoSubjectError, split_to_folder

    task = ClipTask(**item["task"])
    dataset = Path(item["dataset"])
    target = dataset / CLIPS / task.id
    started = time.perf_counter()
    row = {**empty_row(), "id": task.id, "kind": task.kind, "source_path": task.source,
           "source_sha1": task.source_sha1, "start_frame": task.start, "stride": task.stride, "seed": task.seed,
           "license": task.license or "", "url": task.url or "", "caption": task.caption or "",
           "split": split_of(task.source_sha1 or f"synthetic-{task.seed}")}
    try:
        if task.kind == "synthetic":
            from .synthetic import write_scene

            meta = write_scene(task.seed, target, frames=task.frames, size=(task.height, task.width))
        else:
            options = {**item["split"], "caption": task.caption}
            meta = split_to_folder(task.source, target, start=task.start, stride=task.stride, frames=task.frames,
                                   size=(task.height, task.width), **options)
        verdict = meta["filters"]
        row.update(caption=meta["caption"], num_frames=meta["num_frames"], fps=meta["fps"], height=task.height,
                   width=task.width, fg_ratio=verdict["fg_ratio"], presence=verdict["presence"],
                   backends=json.dumps(meta["backends"], sort_keys=True),
                   seconds=json.dumps(meta["seconds"], sort_keys=True))
        if meta["num_frames"] < task.frames:
            row.update(status="skipped", reason=f"too few frames ({meta['num_frames']} of {task.frames})")
        elif verdict["passed"]:
            row.update(status="ok", reason="", clip=f"{CLIPS}/{task.id}")
        else:
            row.update(status="skipped", reason=verdict["reason"])
    except NoSubjectError as error:
        row.update(status="skipped", reason=error.reason)
    except Exception as error:  # one broken clip must not stop the build: its row says why
        row.update(status="failed", reason=_one_line(error))
    if row["status"] != "ok" and target.exists():
        shutil.rmtree(target)
    row["seconds_total"] = round(time.perf_counter() - started, 3)
    write_row(dataset, row)
    return row


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if isinstance(error, SplitMergeError) else f"{type(error).__name__}: {text}"


# ---------------------------------------------------------------------------------------------------- driver


def _prepare(dataset: Path, config: BuildConfig) -> None:
    """Create or reopen a Dataset folder: refuse a foreign folder or different settings; clear leftovers of a
    killed run (temporary ``.partial`` files and folders)."""
    record = {"format": "splitmerge.dataset", "version": 1, **config.identity()}
    build_file = dataset / BUILD_FILE
    if dataset.exists():
        if not dataset.is_dir():
            raise OptionError(f"{dataset}: exists and is not a folder")
        if build_file.exists():
            previous = json.loads(build_file.read_text())
            if previous != record:
                changed = sorted(k for k in record if previous.get(k) != record[k])
                raise OptionError(f"{dataset}: was built with other settings ({', '.join(changed)}); "
                                  "resume with the same ones or build into a new folder")
        elif any(dataset.iterdir()):
            raise OptionError(f"{dataset}: exists, is not empty and is not a dataset; refusing to write into it")
    for folder in (dataset / CLIPS, dataset / ROWS):
        folder.mkdir(parents=True, exist_ok=True)
        for leftover in folder.glob(".*.partial*"):
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    if not build_file.exists():
        with atomic_file(build_file) as temporary:
            temporary.write_text(json.dumps(record, indent=2) + "\n")


def _progress(total: int, label: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="clip", disable=not sys.stderr.isatty(), leave=False)


def build(sources: list, output, config: BuildConfig | None = None, **options) -> dict:
    """Build (or resume) the Dataset folder `output` from `sources` (paths, folders, globs, list files).

    Options: the fields of `BuildConfig`. Returns a summary: counts by status, the clips made in this run, the
    clips already done, seconds, and the manifest path.
    """
    config = config or BuildConfig(**options)
    dataset = Path(output)
    videos = collect_sources(sources) if sources else []
    if not videos and not config.synthetic:
        raise OptionError("nothing to build: no sources and no --synthetic scenes")
    _prepare(dataset, config)
    started = time.perf_counter()
    identity = config.identity()
    run = {"engine": config.engine, "workers": config.workers, "address": config.ray_address}

    with engines.session(config.engine, config.workers, config.ray_address):
        made, planned = _plan_and_make(dataset, videos, config, run)
    rows = read_rows(dataset)
    manifest = write_manifest(dataset, rows)
    from .report import write_readme

    write_readme(dataset, rows, identity)
    counts = {status: sum(row["status"] == status for row in rows) for status in ("ok", "skipped", "failed")}
    return {"dataset": str(dataset), "manifest": str(manifest), "rows": len(rows), **counts,
            "made_this_run": made, "already_done": planned - made, "seconds": round(time.perf_counter() - started, 2)}


def _plan_and_make(dataset: Path, videos: list[SourceVideo], config: BuildConfig, run: dict) -> tuple[int, int]:
    """Plan every source and make every clip not done yet; returns (clips made now, clips planned)."""
    identity = config.identity()
    done = done_ids(dataset)
    plans = [{"source": asdict(video), "config": identity} for video in videos]
    tasks: list[dict] = []
    with _progress(len(plans), "planning") as bar:
        for _, planned in engines.run(plan_source, plans, **run):
            if "row" in planned:
                if planned["row"]["id"] not in done:
                    write_row(dataset, planned["row"])
            else:
                tasks.extend(planned["tasks"])
            bar.update()
    size = tuple(config.size)
    for seed in range(config.synthetic):
        key = clip_id(f"synthetic-{seed}", 0, 1, size, config.frames)
        tasks.append(ClipTask(key, "synthetic", "", "", 0, 1, config.frames, size[0], size[1], seed=seed).to_dict())

    todo = [{"task": task, "dataset": str(dataset), "split": config.split} for task in tasks
            if task["id"] not in done]
    made = 0
    with _progress(len(todo), "splitting") as bar:
        for _, _row in engines.run(make_clip, todo, **run):
            made += 1
            bar.update()
    return made, len(tasks)
