"""`splitmerge build` and `splitmerge dataset`: sources, clip planning, the build, SIGKILL and resume, engines,
transient and input failures, the exit status, identical pixels."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

import splitmerge as sm
from splitmerge.cli import main
from splitmerge.data import build, engines, read_manifest
from splitmerge.data.chunks import find_shots, plan_clips
from splitmerge.data.inspect import verify
from splitmerge.data.sources import SourceVideo, collect_sources
from splitmerge.errors import MediaError, MissingFileError, OptionError
from splitmerge.video.io import read_matte

SMALL = {"frames": 13, "size": (96, 144), "max_clips": 2}
build_module = sys.modules["splitmerge.data.build"]  # the module (`splitmerge.data.build` names the function)


def dataset_fingerprint(folder: Path) -> tuple[set, dict]:
    """What makes two datasets "the same" (DESIGN.md): the (id, status, reason) set and every ok clip's decoded
    pixels (the raw alpha and the three RGB videos)."""
    rows = read_manifest(folder)
    keys = {(row["id"], row["status"], row["reason"]) for row in rows}
    pixels = {}
    for row in (row for row in rows if row["status"] == "ok"):
        layers = sm.Layers.load(folder / row["clip"])
        pixels[row["id"]] = {"alpha": read_matte(folder / row["clip"] / "alpha.mkv", raw=True),
                             "frames": layers.frames, "foreground": layers.foreground,
                             "background": layers.background}
    return keys, pixels


def assert_same_dataset(first: Path, second: Path) -> None:
    """Same rows and statuses, and bit-identical decoded pixels (the matte is lossless, the encoder repeatable:
    `video.io.REPEATABLE_X264`)."""
    keys_a, pixels_a = dataset_fingerprint(first)
    keys_b, pixels_b = dataset_fingerprint(second)
    assert keys_a == keys_b
    assert pixels_a.keys() == pixels_b.keys()
    for key, layers in pixels_a.items():
        for name, values in layers.items():
            assert np.array_equal(values, pixels_b[key][name]), (key, name)


@pytest.fixture(scope="module")
def broken_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("broken") / "broken.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 30_000, dtype=np.uint8).tobytes())
    return path


def test_sources_from_files_folders_globs_and_lists(tmp_path):
    folder = tmp_path / "videos" / "nested"
    folder.mkdir(parents=True)
    for name in ("b.mp4", "a.MOV", "notes.txt", ".hidden.mp4"):
        (folder / name).write_bytes(b"x")
    (tmp_path / "c.mkv").write_bytes(b"x")
    found = [Path(s.path).name for s in collect_sources([tmp_path / "videos"])]
    assert found == ["a.MOV", "b.mp4"]
    assert [Path(s.path).name for s in collect_sources([str(tmp_path / "**" / "*.mp4")])] == ["b.mp4"]
    listing = tmp_path / "list.csv"
    listing.write_text("path,caption,license\nc.mkv, a red  car ,CC-BY\nvideos/nested/b.mp4,,\n")
    rows = collect_sources([listing, tmp_path / "c.mkv"])  # c.mkv named twice: kept once, first entry wins
    assert [(Path(r.path).name, r.caption, r.license) for r in rows] == [("c.mkv", "a red car", "CC-BY"),
                                                                         ("b.mp4", None, None)]
    jsonl = tmp_path / "list.jsonl"
    jsonl.write_text(json.dumps({"path": str(tmp_path / "c.mkv"), "url": "https://example.org/c"}) + "\n\n")
    assert collect_sources([jsonl]) == [SourceVideo(str(tmp_path / "c.mkv"), url="https://example.org/c")]
    with pytest.raises(MissingFileError, match="no such file"):
        collect_sources([tmp_path / "missing.mp4"])
    with pytest.raises(MissingFileError, match="matches no video"):
        collect_sources([str(tmp_path / "*.webm")])
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(OptionError, match="line 1 is not JSON"):
        collect_sources([tmp_path / "bad.jsonl"])
    (tmp_path / "bad.csv").write_text("file,caption\nx.mp4,y\n")
    with pytest.raises(OptionError, match="no 'path' column"):
        collect_sources([tmp_path / "bad.csv"])


def test_clips_never_cross_scene_cuts_and_are_chosen_reproducibly():
    bikes = SourceVideo(str(sm.sample_path("bikes")))
    shots, count = find_shots(bikes.path)
    assert count == 250 and [a for a, _ in shots] == [0, 30, 76, 137, 187, 242]
    for stride in (1, 2, 3):
        clips = plan_clips(bikes, 25, (96, 144), (stride,), max_clips=50, seed=0)
        span = 24 * stride + 1
        for clip in clips:
            assert any(a <= clip.start and clip.start + span <= b for a, b in shots), (stride, clip.start)
            assert clip.stride == stride and clip.frames == 25
        assert len({c.id for c in clips}) == len(clips)
    chosen = plan_clips(bikes, 25, (96, 144), (1, 2, 3, 4), max_clips=3, seed=5)
    assert len(chosen) == 3 and chosen == plan_clips(bikes, 25, (96, 144), (1, 2, 3, 4), max_clips=3, seed=5)
    assert [c.start for c in chosen] == sorted(c.start for c in chosen)
    others = {tuple((c.start, c.stride) for c in plan_clips(bikes, 25, (96, 144), (1, 2, 3, 4), 3, seed))
              for seed in range(6)}
    assert len(others) > 1  # the seed matters


def test_build_records_every_candidate_and_one_broken_video_fails_only_its_rows(tmp_path, broken_video):
    out = tmp_path / "dataset"
    summary = build([sm.sample_path("carphone"), broken_video], out, synthetic=2, **SMALL)
    rows = read_manifest(out)
    assert summary["rows"] == len(rows) == 5 and summary["failed"] == 1
    failed = [row for row in rows if row["status"] == "failed"]
    assert failed[0]["source_path"] == str(broken_video) and "not a readable video" in failed[0]["reason"]
    ok = [row for row in rows if row["status"] == "ok"]
    assert {row["kind"] for row in ok} == {"video", "synthetic"} and len(ok) >= 3
    for row in rows:
        if row["status"] == "skipped":  # the paper's filters, with the reason; no clip folder is kept
            assert row["reason"] and row["clip"] == "" and not (out / "clips" / row["id"]).exists()
    for row in ok:
        layers = sm.Layers.load(out / row["clip"])
        assert layers.frames.shape == (13, 96, 144, 3) and row["num_frames"] == 13 and row["caption"]
        assert 0.01 <= row["fg_ratio"] <= 0.45 and json.loads(row["backends"])
    carphone = [row for row in ok if row["kind"] == "video"]
    assert all(row["source_sha1"] and row["split"] in ("train", "val", "test") for row in carphone)
    assert len({row["split"] for row in carphone}) == 1  # one source, one split
    assert verify(out) == []
    assert f"{len(ok)} clips" in (out / "README.md").read_text()
    # Building again does nothing new.
    again = build([sm.sample_path("carphone"), broken_video], out, synthetic=2, **SMALL)
    assert again["made_this_run"] == 0 and again["already_done"] == 4
    # Other settings into the same folder are refused; so is a folder that is not a dataset.
    with pytest.raises(OptionError, match="other settings"):
        build([sm.sample_path("carphone")], out, synthetic=2, **{**SMALL, "frames": 17})
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(OptionError, match="not a dataset"):
        build([sm.sample_path("carphone")], tmp_path / "mine", **SMALL)


def test_verify_finds_orphans_and_damaged_clips(tmp_path):
    out = tmp_path / "dataset"
    build([], out, synthetic=2, **SMALL)
    assert verify(out) == []
    (out / "clips" / "deadbeef0000").mkdir()
    row = next(row for row in read_manifest(out) if row["status"] == "ok")
    (out / row["clip"] / "alpha.mkv").write_bytes(b"garbage")
    problems = verify(out)
    assert any("deadbeef0000" in p and "orphan" in p for p in problems)
    assert any(row["id"] in p and "alpha.mkv" in p for p in problems)
    assert main(["dataset", "verify", str(out)]) == 2


def _build_command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "splitmerge.cli", "build", str(sm.sample_path("carphone")), "-o", str(out),
            "--frames", "13", "--size", "96x144", "--max-clips", "3", "--synthetic", "5", *extra]


def _row_count(dataset: Path) -> int:
    """Rows written (not temporary files)."""
    rows = dataset / "rows"
    return len([path for path in rows.glob("*.json") if not path.name.startswith(".")]) if rows.exists() else 0


def _session_processes(session: int) -> set[int]:
    """Live (not zombie) processes of a session: a build started in its own session and all it started."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # ended meanwhile
            continue
        if int(fields[3]) == session and fields[0] not in "ZX":
            found.add(int(stat.parent.name))
    return found


KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from splitmerge.atomic import atomic_dir, atomic_file
target = Path(sys.argv[1])
with (atomic_file(target) if target.suffix else atomic_dir(target)) as temporary:
    (temporary / "alpha.mkv" if temporary.is_dir() else temporary).write_bytes(b"half")
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc (Linux)")
def test_sigkill_of_the_driver_stops_its_workers_and_resume_gives_the_uninterrupted_dataset(tmp_path):
    reference = tmp_path / "reference"
    assert subprocess.run(_build_command(reference), capture_output=True).returncode == 0
    resumed = tmp_path / "resumed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for delay in (0.0, 0.7):  # kill just as the first clip lands, then again mid-way
        process = subprocess.Popen(_build_command(resumed, "--workers", "2"), env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        before = _row_count(resumed)
        while time.monotonic() < deadline and process.poll() is None:
            if _row_count(resumed) > before:
                break
            time.sleep(0.02)
        time.sleep(delay)
        assert len(_session_processes(process.pid) - {process.pid}) >= 2, "the build should run worker processes"
        os.kill(process.pid, signal.SIGKILL)  # the driver alone, as an OOM killer or `kill -9 <pid>` would
        process.wait()
        deadline = time.monotonic() + 5
        while _session_processes(process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _session_processes(process.pid) == set(), "workers outlived their killed driver"
    partial = _row_count(resumed)
    assert 0 < partial < 8, "the kills should land mid-build"
    # What killed writers left anywhere in the folder (whatever the moments of the kills) goes on resume.
    clips = [path for path in (resumed / "clips").iterdir() if not path.name.startswith(".")]
    targets = [resumed / "clips" / "deadbeef0000", resumed / "rows" / "deadbeef0000.json",
               resumed / "manifest.parquet", *[clip / "preview.mp4" for clip in clips[:1]]]
    for target in targets:
        killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], capture_output=True)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
    (resumed / "rows" / ".deadbeef0001.1a2b3c4d.partial.json").write_text("{")  # an older version's name
    assert len([path for path in resumed.rglob("*") if ".partial" in path.name]) >= len(targets) + 1
    finish = subprocess.run(_build_command(resumed, "--json"), capture_output=True, text=True, env=env)
    assert finish.returncode == 0, finish.stderr
    summary = json.loads(finish.stdout)
    assert summary["already_done"] == partial and summary["made_this_run"] == 8 - partial
    assert_same_dataset(reference, resumed)
    assert verify(resumed) == []
    leftovers = [p for p in resumed.rglob("*") if ".partial" in p.name]
    assert leftovers == []


