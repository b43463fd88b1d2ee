"""Fuzz: hostile inputs for every command and the public API, each checked against the whole bad-input contract.

CLI: exit code 2; stderr is exactly one line, ``splitmerge: error: ...``, naming the offending file or option; no
traceback. API: a `splitmerge.SplitMergeError` subclass with a one-line message. Both: nothing is written outside
the output (the test's folder is snapshotted before and after: on failure nothing at all is new or changed, on
success only paths under the output), the inputs are byte-identical afterwards, and no ``*.partial*`` leftovers.

The expensive inputs (a Layers folder, a dataset, a benchmark) are made once per module and copied into each
case's own folder before it is tampered with. Cases that could block (a FIFO), serve (the app), allocate a lot
(a 20000x20000 size) or are timed run the CLI in a subprocess under a memory limit and a timeout; the rest run
`splitmerge.cli.main` in-process, with stdout/stderr captured at the file-descriptor level (what a user sees).
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import pickle
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import splitmerge as sm
from splitmerge.cli import main

from conftest import audio_only, pattern_frames, write_raw_video

PREFIX = "splitmerge: error: "
XSS = "<img src=x onerror=alert(1)>"
MEMORY_LIMIT = 8 << 30          # address-space limit of subprocess cases (a missing size check must not OOM us)
SUBPROCESS_TIMEOUT = 60.0

# ------------------------------------------------------------------------------------------ shared inputs


class Base:
    """Inputs made once per module (lazily: a subset of cases builds only what it needs). Never modified."""

    def __init__(self, root: Path):
        self.root = root

    @cached_property
    def clip(self) -> Path:
        """12 frames, 64x96, H.264, 25 fps."""
        path = self.root / "clip.mp4"
        sm.write_video(path, sm.Video(pattern_frames(12, 64, 96), 25.0))
        return path

    @cached_property
    def one_frame(self) -> Path:
        path = self.root / "one_frame.mp4"
        sm.write_video(path, sm.Video(pattern_frames(1, 64, 96), 25.0))
        return path

    @cached_property
    def odd(self) -> Path:
        """A truly odd-sized stream (33x47, H.264 4:4:4): no padding, no size metadata."""
        return write_raw_video(self.root / "odd.mp4", pattern_frames(12, 33, 47), pix_fmt="yuv444p")

    @cached_property
    def audio(self) -> Path:
        return audio_only(self.root / "audio.mp4")

    @cached_property
    def layers(self) -> Path:
        path = self.root / "layers"
        assert main(["split", str(self.clip), "-o", str(path), "--size", "32x48", "--frames", "8"]) == 0
        return path

    @cached_property
    def dataset(self) -> Path:
        path = self.root / "data"
        assert main(["build", "--synthetic", "2", "--frames", "8", "--size", "32x48", "-o", str(path)]) == 0
        return path

    @cached_property
    def bench(self) -> Path:
        path = self.root / "bench"
        assert main(["bench", "make", "synthetic", "--cases", "2", "--frames", "8", "--size", "32x48",
                     "-o", str(path)]) == 0
        return path

    @cached_property
    def run(self) -> Path:
        """A finished one-step cpu-tiny training run (with its checkpoint), to resume."""
        path = self.root / "run"
        assert main(["train", "--preset", "cpu-tiny", "--data", str(self.dataset), "-o", str(path),
                     "--max-steps", "1"]) == 0
        return path

    @cached_property
    def model(self) -> Path:
        from splitmerge.merge.stm import DEFAULT_MODEL

        return Path(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Base:
    return Base(tmp_path_factory.mktemp("fuzz-base"))


class World:
    """One case's folder (`tmp`) and helpers that put copies of the shared inputs (or hostile files) in it."""

    def __init__(self, tmp: Path, base: Base):
        self.tmp, self.base = tmp, base

    def path(self, name: str) -> str:
        return str(self.tmp / name)

    def clip(self, name: str = "clip.mp4") -> str:
        target = self.tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.base.clip, target)
        return str(target)

    def copytree(self, source: Path, name: str) -> str:
        target = self.tmp / name
        shutil.copytree(source, target)
        return str(target)

    def layers(self, name: str = "layers") -> str:
        return self.copytree(self.base.layers, name)

    def dataset(self, name: str = "data") -> str:
        return self.copytree(self.base.dataset, name)

    def bench(self, name: str = "bench", cases: int = 1) -> str:
        """A copy of the benchmark keeping its first `cases` cases (one by default: evaluation is the slow part)."""
        folder = Path(self.copytree(self.base.bench, name))
        record = json.loads((folder / "bench.json").read_text())
        for key in record["cases"][cases:]:
            shutil.rmtree(folder / "cases" / key)
        record["cases"] = record["cases"][:cases]
        (folder / "bench.json").write_text(json.dumps(record, indent=2) + "\n")
        return str(folder)

    def model(self, name: str = "model") -> str:
        return self.copytree(self.base.model, name)

    def run(self, name: str = "run") -> str:
        return self.copytree(self.base.run, name)

    def write(self, name: str, content: str | bytes) -> str:
        target = self.tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
        return str(target)

    def bad_video(self, kind: str, name: str | None = None) -> str:
        """A hostile 'video' of `kind` (see `BAD_VIDEOS`) at tmp/<name>."""
        name = name or f"{kind}.mp4"
        target = self.tmp / name
        data = self.base.clip.read_bytes()
        if kind == "missing":
            pass
        elif kind == "empty":
            target.write_bytes(b"")
        elif kind == "text":
            target.write_text("this is a text file, not a video\n" * 20)
        elif kind == "truncated":
            target.write_bytes(data[: len(data) // 2])
        elif kind == "corrupt":  # the container header kept, everything after it noise
            noise = np.random.default_rng(7).integers(0, 256, len(data) - 64, dtype=np.uint8).tobytes()
            target.write_bytes(data[:64] + noise)
        elif kind == "audio":
            shutil.copyfile(self.base.audio, target)
        elif kind == "folder":
            target.mkdir()
        elif kind == "fifo":
            os.mkfifo(target)
        elif kind == "one_frame":
            shutil.copyfile(self.base.one_frame, target)
        elif kind == "odd":
            shutil.copyfile(self.base.odd, target)
        else:
            raise AssertionError(kind)
        return str(target)

    def outside_clip(self, name: str = "outside") -> str:
        """A sound Layers folder that belongs to nothing (what hostile relative paths point at)."""
        return self.copytree(first_clip(self.base.dataset), name)


def first_clip(dataset: Path) -> Path:
    return sorted((Path(dataset) / "clips").iterdir())[0]


BAD_VIDEOS = ("missing", "empty", "text", "truncated", "corrupt", "audio", "folder", "fifo")

# ------------------------------------------------------------------------------------------------- snapshot


def _digest(path: str) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under `root` (symlinks not followed, FIFOs not opened): relative path -> (kind, content id)."""
    state: dict[str, tuple] = {}
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            full = os.path.join(folder, name)
            info = os.lstat(full)
            rel = os.path.relpath(full, root)
            if stat.S_ISLNK(info.st_mode):
                state[rel] = ("link", os.readlink(full))
            elif stat.S_ISDIR(info.st_mode):
                state[rel] = ("dir",)
            elif stat.S_ISREG(info.st_mode):
                state[rel] = ("file", _digest(full))
            else:
                state[rel] = ("other", stat.S_IFMT(info.st_mode))
    return state


def tree_digest(path: str | Path) -> str | None:
    """A digest of a file or a folder's files (None: it does not exist)."""
    path = Path(path)
    if not os.path.lexists(path):
        return None
    if path.is_dir():
        return hashlib.sha256(json.dumps(sorted(snapshot(path).items())).encode()).hexdigest()
    if path.is_file():
        return _digest(str(path))
    return f"special {stat.S_IFMT(os.lstat(path).st_mode)}"


def _under(rel: str, roots: list[str]) -> bool:
    return any(rel == root or rel.startswith(root + os.sep) for root in roots)


def _shown(paths: list[str], limit: int = 3) -> str:
    more = f" (+{len(paths) - limit} more)" if len(paths) > limit else ""
    return ", ".join(sorted(paths)[:limit]) + more


def tree_problems(before: dict, after: dict, tmp: Path, outputs: list[str], succeeded: bool) -> list[str]:
    """What changed in the case's folder that the contract forbids."""
    roots = []
    for output in outputs:
        rel = os.path.relpath(os.path.abspath(output), tmp)
        if not rel.startswith(".."):
            roots.append(rel)
    new = [p for p in after if p not in before]
    changed = [p for p in after if p in before and after[p] != before[p]]
    removed = [p for p in before if p not in after]
    problems = []
    partial = [p for p in after if ".partial" in os.path.basename(p)]
    if partial:
        problems.append(f"[partial leftovers] {_shown(partial)}")
    new = [p for p in new if p not in partial]
    outside = [p for p in new if not _under(p, roots)]
    if outside:
        problems.append(f"[written outside the output] {_shown(outside)}")
    inside = [p for p in new if _under(p, roots)]
    if inside and not succeeded:
        problems.append(f"[output left after failure] {_shown(inside)}")
    changed_inputs = [p for p in changed if not (succeeded and _under(p, roots))]
    if changed_inputs:
        problems.append(f"[input modified] {_shown(changed_inputs)}")
    removed_inputs = [p for p in removed if not (succeeded and _under(p, roots))]
    if removed_inputs:
        problems.append(f"[input removed] {_shown(removed_inputs)}")
    return problems


# --------------------------------------------------------------------------------------------------- running

# Runs the real CLI entry point (`splitmerge.cli.main`, as `python -m splitmerge.cli` does) and reports how long
# main() itself took (interpreter start-up excluded) on an inherited pipe.
WRAPPER = """\
import os, sys, time
from splitmerge.cli import main
started = time.perf_counter()
try:
    code = main(sys.argv[1:])
finally:
    os.write(int(os.environ["FUZZ_TIMING_FD"]), ("%.3f" % (time.perf_counter() - started)).encode())
sys.exit(code)
"""


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


@dataclass
class Outcome:
    code: int | None             # None: an exception escaped (in-process) or the process hung
    out: str
    err: str
    seconds: float | None
    escaped: str | None = None   # the exception that escaped main(), with where it was raised
    hung: bool = False


def _where(error: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "splitmerge" in f.filename]
    frame = frames[-1] if frames else traceback.extract_tb(error.__traceback__)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"


def run_in_process(argv: list[str], capfd) -> Outcome:
    capfd.readouterr()
    started = time.perf_counter()
    escaped = None
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException as error:  # noqa: B036 (whatever escapes is what a user would see as a traceback)
        code = None
        first = (str(error).splitlines() or [""])[0][:160]
        escaped = f"{type(error).__name__} at {_where(error)}: {first}"
    seconds = time.perf_counter() - started
    captured = capfd.readouterr()
    return Outcome(code, captured.out, captured.err, seconds, escaped)


def run_subprocess(argv: list[str], cwd: Path, timeout: float) -> Outcome:
    read, write = os.pipe()
    env = {**os.environ, "FUZZ_TIMING_FD": str(write), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-c", WRAPPER, *argv], cwd=cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, pass_fds=(write,), start_new_session=True,
                               preexec_fn=_limit_memory)
    os.close(write)
    hung = False
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        hung = True
        os.killpg(process.pid, signal.SIGTERM)
        try:
            out, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
    timing = os.read(read, 64).decode()
    os.close(read)
    seconds = float(timing) if timing else None
    return Outcome(None if hung else process.returncode, out, err, seconds, hung=hung)


@dataclass
class Spec:
    """One hostile case. CLI: `argv`; API: `call` (a function of no arguments)."""

    argv: list[str] | None = None
    call: Callable[[], object] | None = None
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    mention: tuple[str, ...] = ()   # the line names one of these (the file or the option at fault)
    expect: str = "error"           # "error", "ok" or "ok_or_error" (a valid but unusual input)
    subprocess: bool = False
    timeout: float = SUBPROCESS_TIMEOUT
    max_seconds: float | None = None
    check: Callable[[], list[str]] | None = None  # further checks after a success: problems found


def error_line_problems(outcome: Outcome, mention: tuple[str, ...]) -> list[str]:
    problems = []
    if outcome.hung:
        return ["[hung] no exit within the timeout (killed)"]
    if outcome.escaped:  # in-process: the exception would be a traceback on stderr; nothing more to check
        return [f"[traceback] {outcome.escaped}"]
    if outcome.code == 0:
        return ["[exit 0] the hostile input was accepted"]
    if outcome.code != 2:
        problems.append(f"[exit {outcome.code}]")
    text = outcome.err[:-1] if outcome.err.endswith("\n") else outcome.err
    lines = text.split("\n") if text else []
    if "Traceback (most recent call last)" in outcome.err + outcome.out:
        last = [line for line in lines if line and not line.startswith(" ")][-1:]
        problems.append(f"[traceback] {last[0][:200] if last else ''}")
    if len(lines) != 1:
        shown = " | ".join(line[:100] for line in lines[:3])
        problems.append(f"[stderr has {len(lines)} lines] {shown}")
    if lines and not lines[0].startswith(PREFIX):
        problems.append(f"[stderr does not start with {PREFIX!r}] {lines[0][:160]}")
    error_lines = [line for line in lines if line.startswith(PREFIX)] or lines[:1]
    if mention and not any(any(m in line for m in mention) for line in error_lines):
        problems.append(f"[error line does not name {' / '.join(mention)}] {(error_lines or [''])[0][:200]}")
    return problems


def success_problems(outcome: Outcome) -> list[str]:
    if outcome.hung:
        return ["[hung] no exit within the timeout (killed)"]
    if outcome.escaped:
        return [f"[traceback] {outcome.escaped}"]
    if outcome.code != 0:
        return [f"[exit {outcome.code}] {outcome.err.strip()[:200]}"]
    return []


def input_problems(digests: dict, outputs: list[str], succeeded: bool, found: list[str]) -> list[str]:
    """Inputs whose bytes changed (hashed before and after), unless the snapshot already said so; after a success
    an input folder that holds the output may change by the output alone (the snapshot checks that)."""
    if any(p.startswith(("[input modified]", "[input removed]")) for p in found):
        return []
    problems = []
    for path, digest in digests.items():
        holds_output = any(os.path.abspath(o) == os.path.abspath(path) or
                           os.path.abspath(o).startswith(os.path.abspath(path) + os.sep) for o in outputs)
        if succeeded and holds_output:
            continue
        if tree_digest(path) != digest:
            problems.append(f"[input changed] {path}")
    return problems


def run_cli(argv: list[str], tmp_path: Path, inputs: list[str], output: list[str] | str | None, *, capfd,
            mention: tuple[str, ...] = (), expect: str = "error", use_subprocess: bool = False,
            timeout: float = SUBPROCESS_TIMEOUT, max_seconds: float | None = None, check=None) -> None:
    """Run the CLI on `argv` and assert the whole contract; fail with every violation found."""
    outputs = [output] if isinstance(output, str) else list(output or [])
    digests = {path: tree_digest(path) for path in inputs}
    before = snapshot(tmp_path)
    if use_subprocess:
        outcome = run_subprocess(argv, tmp_path, timeout)
    else:
        outcome = run_in_process(argv, capfd)
    after = snapshot(tmp_path)
    succeeded = outcome.code == 0 and not outcome.escaped and not outcome.hung
    if expect == "ok" or (expect == "ok_or_error" and succeeded):
        problems = success_problems(outcome)
        if not problems and check is not None:
            problems += check()
    else:
        problems = error_line_problems(outcome, mention)
    problems += tree_problems(before, after, tmp_path, outputs, succeeded)
    problems += input_problems(digests, outputs, succeeded, problems)
    if max_seconds is not None and (outcome.seconds is None or outcome.seconds > max_seconds):
        shown = "?" if outcome.seconds is None else f"{outcome.seconds:.2f}"
        problems.append(f"[slow] main() took {shown} s (limit {max_seconds} s)")
    if problems:
        pytest.fail(" ".join(dict.fromkeys(problems)), pytrace=False)


def run_api(call, tmp_path: Path, inputs: list[str], outputs: list[str], mention: tuple[str, ...] = ()) -> None:
    """Call `call()` and assert the API contract: a SplitMergeError with a one-line message, nothing written."""
    digests = {path: tree_digest(path) for path in inputs}
    before = snapshot(tmp_path)
    problems = []
    try:
        result = call()
    except sm.SplitMergeError as error:
        message = str(error)
        if "\n" in message or not message.strip():
            problems.append(f"[message not one line] {message[:200]!r}")
        if mention and not any(m in message for m in mention):
            problems.append(f"[message does not name {' / '.join(mention)}] {message[:200]}")
    except Exception as error:  # noqa: BLE001
        first = (str(error).splitlines() or [""])[0][:160]
        problems.append(f"[not a SplitMergeError] {type(error).__name__} at {_where(error)}: {first}")
    else:
        problems.append(f"[no error] returned {type(result).__name__}")
    after = snapshot(tmp_path)
    problems += tree_problems(before, after, tmp_path, outputs, succeeded=False)
    problems += input_problems(digests, outputs, False, problems)
    if problems:
        pytest.fail(" ".join(dict.fromkeys(problems)), pytrace=False)


# ---------------------------------------------------------------------------------------------------- cases

CASES: dict[str, Callable[[World], Spec]] = {}


def case(name: str):
    def register(function):
        assert name not in CASES, name
        CASES[name] = function
        return function
    return register


def cli(argv, inputs=(), outputs=(), mention=(), **options) -> Spec:
    mention = (mention,) if isinstance(mention, str) else tuple(mention)
    outputs = [outputs] if isinstance(outputs, str) else list(outputs)
    return Spec(argv=[str(a) for a in argv], inputs=list(inputs), outputs=outputs, mention=mention, **options)


def api(call, inputs=(), outputs=(), mention=()) -> Spec:
    mention = (mention,) if isinstance(mention, str) else tuple(mention)
    outputs = [outputs] if isinstance(outputs, str) else list(outputs)
    return Spec(call=call, inputs=list(inputs), outputs=outputs, mention=mention)


# ---- probe, split, compose --bg: hostile video files ------------------------------------------------------

for _kind in BAD_VIDEOS:
    def _probe(world, kind=_kind):
        video = world.bad_video(kind)
        return cli(["probe", video], [video], [], video, subprocess=kind == "fifo", timeout=20)

    def _split(world, kind=_kind):
        video, out = world.bad_video(kind), world.path("out")
        return cli(["split", video, "-o", out, "--size", "32x48", "--frames", "8"], [video], out, video,
                   subprocess=kind == "fifo", timeout=20)

    def _compose(world, kind=_kind):
        video, layers, out = world.bad_video(kind), world.layers(), world.path("out.mp4")
        return cli(["compose", "--fg", layers, "--bg", video, "-o", out, "--method", "copy-paste"], [video, layers],
                   out, video, subprocess=kind == "fifo", timeout=20)

    case(f"probe-{_kind}")(_probe)
    case(f"split-{_kind}")(_split)
    case(f"compose-bg-{_kind}")(_compose)


def _read_back(path: str, shape: tuple[int, ...]) -> Callable[[], list[str]]:
    def check():
        got = sm.read_video(path).frames.shape
        return [] if got[1:] == shape[1:] and got[0] >= 1 else [f"[wrong result] {path}: {got}, expected {shape}"]
    return check


@case("probe-one-frame-ok")
def _(world):
    video = world.bad_video("one_frame")
    spec = cli(["probe", video], [video], [], video, expect="ok")
    spec.check = lambda: [] if sm.probe(video).frames == 1 else [f"[wrong probe] {sm.probe(video)}"]
    return spec


@case("probe-odd-33x47-ok")
def _(world):
    video = world.bad_video("odd")
    spec = cli(["probe", video], [video], [], video, expect="ok")
    spec.check = lambda: [] if (sm.probe(video).width, sm.probe(video).height) == (47, 33) else \
        [f"[wrong probe] {sm.probe(video)}"]
    return spec


@case("split-one-frame")
def _(world):
    video, out = world.bad_video("one_frame"), world.path("out")
    return cli(["split", video, "-o", out], [video], out, (video, "frame"))


@case("split-odd-33x47")
def _(world):
    video, out = world.bad_video("odd"), world.path("out")
    spec = cli(["split", video, "-o", out, "--frames", "8"], [video], out, video, expect="ok_or_error")
    spec.check = lambda: [] if sm.Layers.load(out).frames.shape == (8, 33, 47, 3) else ["[wrong result] layers"]
    return spec


@case("compose-bg-one-frame")
def _(world):
    video, layers, out = world.bad_video("one_frame"), world.layers(), world.path("out.mp4")
    spec = cli(["compose", "--fg", layers, "--bg", video, "-o", out, "--method", "copy-paste"], [video, layers],
               out, video, expect="ok_or_error")
    spec.check = _read_back(out, (1, 64, 96, 3))
    return spec


@case("compose-bg-odd-33x47")
def _(world):
    video, layers, out = world.bad_video("odd"), world.layers(), world.path("out.mp4")
    spec = cli(["compose", "--fg", layers, "--bg", video, "-o", out, "--method", "copy-paste"], [video, layers],
               out, video, expect="ok_or_error")
    spec.check = _read_back(out, (8, 33, 47, 3))
    return spec


# ---- split: options and outputs ----------------------------------------------------------------------------

SPLIT_BAD_OPTIONS = {
    "frames-0": (["--frames", "0"], "frames"),
    "frames-3": (["--frames", "3"], "frames"),
    "stride-0": (["--stride", "0"], "stride"),
    "start-minus-1": (["--start", "-1"], "start"),
    "start-past-end": (["--start", "1000"], "start"),
    "window-0": (["--window", "0"], "window"),
    "size-12by3": (["--size", "12by3"], "size"),
    "size-1x1": (["--size", "1x1"], "size"),
    "set-dilation-abc": (["--set", "propagate.dilation=abc"], "dilation"),
    "set-nosuch-key": (["--set", "nosuch.key=1"], "nosuch"),
    "set-unknown-option": (["--set", "propagate.nosuch=1"], "nosuch"),
    "backend-nosuch": (["--backend", "nosuch"], "nosuch"),
    "restorer-nosuch": (["--restorer", "nosuch"], "nosuch"),
}

for _name, (_flags, _mention) in SPLIT_BAD_OPTIONS.items():
    def _split_option(world, flags=_flags, mention=_mention):
        video, out = world.clip(), world.path("out")
        argv = ["split", video, "-o", out, *(["--size", "32x48"] if "--size" not in flags else []),
                *(["--frames", "8"] if "--frames" not in flags else []), *flags]
        return cli(argv, [video], out, mention)

    case(f"split-{_name}")(_split_option)


@case("split-size-20000x20000-fast")
def _(world):
    video, out = world.clip(), world.path("out")
    return cli(["split", video, "-o", out, "--size", "20000x20000", "--frames", "8"], [video], out, "20000",
               subprocess=True, max_seconds=1.0)


@case("split-output-is-folder-holding-video")
def _(world):
    video, folder = world.clip("work/clip.mp4"), world.path("work")
    return cli(["split", video, "-o", folder, "--size", "32x48", "--frames", "8"], [video], folder, folder)


@case("split-output-is-layers-folder-holding-video")
def _(world):
    layers = world.layers()
    video = str(Path(layers) / "source.mp4")
    return cli(["split", video, "-o", layers, "--frames", "8"], [video, layers], layers, layers)


@case("split-output-is-the-video")
def _(world):
    video = world.clip()
    return cli(["split", video, "-o", video, "--size", "32x48", "--frames", "8"], [video], video, video)


@case("split-output-is-a-file")
def _(world):
    video, out = world.clip(), world.write("notes.txt", "keep me\n")
    return cli(["split", video, "-o", out, "--size", "32x48", "--frames", "8"], [video, out], out, out)


@case("split-output-under-a-file")
def _(world):
    video, blocker = world.clip(), world.write("notes.txt", "keep me\n")
    out = str(Path(blocker) / "out")
    return cli(["split", video, "-o", out, "--size", "32x48", "--frames", "8"], [video, blocker], out, blocker)


@case("split-output-unwritable-proc")
def _(world):
    video = world.clip()
    return cli(["split", video, "-o", "/proc/x/out", "--size", "32x48", "--frames", "8"], [video], [], "/proc/x")


# ---- compose: options, outputs, hostile Layers folders and models -------------------------------------------

def compose_argv(world, *extra, method="copy-paste", out="out.mp4"):
    layers, video, output = world.layers(), world.clip(), world.path(out)
    argv = ["compose", "--fg", layers, "--bg", video, "-o", output, *(["--method", method] if method else []),
            *extra]
    return argv, [layers, video], output


COMPOSE_BAD_OPTIONS = {
    "steps-minus-3": (["--steps", "-3"], "stm", "steps"),
    "steps-0": (["--steps", "0"], "stm", "steps"),
    "guidance-nan": (["--guidance", "nan"], "stm", "guidance"),
    "guidance-inf": (["--guidance", "inf"], "stm", "guidance"),
    "scale-minus-1": (["--scale", "-1"], "copy-paste", "scale"),
    "scale-nan": (["--scale", "nan"], "copy-paste", "scale"),
    "scale-inf": (["--scale", "inf"], "copy-paste", "scale"),
    "position-2-2": (["--position", "2,2"], "copy-paste", "position"),
    "position-nan": (["--position", "nan,0.5"], "copy-paste", "position"),
    "position-one-value": (["--position", "0.5"], "copy-paste", "position"),
    "method-nosuch": ([], "nosuch", "nosuch"),
    "position-and-trajectory": (["--position", "0.5,0.5", "--trajectory", "{traj}"], "copy-paste",
                                ("trajectory", "position")),
}

for _name, (_flags, _method, _mention) in COMPOSE_BAD_OPTIONS.items():
    def _compose_option(world, flags=_flags, method=_method, mention=_mention):
        traj = world.write("traj.csv", "0.5,0.5\n" * 12)
        argv, inputs, out = compose_argv(world, *[f.replace("{traj}", traj) for f in flags], method=method)
        return cli(argv, inputs + [traj], out, mention)

    case(f"compose-{_name}")(_compose_option)


@case("compose-trajectory-nan-rows")
def _(world):
    traj = world.write("traj.csv", "nan,0.5\n" * 12)
    argv, inputs, out = compose_argv(world, "--trajectory", traj)
    return cli(argv, inputs + [traj], out, traj)


@case("compose-trajectory-json-object")
def _(world):
    traj = world.write("traj.json", json.dumps({"x": 0.5, "y": 0.5}))
    argv, inputs, out = compose_argv(world, "--trajectory", traj)
    return cli(argv, inputs + [traj], out, traj)


@case("compose-bg-is-output")
def _(world):
    layers, video = world.layers(), world.clip("a.mp4")
    return cli(["compose", "--fg", layers, "--bg", video, "-o", video, "--method", "copy-paste"], [layers, video],
               video, video)


def _compose_into_fg(file_name: str):
    """A compose whose output is `file_name` inside its own --fg Layers folder (new, or one of its files)."""
    def setup(world):
        argv, inputs, _ = compose_argv(world)
        out = str(Path(inputs[0]) / file_name)
        argv[argv.index("-o") + 1] = out
        return cli(argv, inputs, out, out)

    return setup


case("compose-output-inside-fg-folder")(_compose_into_fg("out.mp4"))
case("compose-output-replaces-fg-file")(_compose_into_fg("source.mp4"))


@case("compose-layers-out-is-fg-folder")
def _(world):
    argv, inputs, out = compose_argv(world)
    return cli(argv + ["--layers-out", inputs[0]], inputs, [out, inputs[0]], inputs[0])


@case("compose-output-is-a-folder")
def _(world):
    argv, inputs, _ = compose_argv(world)
    out = world.path("result.mp4")
    os.mkdir(out)
    argv[argv.index("-o") + 1] = out
    return cli(argv, inputs, out, out)


@case("compose-output-unknown-extension")
def _(world):
    argv, inputs, out = compose_argv(world, out="out.xyz")
    return cli(argv, inputs, out, out)


@case("compose-output-unwritable-proc")
def _(world):
    argv, inputs, _ = compose_argv(world)
    argv[argv.index("-o") + 1] = "/proc/x/out.mp4"
    return cli(argv, inputs, [], "/proc/x")


@case("compose-output-under-a-file")
def _(world):
    blocker = world.write("notes.txt", "keep me\n")
    argv, inputs, _ = compose_argv(world)
    out = str(Path(blocker) / "out.mp4")
    argv[argv.index("-o") + 1] = out
    return cli(argv, inputs + [blocker], out, blocker)


@case("compose-fg-missing")
def _(world):
    video, out, missing = world.clip(), world.path("out.mp4"), world.path("nolayers")
    return cli(["compose", "--fg", missing, "--bg", video, "-o", out, "--method", "copy-paste"], [video], out,
               missing)


@case("compose-fg-is-a-video-file")
def _(world):
    video, out = world.clip(), world.path("out.mp4")
    return cli(["compose", "--fg", video, "--bg", video, "-o", out, "--method", "copy-paste"], [video], out, video)


def _edit_header(change):
    def edit(folder: str) -> None:
        path = Path(folder) / "layers.json"
        header = json.loads(path.read_text())
        result = change(header)
        path.write_text(result if isinstance(result, str) else json.dumps(header if result is None else result))
    return edit


def _drop(key):
    """An edit that removes `key` from a JSON object (and returns None: the object itself is written back)."""
    return lambda record: record.pop(key, None) and None or None


HOSTILE_LAYERS = {
    "layers-json-not-json": _edit_header(lambda h: "{not json"),
    "layers-json-binary": lambda folder: (Path(folder) / "layers.json").write_bytes(b"\xff\xfe\x00garbage"),
    "layers-json-list": _edit_header(lambda h: [h]),
    "layers-json-missing-num-frames": _edit_header(_drop("num_frames")),
    "layers-json-missing-fps": _edit_header(_drop("fps")),
    "layers-json-height-is-text": _edit_header(lambda h: h.update(height="32") or None),
    "layers-json-fps-nan": _edit_header(lambda h: h.update(fps="nan") or None),
    "layers-json-caption-is-list": _edit_header(lambda h: h.update(caption=["a", "b"]) or None),
    "layers-json-claims-100-frames": _edit_header(lambda h: h.update(num_frames=100) or None),
    "layers-json-claims-other-size": _edit_header(lambda h: h.update(width=96, height=64) or None),
    "layers-json-names-outside-files": _edit_header(
        lambda h: h.update(foreground="../../etc/passwd", alpha="/etc/passwd", source="../outside.mp4") or None),
    "layers-json-missing": lambda folder: os.remove(Path(folder) / "layers.json"),
    "alpha-missing": lambda folder: os.remove(Path(folder) / "alpha.mkv"),
    "alpha-is-text": lambda folder: (Path(folder) / "alpha.mkv").write_text("not a matte\n" * 10),
    "foreground-truncated": lambda folder: (Path(folder) / "foreground.mp4").write_bytes(
        (Path(folder) / "foreground.mp4").read_bytes()[:300]),
    "foreground-other-size": lambda folder: sm.write_video(Path(folder) / "foreground.mp4",
                                                           sm.Video(pattern_frames(8, 34, 46), 25.0)),
    "alpha-fewer-frames": lambda folder: sm.write_matte(Path(folder) / "alpha.mkv",
                                                        np.zeros((3, 32, 48), np.float32) + 0.5, 25, bits=8),
}

@case("compose-fg-layers-json-claims-huge-size")
def _(world):
    """A header claiming 100000x100000 frames must be refused from the files, not allocated (run under a memory
    limit in a subprocess)."""
    argv, inputs, out = compose_argv(world)
    _edit_header(lambda h: h.update(width=100000, height=100000) or None)(inputs[0])
    return cli(argv, inputs, out, inputs[0], subprocess=True, timeout=60)


for _name, _tamper in HOSTILE_LAYERS.items():
    def _compose_layers(world, tamper=_tamper, name=_name):
        argv, inputs, out = compose_argv(world)
        tamper(inputs[0])
        # layers.json does not name files: keys it does not know are harmless, or refused; never followed.
        expect = "ok_or_error" if name == "layers-json-names-outside-files" else "error"
        return cli(argv, inputs, out, inputs[0], expect=expect)

    case(f"compose-fg-{_name}")(_compose_layers)


def _model_case(tamper):
    def make(world):
        model = world.model()
        tamper(world, Path(model))
        argv, inputs, out = compose_argv(world, "--model", model, method="stm")
        return cli(argv, inputs + [model], out, model)
    return make


class _Mkdir:
    """A pickle that, when loaded, makes a folder: the proof that a pickle in a model folder was executed."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _pickle_weights(world: World, model: Path) -> None:
    weights = model / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.unlink()
    (model / "transformer" / "diffusion_pytorch_model.bin").write_bytes(
        pickle.dumps({"weight": _Mkdir(world.path("pwned"))}, protocol=2))


HOSTILE_MODELS = {
    "missing": lambda world, model: shutil.rmtree(model),
    "composer-json-not-json": lambda world, model: (model / "composer.json").write_text("{oops"),
    "composer-json-list": lambda world, model: (model / "composer.json").write_text("[1, 2]"),
    "composer-json-unknown-key": lambda world, model: (model / "composer.json").write_text(json.dumps(
        {**json.loads((model / "composer.json").read_text()), "nosuch": 1})),
    "composer-json-wrong-type": lambda world, model: (model / "composer.json").write_text(json.dumps(
        {**json.loads((model / "composer.json").read_text()), "sample_frames": "eight"})),
    "config-json-not-json": lambda world, model: (model / "transformer" / "config.json").write_text("{oops"),
    "weights-truncated": lambda world, model: (model / "transformer" / "diffusion_pytorch_model.safetensors")
    .write_bytes((model / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes()[:1000]),
    "weights-pickle-not-safetensors": _pickle_weights,
}

for _name, _tamper in HOSTILE_MODELS.items():
    case(f"compose-model-{_name}")(_model_case(_tamper))


# ---- build ------------------------------------------------------------------------------------------------

def build_argv(out, *extra, size="32x48"):
    return ["build", "--synthetic", "1", "--frames", "8", "--size", size, "-o", out, *extra]


@case("build-size-20000x20000-fast")
def _(world):
    out = world.path("data_out")
    return cli(build_argv(out, size="20000x20000"), [], out, "20000", subprocess=True, max_seconds=1.0)


BUILD_BAD_OPTIONS = {
    "max-clips-minus-1": (["--max-clips", "-1"], "max"),
    "frames-0": (["--frames", "0"], "frames"),
    "synthetic-minus-1": (["--synthetic", "-1"], "synthetic"),
    "strides-0": (["--strides", "0"], "strides"),
    "strides-abc": (["--strides", "a,b"], "strides"),
    "workers-0": (["--workers", "0"], "workers"),
    "size-12by3": (["--size", "12by3"], "size"),
    "set-nosuch-key": (["--set", "nosuch.key=1"], "nosuch"),
}

for _name, (_flags, _mention) in BUILD_BAD_OPTIONS.items():
    def _build_option(world, flags=_flags, mention=_mention):
        out = world.path("data_out")
        argv = build_argv(out)
        for flag, value in zip(flags[::2], flags[1::2], strict=True):
            if flag in argv:
                argv[argv.index(flag) + 1] = value
            else:
                argv += [flag, value]
        return cli(argv, [], out, mention)

    case(f"build-{_name}")(_build_option)


@case("build-source-missing")
def _(world):
    out, missing = world.path("data_out"), world.path("nosuch.mp4")
    return cli(["build", missing, "--frames", "8", "--size", "32x48", "-o", out], [], out, missing)


@case("build-list-csv-not-utf8")
def _(world):
    listing = world.write("videos.csv", b"path,caption\n\xff\xfe\xfa.mp4,\xe9t\xe9\n")
    out = world.path("data_out")
    return cli(["build", listing, "--frames", "8", "--size", "32x48", "-o", out], [listing], out, listing)


@case("build-list-jsonl-not-json")
def _(world):
    listing = world.write("videos.jsonl", '{"path": "a.mp4"}\n{oops\n')
    out = world.path("data_out")
    return cli(["build", listing, "--frames", "8", "--size", "32x48", "-o", out], [listing], out, listing)


@case("build-output-is-a-file")
def _(world):
    out = world.write("notes.txt", "keep me\n")
    return cli(build_argv(out), [out], out, out)


def _dataset_with_build_json(content: str):
    def make(world):
        data = world.dataset()
        (Path(data) / "build.json").write_text(content)
        argv = ["build", "--synthetic", "2", "--frames", "8", "--size", "32x48", "-o", data]
        return cli(argv, [data], data, (data, "build.json"))
    return make


case("build-resume-build-json-not-json")(_dataset_with_build_json("{not json"))
case("build-resume-build-json-list")(_dataset_with_build_json("[1, 2, 3]"))


@case("build-output-is-the-source-folder")
def _(world):
    video = world.clip("videos/clip.mp4")
    folder = str(Path(video).parent)
    return cli(["build", folder, "--frames", "8", "--size", "32x48", "-o", folder], [folder], folder, folder)


@case("build-output-inside-the-source-folder")
def _(world):
    video = world.clip("videos/clip.mp4")
    folder = str(Path(video).parent)
    out = str(Path(folder) / "data")
    return cli(["build", folder, "--frames", "8", "--size", "32x48", "-o", out], [folder], out, out)


# ---- dataset ----------------------------------------------------------------------------------------------

def edit_manifest(dataset: str, change, rows_too: bool = True) -> None:
    """Rewrite manifest.parquet (and rows/*.json to match) after `change(rows)` edits the rows in place."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(dataset) / "manifest.parquet"
    table = pq.read_table(path)
    rows = table.to_pylist()
    change(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    if rows_too:
        for old in (Path(dataset) / "rows").glob("*.json"):
            old.unlink()
        for row in rows:
            (Path(dataset) / "rows" / f"{row['id']}.json").write_text(json.dumps(row, sort_keys=True) + "\n")


def _first(**values):
    return lambda rows: rows[0].update(values)


DATASET_ACTIONS = {
    "verify": lambda world, data: (["dataset", "verify", data], []),
    "stats": lambda world, data: (["dataset", "stats", data, "-o", world.path("stats")], [world.path("stats")]),
    "preview": lambda world, data: (["dataset", "preview", data, "-o", world.path("page.html")],
                                    [world.path("page.html")]),
    "export": lambda world, data: (["dataset", "export", data, "-o", world.path("shards"), "--split", "all"],
                                   [world.path("shards")]),
    "export-lists": lambda world, data: (["dataset", "export", data, "-o", world.path("lists"), "--split", "all",
                                          "--format", "cogvideox-lists"], [world.path("lists")]),
}


def _dataset_case(action: str, tamper, mention=None):
    def make(world):
        data = world.dataset()
        world.outside_clip()
        tamper(world, data)
        argv, outputs = DATASET_ACTIONS[action](world, data)
        return cli(argv, [data], outputs, mention or data)
    return make


for _action in ("verify", "stats", "export", "export-lists"):
    case(f"dataset-{_action}-clip-leads-outside")(_dataset_case(
        _action, lambda world, data: edit_manifest(data, _first(clip="../outside"))))
case("dataset-export-id-leads-outside")(_dataset_case(
    "export", lambda world, data: edit_manifest(data, _first(id="../../evil"), rows_too=False)))
case("dataset-export-clip-absolute")(_dataset_case(
    "export", lambda world, data: edit_manifest(data, lambda rows: rows[0].update(clip=world.path("outside")))))
case("dataset-verify-manifest-is-text")(_dataset_case(
    "verify", lambda world, data: (Path(data) / "manifest.parquet").write_text("not parquet\n")))
case("dataset-preview-manifest-missing")(_dataset_case(
    "preview", lambda world, data: (Path(data) / "manifest.parquet").unlink()))
case("dataset-verify-row-json-not-json")(_dataset_case(
    "verify", lambda world, data: next((Path(data) / "rows").glob("*.json")).write_text("{oops")))


def _xss_case(column: str):
    def make(world):
        data = world.dataset()
        edit_manifest(data, lambda rows: rows[0].update({column: XSS}), rows_too=column != "id")
        page = world.path("page.html")

        def check():
            text = Path(page).read_text()
            problems = []
            if XSS in text:
                problems.append(f"[unescaped HTML from the manifest's {column}] in {page}")
            if html.escape(XSS) not in text and html.escape(XSS, quote=False) not in text:
                problems.append(f"[the manifest's {column} is missing from the page]")
            return problems

        return cli(["dataset", "preview", data, "-o", page], [data], page, expect="ok", check=check)
    return make


case("dataset-preview-xss-id")(_xss_case("id"))
case("dataset-preview-xss-split")(_xss_case("split"))


@case("dataset-export-clip-symlink-outside")
def _(world):
    """The manifest's clip path is fine, but the clip folder is a symlink to a folder outside the dataset."""
    data = world.dataset()
    outside = world.outside_clip()
    import pyarrow.parquet as pq

    clip = Path(data) / pq.read_table(Path(data) / "manifest.parquet").to_pylist()[0]["clip"]
    shutil.rmtree(clip)
    os.symlink(outside, clip)
    out = world.path("shards")
    return cli(["dataset", "export", data, "-o", out, "--split", "all"], [data, outside], out, data)


@case("dataset-export-per-shard-0")
def _(world):
    data, out = world.dataset(), world.path("shards")
    return cli(["dataset", "export", data, "-o", out, "--per-shard", "0", "--split", "all"], [data], out,
               ("per-shard", "per_shard"))


@case("dataset-export-no-output")
def _(world):
    data = world.dataset()
    return cli(["dataset", "export", data, "--split", "all"], [data], [], "-o")


@case("dataset-export-into-the-dataset")
def _(world):
    data = world.dataset()
    return cli(["dataset", "export", data, "-o", data, "--split", "all"], [data], data, data)


@case("dataset-preview-overwrites-manifest")
def _(world):
    data = world.dataset()
    page = str(Path(data) / "manifest.parquet")
    return cli(["dataset", "preview", data, "-o", page], [data], page, page)


@case("dataset-stats-output-is-a-file")
def _(world):
    data, out = world.dataset(), world.write("notes.txt", "keep me\n")
    return cli(["dataset", "stats", data, "-o", out], [data, out], out, out)


@case("dataset-verify-missing")
def _(world):
    missing = world.path("nodata")
    return cli(["dataset", "verify", missing], [], [], missing)


# ---- bench ------------------------------------------------------------------------------------------------

def bench_argv(out, *extra):
    return ["bench", "make", "synthetic", "--cases", "1", "--frames", "8", "--size", "32x48", "-o", out, *extra]


BENCH_BAD_OPTIONS = {
    "cases-0": ("--cases", "0", "cases"),
    "cases-minus-2": ("--cases", "-2", "cases"),
    "frames-0": ("--frames", "0", "frames"),
    "size-12by3": ("--size", "12by3", "size"),
}

for _name, (_flag, _value, _mention) in BENCH_BAD_OPTIONS.items():
    def _bench_option(world, flag=_flag, value=_value, mention=_mention):
        out = world.path("bench_out")
        argv = bench_argv(out)
        argv[argv.index(flag) + 1] = value
        return cli(argv, [], out, mention)

    case(f"bench-{_name}")(_bench_option)


@case("bench-size-20000x20000-fast")
def _(world):
    out = world.path("bench_out")
    argv = bench_argv(out)
    argv[argv.index("--size") + 1] = "20000x20000"
    return cli(argv, [], out, "20000", subprocess=True, max_seconds=1.0)


@case("bench-output-is-a-file")
def _(world):
    out = world.write("notes.txt", "keep me\n")
    return cli(bench_argv(out), [out], out, out)


@case("bench-self-data-missing")
def _(world):
    out, missing = world.path("bench_out"), world.path("nodata")
    return cli(["bench", "make", "self", "--data", missing, "--cases", "1", "--split", "train", "-o", out], [], out,
               missing)


@case("bench-self-clip-leads-outside")
def _(world):
    data, out = world.dataset(), world.path("bench_out")
    world.outside_clip()
    edit_manifest(data, lambda rows: [row.update(clip="../outside") for row in rows])
    return cli(["bench", "make", "self", "--data", data, "--cases", "1", "--split", "train", "-o", out], [data], out,
               data)


# ---- evaluate ---------------------------------------------------------------------------------------------

def _bench_json(change):
    def tamper(world, bench):
        path = Path(bench) / "bench.json"
        record = json.loads(path.read_text())
        result = change(world, bench, record)
        path.write_text(result if isinstance(result, str) else json.dumps(record if result is None else result))
    return tamper


def _evil_case(world, bench, record, key="../../outside/evil"):
    """Copy the bench's case folder to where `key` leads from bench/cases, and make `key` the only case."""
    source = Path(bench) / "cases" / record["cases"][0]
    target = (Path(bench) / "cases" / key).resolve()
    assert str(target).startswith(str(world.tmp)), target
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target)
    record["cases"] = [key]


HOSTILE_BENCHES = {
    "bench-json-not-json": _bench_json(lambda w, b, r: "{oops"),
    "bench-json-list": _bench_json(lambda w, b, r: [r]),
    "bench-json-no-cases": _bench_json(lambda w, b, r: _drop("cases")(r)),
    "bench-json-no-settings": _bench_json(lambda w, b, r: _drop("settings")(r)),
    "bench-json-cases-not-list": _bench_json(lambda w, b, r: r.update(cases=5) or None),
    "bench-json-version-text": _bench_json(lambda w, b, r: r.update(version="two") or None),
    "case-id-leads-outside": _bench_json(lambda w, b, r: _evil_case(w, b, r)),
    "case-id-absolute": _bench_json(lambda w, b, r: _evil_case(w, b, r, key=w.path("outside/evil"))),
    "case-json-not-json": lambda world, bench: next((Path(bench) / "cases").glob("*/case.json")).write_text("{oops"),
    "case-json-no-prompt": lambda world, bench: _edit_json(next((Path(bench) / "cases").glob("*/case.json")),
                                                           _drop("prompt")),
    "case-json-prompt-is-list": lambda world, bench: _edit_json(next((Path(bench) / "cases").glob("*/case.json")),
                                                                lambda r: r.update(prompt=["a", 1]) or None),
    "case-truth-missing": lambda world, bench: next((Path(bench) / "cases").glob("*/truth.mp4")).unlink(),
    "case-foreground-layers-json-list": lambda world, bench: _edit_json(
        next((Path(bench) / "cases").glob("*/foreground/layers.json")), lambda r: [r]),
}


def _edit_json(path: Path, change):
    record = json.loads(path.read_text())
    result = change(record)
    path.write_text(json.dumps(record if result is None else result))


for _name, _tamper in HOSTILE_BENCHES.items():
    def _evaluate_bench(world, tamper=_tamper):
        bench, out = world.bench(), world.path("ev")
        tamper(world, bench)
        return cli(["evaluate", "--bench", bench, "--method", "copy-paste", "-o", out], [bench], out, bench)

    case(f"evaluate-{_name}")(_evaluate_bench)


@case("evaluate-case-id-escapes-the-output")
def _(world):
    """Nested bench: ../../../outside/evil reads tmp/outside/evil and would write ev/videos/copy-paste/../../../."""
    bench, out = world.bench("b/bench"), world.path("ev")
    _bench_json(lambda w, b, r: _evil_case(w, b, r, key="../../../outside/evil"))(world, bench)
    return cli(["evaluate", "--bench", bench, "--method", "copy-paste", "-o", out], [bench], out, bench)


def _results_case(content):
    def make(world):
        bench, out = world.bench(), world.path("ev")
        key = json.loads((Path(bench) / "bench.json").read_text())["cases"][0]
        results = world.tmp / "mine"
        results.mkdir()
        target = results / f"{key}.mp4"
        content(world, target)
        return cli(["evaluate", "--bench", bench, "--results", str(results), "-o", out], [bench, str(results)], out,
                   str(results))
    return make


case("evaluate-results-wrong-size")(_results_case(
    lambda world, target: sm.write_video(target, sm.Video(pattern_frames(8, 64, 96), 25.0))))
case("evaluate-results-not-a-video")(_results_case(lambda world, target: target.write_text("not a video\n")))
case("evaluate-results-missing-case")(_results_case(lambda world, target: None))


@case("evaluate-results-id-leads-outside")
def _(world):
    """The results folder is read as RESULTS/<case id>.mp4: an id with ../ must not pick a file elsewhere."""
    bench, out = world.bench(), world.path("ev")
    _bench_json(lambda w, b, r: _evil_case(w, b, r))(world, bench)
    results = world.tmp / "mine"
    results.mkdir()
    return cli(["evaluate", "--bench", bench, "--results", str(results), "-o", out], [bench, str(results)], out,
               bench)


@case("evaluate-judge-frames-0")
def _(world):
    from fake_vlm import FakeServer

    server = FakeServer()
    server.thread.start()
    world.server = server  # stopped by the test after the run
    bench, out = world.bench(), world.path("ev")
    return cli(["evaluate", "--bench", bench, "--method", "copy-paste", "--method", "harmonized-copy-paste",
                "-o", out, "--judge", "--judge-frames", "0", "--vlm-url", server.url, "--vlm-model", "judge"],
               [bench], out, ("judge-frames", "judge_frames", "judge frames"))


@case("evaluate-case-folder-symlink-outside")
def _(world):
    bench, out = world.bench(), world.path("ev")
    key = json.loads((Path(bench) / "bench.json").read_text())["cases"][0]
    case_folder = Path(bench) / "cases" / key
    outside = world.tmp / "outside" / "evil"
    outside.parent.mkdir()
    shutil.move(str(case_folder), str(outside))
    os.symlink(outside, case_folder)
    return cli(["evaluate", "--bench", bench, "--method", "copy-paste", "-o", out], [bench, str(outside)], out,
               bench)


@case("evaluate-output-is-the-results-folder")
def _(world):
    bench = world.bench()
    key = json.loads((Path(bench) / "bench.json").read_text())["cases"][0]
    results = world.tmp / "mine"
    results.mkdir()
    shutil.copyfile(Path(bench) / "cases" / key / "background.mp4", results / f"{key}.mp4")
    return cli(["evaluate", "--bench", bench, "--results", str(results), "-o", str(results)], [bench, str(results)],
               str(results), str(results))


@case("evaluate-report-escapes-the-prompt")
def _(world):
    """A case's prompt is text from a file: the report shows it escaped (a valid benchmark otherwise)."""
    bench, out = world.bench(), world.path("ev")
    path = next((Path(bench) / "cases").glob("*/case.json"))
    _edit_json(path, lambda r: r.update(prompt=f"a cat {XSS}", stated_prompt=f"a cat {XSS}") or None)

    def check():
        pages = [p for p in Path(out).rglob("*.htm*")]
        bad = [str(p) for p in pages if XSS in p.read_text(errors="replace")]
        return [f"[unescaped HTML from case.json in] {_shown(bad)}"] if bad else []

    return cli(["evaluate", "--bench", bench, "--method", "copy-paste", "-o", out], [bench], out, expect="ok_or_error",
               check=check)


@case("evaluate-option-nosuch")
def _(world):
    bench, out = world.bench(), world.path("ev")
    return cli(["evaluate", "--bench", bench, "--method", "copy-paste", "--option", "copy-paste.nosuch=1",
                "-o", out], [bench], out, "nosuch")


@case("evaluate-method-nosuch")
def _(world):
    bench, out = world.bench(), world.path("ev")
    return cli(["evaluate", "--bench", bench, "--method", "nosuch", "-o", out], [bench], out, "nosuch")


@case("evaluate-output-is-the-bench")
def _(world):
    bench = world.bench()
    return cli(["evaluate", "--bench", bench, "--method", "copy-paste", "-o", bench], [bench], bench, bench)


@case("evaluate-output-inside-the-bench")
def _(world):
    bench = world.bench()
    out = str(Path(bench) / "ev")
    return cli(["evaluate", "--bench", bench, "--method", "copy-paste", "-o", out], [bench], out, out)


@case("evaluate-bench-missing")
def _(world):
    missing, out = world.path("nobench"), world.path("ev")
    return cli(["evaluate", "--bench", missing, "--method", "copy-paste", "-o", out], [], out, missing)


@case("evaluate-model-composer-json-not-json")
def _(world):
    bench, out, model = world.bench(), world.path("ev"), world.model()
    (Path(model) / "composer.json").write_text("{oops")
    return cli(["evaluate", "--bench", bench, "--method", "stm", "--model", model, "-o", out], [bench, model], out,
               model)


# ---- train ------------------------------------------------------------------------------------------------

def train_argv(world, *extra, preset="cpu-tiny", out="run"):
    data, run = world.dataset(), world.path(out)
    argv = ["train", *(["--preset", preset] if preset else []), "--data", data, "-o", run, "--max-steps", "1",
            *extra]
    return argv, [data], run


def _evil_yaml(world) -> str:
    """A config file outside the presets that would load (and fail) if a preset name could lead to it."""
    return world.write("cfg/x.yaml", "frames: 8\nsize: [32, 48]\nmax_steps: 1\nunexpected_field: 1\n")


@case("train-preset-dotdot")
def _(world):
    argv, inputs, run = train_argv(world, preset="../x")
    return cli(argv, inputs, run, "preset")


@case("train-preset-nosuch")
def _(world):
    argv, inputs, run = train_argv(world, preset="nosuch")
    return cli(argv, inputs, run, "nosuch")


@case("train-preset-relative-path-to-a-file")
def _(world):
    from splitmerge.merge.train import CONFIGS

    target = _evil_yaml(world)
    name = os.path.relpath(target[: -len(".yaml")], CONFIGS)
    argv, inputs, run = train_argv(world, preset=name)
    return cli(argv, inputs + [target], run, ("--preset", "preset "))


@case("train-preset-absolute-path")
def _(world):
    target = _evil_yaml(world)
    argv, inputs, run = train_argv(world, preset=target[: -len(".yaml")])
    return cli(argv, inputs + [target], run, ("--preset", "preset "))


@case("train-resume-empty-run-folder")
def _(world):
    argv, inputs, run = train_argv(world, "--resume")
    os.mkdir(run)
    return cli(argv, inputs, run, (run, "resume"))


@case("train-resume-into-the-dataset")
def _(world):
    argv, inputs, _ = train_argv(world, "--resume")
    data = inputs[0]
    argv[argv.index("-o") + 1] = data
    return cli(argv, inputs, data, data)


@case("train-max-steps-0")
def _(world):
    argv, inputs, run = train_argv(world)
    argv[argv.index("--max-steps") + 1] = "0"
    return cli(argv, inputs, run, ("max-steps", "max_steps"))


@case("train-stop-at-0")
def _(world):
    argv, inputs, run = train_argv(world, "--stop-at", "0")
    return cli(argv, inputs, run, ("stop-at", "stop_at"))


@case("train-data-missing")
def _(world):
    argv, inputs, run = train_argv(world)
    missing = world.path("nodata")
    argv[argv.index("--data") + 1] = missing
    return cli(argv, [], run, missing)


@case("train-output-is-a-file")
def _(world):
    argv, inputs, _ = train_argv(world)
    out = world.write("notes.txt", "keep me\n")
    argv[argv.index("-o") + 1] = out
    return cli(argv, inputs + [out], out, out)


def _resume_case(tamper):
    def make(world):
        run = world.run()
        checkpoint = sorted((Path(run) / "checkpoints").iterdir())[-1]
        tamper(checkpoint)
        argv, inputs, _ = train_argv(world, "--resume")
        argv[argv.index("-o") + 1] = run
        return cli(argv, inputs + [run], run, run)
    return make


HOSTILE_CHECKPOINTS = {
    "state-json-not-json": lambda checkpoint: (checkpoint / "state.json").write_text("{oops"),
    "state-json-step-is-text": lambda checkpoint: (checkpoint / "state.json").write_text('{"step": "one"}'),
    "optimizer-json-list": lambda checkpoint: (checkpoint / "optimizer.json").write_text("[1, 2]"),
    "composer-json-not-json": lambda checkpoint: (checkpoint / "composer" / "composer.json").write_text("{oops"),
    "weights-truncated": lambda checkpoint: [path.write_bytes(path.read_bytes()[:500]) for path in
                                             (checkpoint / "composer").rglob("*.safetensors")],
}

for _name, _tamper in HOSTILE_CHECKPOINTS.items():
    case(f"train-resume-checkpoint-{_name}")(_resume_case(_tamper))


TRAIN_CONFIGS = {
    "frames-is-text": "frames: eight\nsize: [32, 48]\n",
    "size-is-a-number": "frames: 8\nsize: 5\n",
    "size-is-text": "frames: 8\nsize: big\n",
    "a-list": "- frames: 8\n- size: [32, 48]\n",
    "a-string": "just some words\n",
    "composer-unknown-key": "frames: 8\nsize: [32, 48]\ncomposer: {nosuch: 1}\n",
    "composer-is-a-list": "frames: 8\nsize: [32, 48]\ncomposer: [1, 2]\n",
    "augment-is-a-number": "frames: 8\nsize: [32, 48]\naugment: 7\n",
    "learning-rate-is-text": "frames: 8\nsize: [32, 48]\nlearning_rate: fast\n",
    "not-yaml": "frames: [8\nsize: {\n",
}

for _name, _text in TRAIN_CONFIGS.items():
    def _train_config(world, text=_text):
        config = world.write("config.yaml", text)
        argv, inputs, run = train_argv(world, "--config", config, preset=None)
        return cli(argv, inputs + [config], run, config)

    case(f"train-config-{_name}")(_train_config)


# ---- app, demo, samples, usage ----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@case("app-host-999-1-1-1")
def _(world):
    work = world.path("appwork")
    return cli(["app", "--host", "999.1.1.1", "--port", free_port(), "--workdir", work], [], work,
               ("999.1.1.1", "host"), subprocess=True, timeout=40)


@case("app-port-0")
def _(world):
    work = world.path("appwork")
    return cli(["app", "--port", "0", "--workdir", work], [], work, "port", subprocess=True, timeout=40)


@case("app-port-70000")
def _(world):
    work = world.path("appwork")
    return cli(["app", "--port", "70000", "--workdir", work], [], work, "port", subprocess=True, timeout=40)


@case("app-workdir-is-a-file")
def _(world):
    work = world.write("notes.txt", "keep me\n")
    return cli(["app", "--port", free_port(), "--workdir", work], [work], work, work, subprocess=True, timeout=40)


@case("app-frames-0")
def _(world):
    work = world.path("appwork")
    return cli(["app", "--port", free_port(), "--workdir", work, "--frames", "0"], [], work, "frames",
               subprocess=True, timeout=40)


@case("app-max-upload-nan")
def _(world):
    work = world.path("appwork")
    return cli(["app", "--port", free_port(), "--workdir", work, "--max-upload-mb", "nan"], [], work,
               ("upload", "max-upload-mb"), subprocess=True, timeout=40)


@case("demo-frames-0")
def _(world):
    out = world.path("demo")
    return cli(["demo", "-o", out, "--frames", "0"], [], out, "frames")


@case("demo-output-is-a-file")
def _(world):
    out = world.write("notes.txt", "keep me\n")
    return cli(["demo", "-o", out, "--frames", "8"], [out], out, out)


@case("demo-model-missing")
def _(world):
    out, model = world.path("demo"), world.path("nomodel")
    return cli(["demo", "-o", out, "--frames", "8", "--model", model], [], out, model)


@case("samples-extra-argument")
def _(world):
    return cli(["samples", "extra"], [], [], "extra")


@case("usage-split-frames-not-a-number")
def _(world):
    video, out = world.clip(), world.path("out")
    return cli(["split", video, "-o", out, "--frames", "eight"], [video], out, "--frames")


@case("usage-compose-placement-bogus")
def _(world):
    argv, inputs, out = compose_argv(world, "--placement", "bogus")
    return cli(argv, inputs, out, "--placement")


# ---- the public API ---------------------------------------------------------------------------------------

def _video() -> sm.Video:
    return sm.Video(pattern_frames(2, 8, 8), 25.0)


@case("api-probe-none")
def _(world):
    return api(lambda: sm.probe(None))


@case("api-probe-int")
def _(world):
    return api(lambda: sm.probe(12345))


@case("api-read-video-size-100000")
def _(world):
    video = world.clip()
    return api(lambda: sm.read_video(video, size=(100000, 100000)), [video], mention="100000")


@case("api-read-video-text-file")
def _(world):
    video = world.bad_video("text")
    return api(lambda: sm.read_video(video), [video], mention=video)


@case("api-read-matte-missing")
def _(world):
    missing = world.path("nosuch.mkv")
    return api(lambda: sm.read_matte(missing), mention=missing)


@case("api-iter-frames-stride-0")
def _(world):
    video = world.clip()
    return api(lambda: list(sm.iter_frames(video, stride=0)), [video], mention="stride")


@case("api-iter-frames-truncated")
def _(world):
    video = world.bad_video("truncated")
    return api(lambda: list(sm.iter_frames(video)), [video], mention=video)


@case("api-video-reader-size-zero")
def _(world):
    video = world.clip()
    return api(lambda: sm.VideoReader(video, size=(0, 0)), [video], mention="size")


@case("api-write-video-bare-array")
def _(world):
    out = world.path("x.mp4")
    return api(lambda: sm.write_video(out, np.zeros((2, 8, 8, 3), np.uint8)), [], out)


@case("api-write-video-unknown-extension")
def _(world):
    out = world.path("x.xyz")
    return api(lambda: sm.write_video(out, _video()), [], out, mention="xyz")


@case("api-write-video-to-a-folder")
def _(world):
    out = world.path("dir.mp4")
    os.mkdir(out)
    return api(lambda: sm.write_video(out, _video()), [out], out, mention=out)


@case("api-write-video-under-a-file")
def _(world):
    blocker = world.write("notes.txt", "keep me\n")
    out = str(Path(blocker) / "x.mp4")
    return api(lambda: sm.write_video(out, _video()), [blocker], out, mention=blocker)


@case("api-write-video-unwritable-proc")
def _(world):
    return api(lambda: sm.write_video("/proc/x/out.mp4", _video()), mention="/proc/x")


@case("api-write-video-path-none")
def _(world):
    return api(lambda: sm.write_video(None, _video()))


@case("api-write-matte-nan")
def _(world):
    out = world.path("a.mkv")
    return api(lambda: sm.write_matte(out, np.full((2, 8, 8), np.nan, np.float32), 25), [], out)


@case("api-video-writer-fps-nan")
def _(world):
    out = world.path("x.mp4")
    return api(lambda: sm.VideoWriter(out, float("nan")), [], out, mention="fps")


@case("api-video-writer-crf-99")
def _(world):
    out = world.path("x.mp4")
    return api(lambda: sm.VideoWriter(out, 25, crf=99), [], out, mention="crf")


@case("api-video-writer-preset-nosuch")
def _(world):
    out = world.path("x.mp4")

    def call():
        with sm.VideoWriter(out, 25, preset="nosuch") as writer:
            writer.write(np.zeros((8, 8, 3), np.uint8))

    return api(call, [], out, mention="nosuch")


@case("api-video-fps-nan")
def _(world):
    return api(lambda: sm.Video(np.zeros((2, 8, 8, 3), np.uint8), float("nan")), mention="fps")


@case("api-split-none")
def _(world):
    return api(lambda: sm.split(None))


@case("api-split-bogus-option")
def _(world):
    video = world.clip()
    return api(lambda: sm.split(video, bogus=1), [video], mention="bogus")


@case("api-split-frames-0")
def _(world):
    video = world.clip()
    return api(lambda: sm.split(video, frames=0), [video], mention="frames")


@case("api-split-to-folder-size-20000")
def _(world):
    video, out = world.clip(), world.path("out")
    return api(lambda: sm.split_to_folder(video, out, size="20000x20000"), [video], out, mention="20000")


@case("api-split-to-folder-holding-the-video")
def _(world):
    layers = world.layers()
    video = str(Path(layers) / "source.mp4")
    return api(lambda: sm.split_to_folder(video, layers, frames=8), [layers], layers, mention=layers)


@case("api-compose-steps-minus-1")
def _(world):
    layers, video = world.layers(), world.clip()
    return api(lambda: sm.compose(fg=layers, background=video, steps=-1), [layers, video], mention="steps")


@case("api-compose-guidance-inf")
def _(world):
    layers, video = world.layers(), world.clip()
    return api(lambda: sm.compose(fg=layers, background=video, guidance=float("inf")), [layers, video],
               mention="guidance")


@case("api-compose-bogus-option")
def _(world):
    layers, video = world.layers(), world.clip()
    return api(lambda: sm.compose(fg=layers, background=video, method="copy-paste", bogus=1), [layers, video],
               mention="bogus")


@case("api-compose-fg-int")
def _(world):
    video = world.clip()
    return api(lambda: sm.compose(fg=123, background=video, method="copy-paste"), [video], mention="fg")


@case("api-compose-background-none")
def _(world):
    layers = world.layers()
    return api(lambda: sm.compose(fg=layers, background=None, method="copy-paste"), [layers],
               mention="background")


@case("api-compose-position-nan")
def _(world):
    layers, video = world.layers(), world.clip()
    return api(lambda: sm.compose(fg=layers, background=video, method="copy-paste", position=(math.nan, 0.5)),
               [layers, video], mention="position")


@case("api-compose-scale-minus-1")
def _(world):
    layers, video = world.layers(), world.clip()
    return api(lambda: sm.compose(fg=layers, background=video, method="copy-paste", scale=-1), [layers, video],
               mention="scale")


@case("api-compose-placement-bogus")
def _(world):
    layers, video = world.layers(), world.clip()
    return api(lambda: sm.compose(fg=layers, background=video, method="copy-paste", placement="bogus"),
               [layers, video], mention="placement")


@case("api-layers-load-none")
def _(world):
    return api(lambda: sm.Layers.load(None))


@case("api-layers-load-a-file")
def _(world):
    video = world.clip()
    return api(lambda: sm.Layers.load(video), [video], mention=video)


def _layers_load_case(hostile: str):
    def setup(world):
        layers = world.layers()
        HOSTILE_LAYERS[hostile](layers)
        return api(lambda: sm.Layers.load(layers), [layers], mention=layers)

    return setup


for _name, _hostile in (("json-list", "layers-json-list"), ("json-binary", "layers-json-binary"),
                        ("claims-100-frames", "layers-json-claims-100-frames"), ("alpha-is-text", "alpha-is-text")):
    case(f"api-layers-load-{_name}")(_layers_load_case(_hostile))


@case("api-layers-save-over-a-file")
def _(world):
    layers = world.layers()
    loaded = sm.Layers.load(layers)
    out = world.write("notes.txt", "keep me\n")
    return api(lambda: loaded.save(out), [layers, out], out, mention=out)


# ------------------------------------------------------------------------------------------------------ test


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input(name, base, tmp_path, capfd, monkeypatch):
    world = World(tmp_path, base)
    spec = CASES[name](world)
    monkeypatch.chdir(tmp_path)  # anything written to a relative path lands where the snapshot sees it
    try:
        if spec.call is not None:
            run_api(spec.call, tmp_path, spec.inputs, spec.outputs, spec.mention)
        else:
            run_cli(spec.argv, tmp_path, spec.inputs, spec.outputs, capfd=capfd, mention=spec.mention,
                    expect=spec.expect, use_subprocess=spec.subprocess, timeout=spec.timeout,
                    max_seconds=spec.max_seconds, check=spec.check)
    finally:
        server = getattr(world, "server", None)
        if server is not None:
            server.__exit__()


def test_there_are_enough_cases():
    assert len(CASES) >= 70
