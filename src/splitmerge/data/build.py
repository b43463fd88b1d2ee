"""`splitmerge build`: many videos become a Dataset folder of Layers clips, resumably, on any engine.

    sources ─collect─▶ videos ─plan (engine)─▶ clip tasks ─make (engine)─▶ clips/<id>/ + rows/<id>.json
                                                                           └─▶ manifest.parquet + README.md

Planning (hash the file, find the scene cuts, choose the clips) and making (split one clip, apply the filters,
write its Layers folder, then its row) both run on the chosen engine. A clip is done when its row file exists;
both the clip folder and the row are written atomically, so a build killed at any moment (SIGKILL included) and
run again redoes only what had no row and ends with exactly the dataset an uninterrupted run makes (local workers
die with the driver, and a rerun first removes the killed run's temporary files). One broken video fails its own
rows, never the build. The settings that decide what a clip *is* are kept in build.json and a resumed build must
use the same ones.

A failure is either the input's (a `SplitMergeError`: corrupt video, no subject...: recorded, never retried) or
transient (the system's: an OSError such as a full disk, MemoryError, a worker process that died): its row is
status "failed" with a reason starting with `TRANSIENT`, and the next run retries it. A build that makes no ok
clip while some failed raises `SplitMergeError` once the manifest is written (docs/robustness.md, "Builds").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from ..atomic import atomic_file, sweep_stale
from ..errors import LayersFormatError, OptionError, SplitMergeError
from ..fileinfo import file_sha1
from ..paths import check_output
from ..video.geometry import parse_size
from . import engines
from .chunks import ClipTask, clip_id, plan_clips, split_of
from .manifest import CLIPS, ROWS, done_ids, empty_row, read_rows, write_manifest, write_row
from .sources import SourceVideo, collect_sources

DEFAULT_SIZE = (240, 360)   # small enough for a CPU; 480x720 is the paper's size
STRIDES = (1, 2, 3, 4)
BUILD_FILE = "build.json"
TRANSIENT = "transient: "  # reason prefix of a failed row that the next run retries
TRANSIENT_ERRORS = (OSError, MemoryError)  # the system failed, not the input (engines.WorkerDied is an OSError)


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
        if {"point", "box"} & set(self.split):
            raise OptionError("split options: a build cannot pick one subject by point or box for every clip")

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
    except (SplitMergeError, *TRANSIENT_ERRORS) as error:
        return {"row": _source_row(source, "unreadable", "failed", failure_reason(error))}
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
    row = _task_row(task)
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
        row.update(status="failed", reason=failure_reason(error))
    if row["status"] != "ok" and target.exists():
        shutil.rmtree(target)
    row["seconds_total"] = round(time.perf_counter() - started, 3)
    write_row(dataset, row)
    return row


def _task_row(task: ClipTask) -> dict:
    """A clip's row before it is made: what the task says."""
    return {**empty_row(), "id": task.id, "kind": task.kind, "source_path": task.source,
            "source_sha1": task.source_sha1, "start_frame": task.start, "stride": task.stride, "seed": task.seed,
            "license": task.license or "", "url": task.url or "", "caption": task.caption or "",
            "split": split_of(task.source_sha1 or f"synthetic-{task.seed}")}


def failure_reason(error: BaseException) -> str:
    """The reason of a failed row: one line, after `TRANSIENT` when the system failed rather than the input."""
    transient = isinstance(error, TRANSIENT_ERRORS) and not isinstance(error, SplitMergeError)
    return f"{TRANSIENT if transient else ''}{_one_line(error)}"


def is_transient(row: dict) -> bool:
    """Whether `row` failed for a passing reason (the next run retries it)."""
    return row["status"] == "failed" and row["reason"].startswith(TRANSIENT)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if isinstance(error, SplitMergeError):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# ---------------------------------------------------------------------------------------------------- driver


def _prepare(dataset: Path, config: BuildConfig) -> None:
    """Create or reopen a Dataset folder: refuse a foreign folder or different settings."""
    record = {"format": "splitmerge.dataset", "version": 1, **config.identity()}
    build_file = dataset / BUILD_FILE
    if dataset.exists():
        if not dataset.is_dir():
            raise OptionError(f"{dataset}: exists and is not a folder")
        if build_file.exists():
            previous = _read_build_file(build_file)
            if previous != record:
                changed = sorted(k for k in record if previous.get(k) != record[k])
                raise OptionError(f"{dataset}: was built with other settings ({', '.join(changed)}); "
                                  "resume with the same ones or build into a new folder")
        elif any(not _is_leftover(path.name) for path in dataset.iterdir()):
            raise OptionError(f"{dataset}: exists, is not empty and is not a dataset; refusing to write into it")
    dataset.mkdir(parents=True, exist_ok=True)
    if not build_file.exists():  # first, so that a folder with anything else in it always has it
        with atomic_file(build_file) as temporary:
            temporary.write_text(json.dumps(record, indent=2) + "\n")
    for folder in (dataset / CLIPS, dataset / ROWS):
        folder.mkdir(exist_ok=True)