def _fail_some_scenes(real_write_scene):
    """`write_scene` failing scene 1 on a full disk, 2 out of memory, 3 on its input (a SplitMergeError)."""
    failures = {1: OSError(errno.ENOSPC, "No space left on device"), 2: MemoryError(),
                3: MediaError("scene 3: corrupt")}

    def write_scene(seed, *args, **kwargs):
        if seed in failures:
            raise failures[seed]
        return real_write_scene(seed, *args, **kwargs)

    return write_scene


def _worker_dies_on_scene_4(real_run):
    """`engines.run` whose worker dies holding scene 4 (a `WorkerDied` result, as `LocalPool` gives)."""
    def run(function, items, **options):
        dies = [item for item in items if "task" in item and item["task"]["seed"] == 4]
        yield from real_run(function, [item for item in items if item not in dies], **options)
        for item in dies:
            yield item, engines.WorkerDied("a worker process died running it")

    return run


def _unreadable_disk(path):
    raise OSError(errno.EIO, "I/O")


def test_transient_failures_are_retried_and_input_failures_are_not(tmp_path, monkeypatch):
    from splitmerge.data import synthetic

    out = tmp_path / "dataset"
    carphone = [sm.sample_path("carphone")]
    options = {**SMALL, "max_clips": 1, "synthetic": 5}
    monkeypatch.setattr(synthetic, "write_scene", _fail_some_scenes(synthetic.write_scene))
    monkeypatch.setattr(engines, "run", _worker_dies_on_scene_4(engines.run))
    monkeypatch.setattr(build_module, "file_sha1", _unreadable_disk)
    first = build(carphone, out, **options)
    rows = {row["seed"] if row["kind"] == "synthetic" else "source": row for row in read_manifest(out)}
    assert first["ok"] == 1 and first["failed"] == 5 and first["transient"] == 4
    assert rows["source"]["reason"] == "transient: OSError: [Errno 5] I/O"
    assert rows[1]["reason"] == "transient: OSError: [Errno 28] No space left on device"
    assert rows[2]["reason"] == "transient: MemoryError"
    assert rows[3]["reason"] == "scene 3: corrupt"  # the input's fault: recorded, not retried
    assert rows[4]["reason"] == "transient: WorkerDied: a worker process died running it"
    assert all(row["clip"] == "" and not (out / "clips" / row["id"]).exists() for row in rows.values()
               if row["status"] == "failed")
    monkeypatch.undo()
    again = build(carphone, out, **options)
    assert again["made_this_run"] == 4 and again["already_done"] == 2  # scenes 1, 2, 4 and the video's clip
    assert again["transient"] == 0 and again["failed"] == 1 and again["ok"] + again["skipped"] == 5
    final = read_manifest(out)
    assert [row["reason"] for row in final if row["status"] == "failed"] == ["scene 3: corrupt"]
    assert not any("unreadable" in row["reason"] for row in final) and verify(out) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file locks")
