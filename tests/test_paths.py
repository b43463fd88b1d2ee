"""The three guards every command shares: paths read from files stay inside their folder (`paths.inside`,
`paths.safe_name`), outputs never land on their inputs (`paths.check_output`), and sizes and memory are checked
before decoding (`video.budget`); and the sweep of what killed processes left (`atomic.sweep_stale`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

import splitmerge as sm
from splitmerge import atomic
from splitmerge.paths import check_output, inside, safe_name
from splitmerge.video import budget


@pytest.mark.parametrize("relative", ["../outside", "a/../../outside", "/etc/passwd", "", "a\x00b", None, 3])
def test_inside_refuses_paths_that_leave_the_folder(tmp_path, relative):
    with pytest.raises(sm.UnsafePathError) as raised:
        inside(tmp_path, relative, "manifest.parquet row 0: clip")
    assert "manifest.parquet row 0: clip" in str(raised.value) and "\n" not in str(raised.value)


def test_inside_follows_symlinks(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "root" / "clips").mkdir()
    assert inside(tmp_path / "root", "clips/a", "clip") == tmp_path / "root" / "clips" / "a"
    with pytest.raises(sm.UnsafePathError, match="leads outside"):
        inside(tmp_path / "root", "link/a", "clip")


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden", "", "x" * 300, "<img src=x>", None, "a\\b"])
def test_safe_name_refuses_anything_but_one_plain_component(name):
    with pytest.raises(sm.UnsafePathError):
        safe_name(name, "bench.json: case id")


def test_safe_name_keeps_ids_the_project_makes():
    for name in ("synthetic-000", "self-0a1b2c3d", "bikes.s2.c01", "clip_7+x=1"):
        assert safe_name(name, "id") == name


def test_check_output_refuses_collisions_with_inputs(tmp_path):
    video, layers = tmp_path / "a.mp4", tmp_path / "layers"
    video.write_bytes(b"x")
    layers.mkdir()
    cases = [
        (dict(output=video, inputs=[video]), "is also an input"),
        (dict(output=layers / "out.mp4", inputs=[layers]), "inside the input folder"),
        (dict(output=layers, inputs=[layers], kind="folder"), "is also an input"),
        (dict(output=tmp_path, inputs=[video], kind="folder"), "holds the input"),
        (dict(output=layers, inputs=[], kind="file"), "is a folder"),
        (dict(output=video, inputs=[], kind="folder"), "is a file"),
        (dict(output=tmp_path / "out.xyz", inputs=[], suffixes=(".mp4",)), "unknown extension"),
        (dict(output=video / "out.mp4", inputs=[]), "is a file, not a folder"),
    ]
    for arguments, words in cases:
        with pytest.raises(sm.OptionError, match=words):
            check_output(**arguments)
    assert check_output(tmp_path / "new" / "out.mp4", [video, layers]) == tmp_path / "new" / "out.mp4"


def test_a_size_above_the_pixel_limit_is_refused_before_anything_is_allocated(monkeypatch):
    with pytest.raises(sm.BudgetError, match="SPLITMERGE_MAX_PIXELS"):
        sm.video.parse_size("20000x20000")
    with pytest.raises(sm.SplitMergeError):
        sm.video.parse_size((100000, 100000))
    monkeypatch.setenv("SPLITMERGE_MAX_PIXELS", "1000")
    with pytest.raises(sm.BudgetError):
        sm.video.parse_size("40x40")
    monkeypatch.setenv("SPLITMERGE_MAX_PIXELS", "lots")
    with pytest.raises(sm.OptionError, match="SPLITMERGE_MAX_PIXELS"):
        sm.video.parse_size("40x40")


def test_reading_more_than_the_memory_limit_is_refused(clip_path, monkeypatch):
    monkeypatch.setenv("SPLITMERGE_MAX_MEMORY_GB", str(1e-6))  # about 1 kB
    with pytest.raises(sm.BudgetError, match="SPLITMERGE_MAX_MEMORY_GB"):
        sm.read_video(clip_path)
    monkeypatch.delenv("SPLITMERGE_MAX_MEMORY_GB")
    assert budget.max_memory() > 0 and len(sm.read_video(clip_path).frames) > 0


def test_build_refuses_a_huge_size_at_once(tmp_path):
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "splitmerge.cli", "build", "--synthetic", "1", "--size",
                           "20000x20000", "-o", str(tmp_path / "d")], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "20000x20000" in done.stderr
    assert not (tmp_path / "d").exists()
    assert seconds < 10  # the interpreter's start and imports; the refusal itself is parse_size


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_sweep_removes_what_dead_processes_left_and_keeps_live_work(tmp_path):
    host, dead = atomic._HOST, _dead_pid()
    stale = tmp_path / f".clip.{host}-{dead}-0123abcd.partial.mp4"
    live = tmp_path / f".clip.{host}-{os.getpid()}-0123abcd.partial.mp4"
    other_host = tmp_path / f".clip.ffffff-{dead}-0123abcd.partial.mp4"
    for path in (stale, live, other_host):
        path.write_bytes(b"x")
    stale_folder = tmp_path / f".layers.{host}-{dead}-0123abcd.partial"
    stale_folder.mkdir()
    retired = tmp_path / f".kept.{host}-{dead}-0123abcd.old.partial"  # killed between atomic_dir's renames
    retired.mkdir()
    (retired / "layers.json").write_text("{}")
    with atomic.atomic_file(tmp_path / "new.json") as temporary:  # the first write in a folder sweeps it
        temporary.write_text("{}")
    assert not stale.exists() and not stale_folder.exists()
    assert live.exists() and other_host.exists()
    assert (tmp_path / "kept" / "layers.json").is_file() and not retired.exists()


def test_a_full_disk_during_split_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capfd):
    """The system's refusal mid-write (ENOSPC after a few frames) is an exit-2 line naming the file; the Layers
    folder's temporary sibling is removed."""
    import errno

    from splitmerge.cli import main
    from splitmerge.video.layers import LayersWriter

    video = tmp_path / "in.mp4"
    sm.write_video(video, sm.Video(np.random.default_rng(0).integers(0, 255, (12, 64, 96, 3), np.uint8), 25.0))
    original, written = LayersWriter.write, []

    def write_until_full(self, *frames, **effects):
        if len(written) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.target / "source.mp4"))
        written.append(1)
        return original(self, *frames, **effects)

    monkeypatch.setattr(LayersWriter, "write", write_until_full)
    before = sorted(tmp_path.iterdir())
    code = main(["split", str(video), "-o", str(tmp_path / "layers"), "--caption", "x"])
    error = capfd.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1 and "No space left on device" in error[0], error
    assert sorted(tmp_path.iterdir()) == before