def _read_build_file(path: Path) -> dict:
    """A dataset's recorded settings, or a one-line error for a damaged build.json."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        record = None
    if not isinstance(record, dict) or record.get("format") != "splitmerge.dataset":
        raise LayersFormatError(f"{path}: not a splitmerge dataset's build.json; build into a new folder")
    return record


def _resume(dataset: Path) -> None:
    """Clear what a killed run left (temporary files and folders) and forget the transient failures of earlier
    runs, so that this run makes them again."""
    _clear_leftovers(dataset)
    for row in read_rows(dataset):
        if is_transient(row) and Path(row["id"]).name == row["id"]:  # a plain name: its file is in rows/
            (dataset / ROWS / f"{row['id']}.json").unlink(missing_ok=True)


def _is_leftover(name: str) -> bool:
    """A temporary name of `atomic.py` (hidden, holding ``.partial``): what a killed writer leaves."""
    return name.startswith(".") and ".partial" in name


def _clear_leftovers(dataset: Path) -> None:
    """Remove the temporary files and folders that dead processes left anywhere under `dataset` (`sweep_stale`
    in each folder: a live process's work in progress stays; symlinks are not followed). In clips/ and rows/,
    which only a build writes, and this one holds the dataset, every temporary name goes (older names too)."""
    for folder, folders, _ in os.walk(dataset):
        folders[:] = [name for name in folders if not _is_leftover(name)]
        sweep_stale(folder)
    for folder in (dataset / CLIPS, dataset / ROWS):
        for path in folder.iterdir() if folder.is_dir() else ():
            if not _is_leftover(path.name):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


@contextlib.contextmanager
def _exclusive(dataset: Path) -> Iterator[None]:
    """Hold the dataset for this build: a second build into the same folder at the same time is refused (it
    would clear the first one's temporary files). The lock goes with the process, SIGKILL included."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    handle = os.open(dataset, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OptionError(f"{dataset}: another build is writing into it; wait for it to end") from None
        yield
    finally:
        os.close(handle)


def _progress(total: int, label: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="clip", disable=not sys.stderr.isatty(), leave=False)


def build(sources: list, output, config: BuildConfig | None = None, **options) -> dict:
    """Build (or resume) the Dataset folder `output` from `sources` (paths, folders, globs, list files).

    Options: the fields of `BuildConfig`. Returns a summary: counts by status (and how many failures are
    transient), the clips made in this run, the clips already done, seconds, the manifest path, and a warning
    ("" when none; also printed on stderr) when every candidate was skipped. Raises `SplitMergeError`, after
    writing the manifest, when no clip is ok and some failed.
    """
    from .report import write_readme

    config = config or BuildConfig(**options)
    videos = collect_sources(sources) if sources else []
    given = [item for item in sources or () if isinstance(item, (str, os.PathLike)) and Path(item).exists()]
    dataset = check_output(output, [*given, *(video.path for video in videos)], kind="folder")
    if not videos and not config.synthetic:
        raise OptionError("nothing to build: no sources and no --synthetic scenes")
    _prepare(dataset, config)
    started = time.perf_counter()
    run = {"engine": config.engine, "workers": config.workers, "address": config.ray_address}
    with _exclusive(dataset):
        _resume(dataset)
        with engines.session(config.engine, config.workers, config.ray_address):
            made, planned = _plan_and_make(dataset, videos, config, run)
        _clear_leftovers(dataset)  # of workers stopped mid-clip when a dead one restarted the pool
        rows = read_rows(dataset)
        manifest = write_manifest(dataset, rows)
        write_readme(dataset, rows, config.identity())
    counts = {status: sum(row["status"] == status for row in rows) for status in ("ok", "skipped", "failed")}
    warning = _outcome(dataset, rows, manifest)
    if warning:
        print(f"splitmerge: warning: {warning}", file=sys.stderr)
    return {"dataset": str(dataset), "manifest": str(manifest), "rows": len(rows), **counts,
            "transient": sum(map(is_transient, rows)), "made_this_run": made, "already_done": planned - made,
            "seconds": round(time.perf_counter() - started, 2), "warning": warning}


def _outcome(dataset: Path, rows: list[dict], manifest: Path) -> str:
    """Raise `SplitMergeError` when no row is ok and some failed; a warning when every row was skipped; else ""."""
    if any(row["status"] == "ok" for row in rows):
        return ""
    failed = [row for row in rows if row["status"] == "failed"]
    if not failed:
        return f"{dataset}: no clip passed the filters: all {len(rows)} candidates were skipped (reasons: {manifest})"
    transient = sum(map(is_transient, failed))
    retry = f", {transient} of them transient (run the build again to retry them)" if transient else ""
    first = failed[0]
    raise SplitMergeError(f"{dataset}: no clip made: {len(failed)} of {len(rows)} candidates failed{retry}; "
                          f"first: {first['source_path'] or first['id']}: {first['reason']} (manifest {manifest})")


def _plan_and_make(dataset: Path, videos: list[SourceVideo], config: BuildConfig, run: dict) -> tuple[int, int]:
    """Plan every source and make every clip not done yet; returns (clips made now, clips planned)."""
    identity = config.identity()
    done = done_ids(dataset)
    plans = [{"source": asdict(video), "config": identity} for video in videos]
    tasks: list[dict] = []
    with _progress(len(plans), "planning") as bar:
        for item, planned in engines.run(plan_source, plans, **run):
            if isinstance(planned, engines.WorkerDied):
                source = SourceVideo(**item["source"])
                planned = {"row": _source_row(source, "unreadable", "failed", failure_reason(planned))}
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
        for item, row in engines.run(make_clip, todo, **run):
            if isinstance(row, engines.WorkerDied):
                write_row(dataset, {**_task_row(ClipTask(**item["task"])), "status": "failed",
                                    "reason": failure_reason(row)})
            made += 1
            bar.update()
    return made, len(tasks)