def test_a_second_build_into_the_same_folder_at_once_is_refused(tmp_path):
    import fcntl

    out = tmp_path / "dataset"
    build([], out, synthetic=1, **SMALL)
    handle = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)  # as a running build holds it
        with pytest.raises(OptionError, match="another build is writing into it"):
            build([], out, synthetic=1, **SMALL)
    finally:
        os.close(handle)
    assert build([], out, synthetic=1, **SMALL)["already_done"] == 1


def _die_on(item: str) -> str:
    """Pool worker function: the item "die" kills its worker (after the others are done), the rest echo."""
    if item == "die":
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)
    return item.upper()


def test_a_worker_that_dies_fails_only_the_item_it_held():
    results = dict(engines.run(_die_on, ["a", "die", "b", "c"], workers=2))
    assert {key: results[key] for key in "abc"} == {"a": "A", "b": "B", "c": "C"}
    assert isinstance(results["die"], engines.WorkerDied) and isinstance(results["die"], OSError)


def test_a_build_that_makes_no_clip_exits_2_after_writing_the_manifest(tmp_path, capsys, broken_video):
    out = tmp_path / "dataset"
    assert main(["build", str(broken_video), "-o", str(out), "--frames", "13", "--size", "96x144"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no clip made: 1 of 1 candidates failed" in error
    assert str(broken_video) in error and "not a readable video" in error
    (row,) = read_manifest(out)
    assert row["status"] == "failed" and (out / "README.md").exists()


ENCODE = """
import os, sys
import splitmerge as sm
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))} if sys.argv[2] == "one-cpu" else os.sched_getaffinity(0))
frames = sm.read_video(sm.sample_path("bikes"), size=(240, 360), max_frames=13).frames
sm.write_video(sys.argv[1] + "/writer.mp4", sm.Video(frames, 25))
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_the_same_frames_encode_to_the_same_pixels_whatever_the_memory_and_cpus(tmp_path):
    """Two clean builds decode to identical pixels only if an encode depends on nothing but its frames. Heap
    garbage (glibc's MALLOC_PERTURB_ fills it) and the CPU count change x264's output at VideoWriter's settings
    (measured: docs/robustness.md, "Builds"); `video.io.REPEATABLE_X264` makes it repeatable."""
    outputs = []
    for perturb, cpus in (("90", "one-cpu"), ("165", "all-cpus")):
        folder = tmp_path / cpus
        folder.mkdir()
        env = {**os.environ, "MALLOC_PERTURB_": perturb}
        done = subprocess.run([sys.executable, "-c", ENCODE, str(folder), cpus], env=env, capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
        outputs.append({"writer": sm.read_video(folder / "writer.mp4").frames})
    assert np.array_equal(outputs[0]["writer"], outputs[1]["writer"])


def test_engines_build_the_same_dataset(tmp_path):
    sources = [str(sm.sample_path("carphone"))]
    build(sources, tmp_path / "one", synthetic=2, workers=1, **SMALL)
    build(sources, tmp_path / "two", synthetic=2, workers=2, **SMALL)
    assert_same_dataset(tmp_path / "one", tmp_path / "two")


def test_ray_engine_builds_the_same_dataset(tmp_path):
    pytest.importorskip("ray")
    sources = [str(sm.sample_path("carphone"))]
    local = build(sources, tmp_path / "local", synthetic=2, **SMALL)
    summary = build(sources, tmp_path / "ray", synthetic=2, engine="ray", workers=2, **SMALL)
    assert summary["ok"] == local["ok"] >= 3 and summary["rows"] == local["rows"] == 4
    assert_same_dataset(tmp_path / "local", tmp_path / "ray")


def test_dataset_stats_preview_and_exports(tmp_path, capsys):
    out = tmp_path / "dataset"
    build([sm.sample_path("carphone")], out, synthetic=2, **SMALL)
    assert main(["dataset", "stats", str(out)]) == 0
    stats = json.loads(capsys.readouterr().out)
    ok_count = stats["status"]["ok"]
    assert ok_count >= 3 and sum(stats["status"].values()) == 4 and stats["subject_speed"]["mean"] > 0
    for picture in stats["pictures"].values():
        assert Path(picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["dataset", "preview", str(out)]) == 0
    page = (out / "preview.html").read_text()
    ok = [row for row in read_manifest(out) if row["status"] == "ok"]
    assert page.count("<video") == ok_count and all(f"clips/{row['id']}/preview.mp4" in page for row in ok)
    assert main(["dataset", "export", str(out), "--format", "webdataset", "--split", "all", "--per-shard", "2",
                 "-o", str(tmp_path / "wds")]) == 0
    shards = sorted((tmp_path / "wds").glob("shard-*.tar"))
    assert len(shards) == (ok_count + 1) // 2
    with tarfile.open(shards[0]) as archive:
        names = archive.getnames()
    assert len(names) == 2 * 7 and f"{ok[0]['id']}.alpha.mkv" in names and f"{ok[0]['id']}.txt" in names
    assert f"{ok[0]['id']}.effects.mkv" in names  # the synthetic scenes' shadows
    assert main(["dataset", "export", str(out), "--format", "cogvideox-lists", "--split", "all",
                 "-o", str(tmp_path / "lists")]) == 0
    prompts = (tmp_path / "lists" / "prompts.txt").read_text().splitlines()
    videos = (tmp_path / "lists" / "videos.txt").read_text().splitlines()
    assert len(prompts) == len(videos) == ok_count and (tmp_path / "lists" / videos[0]).is_file()
    capsys.readouterr()
    assert main(["dataset", "export", str(out), "--split", "test", "-o", str(tmp_path / "none")]) == 2
    assert "no ok clips in split 'test'" in capsys.readouterr().err


def test_a_source_too_short_for_one_clip_gets_a_skipped_row_with_the_reason(tmp_path, capsys):
    short = sm.write_video(tmp_path / "short.mp4", sm.read_video(sm.sample_path("carphone"), max_frames=10))
    summary = build([short], tmp_path / "dataset", **SMALL)
    (row,) = read_manifest(tmp_path / "dataset")
    assert summary["skipped"] == 1 and row["status"] == "skipped" and row["source_path"] == str(short)
    assert row["reason"].startswith("no scene-cut-free shot of 13 frames") and row["source_sha1"]
    # Nothing ok but nothing failed: not an error, but said (a build of only skipped clips is likely a mistake).
    assert "no clip passed the filters: all 1 candidates were skipped" in summary["warning"]
    assert capsys.readouterr().err.startswith("splitmerge: warning: ")
