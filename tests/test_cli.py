"""The `splitmerge` command end to end, through the installed console script where it matters."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import splitmerge as sm
from splitmerge.cli import main
from splitmerge.eval import psnr
from splitmerge.video.transforms import place


def run(*args):
    script = shutil.which("splitmerge") or None
    command = [script, *args] if script else [sys.executable, "-m", "splitmerge.cli", *args]
    return subprocess.run(command, capture_output=True, text=True)


def test_version_and_help():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"splitmerge {sm.__version__}"
    result = run("--help")
    assert result.returncode == 0
    for command in ("probe", "samples", "demo"):
        assert command in result.stdout


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: splitmerge" in capsys.readouterr().out


def test_probe_prints_the_documented_json(clip_path):
    result = run("probe", str(clip_path))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    for key in ("frames", "fps", "fps_rational", "width", "height", "duration", "codec", "rotation"):
        assert key in info
    assert (info["frames"], info["width"], info["height"], info["fps_rational"]) == (24, 96, 64, "25/1")


def test_samples_lists_the_three_real_clips(capsys):
    assert main(["samples"]) == 0
    table = capsys.readouterr().out
    assert "bikes" in table and "640x272" in table and "carphone" in table and "176x144" in table
    assert main(["samples", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["bikes", "bigbuckbunny", "carphone"]
    assert all(r["path"].endswith(".mp4") and "distorted" not in r["path"] for r in rows)


def test_demo_writes_real_outputs(tmp_path, capsys):
    """The demo on 16 frames with the bundled default Composer: the split, the three compositions, their
    evaluation and the pictures."""
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--frames", "16"]) == 0
    printed = capsys.readouterr().out
    for name in ("composite.mp4", "side_by_side.mp4", "preview.png", "evaluation/report.html"):
        assert str(out / name) in printed and (out / name).stat().st_size > 2_000
    report = (out / "evaluation" / "report.html").read_text()
    assert all(method in report for method in ("stm", "harmonized-copy-paste", "copy-paste"))
    layers = sm.Layers.load(out / "layers")
    assert layers.frames.shape == (16, 240, 426, 3)
    assert layers.meta["filters"]["passed"] and 0.01 < layers.fg_ratio < 0.45
    assert layers.meta["backends"]["segmenter"]["name"] == "motion" and "subject" in layers.caption
    # The prompt is what a user would write for the pair as given: no left or right, the street's light.
    prompt = printed.split("prompt: ", 1)[1].splitlines()[0]
    assert "subject" in prompt and not {"left", "right"} & set(prompt.lower().replace(".", " ").split())
    # Copy-paste is the split subject placed over the bikes street where the demo starts it: it differs from the
    # street only where the placed matte is (both are lossy encodes, so "unchanged" means within codec noise).
    street = sm.read_video(sm.sample_path("bikes"), start=137, max_frames=16)
    _, placed = place(layers.foreground, layers.alpha, (272, 640), position=(0.3, 0.62), scale=0.8)
    outside, inside = placed == 0, placed > 0.9
    pasted = sm.read_video(out / "evaluation" / "videos" / "copy-paste" / "rabbit-on-bikes.mp4")
    assert pasted.frames.shape == (16, 272, 640, 3) and inside.mean() > 0.01
    assert psnr(pasted.frames[outside], street.frames[outside]) > 30
    assert psnr(pasted.frames[inside], street.frames[inside]) < 20
    # The Composer's result keeps the street outside the subject it placed (its own matte, in the metrics).
    composed = sm.read_video(out / "composite.mp4")
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert set(metrics["methods"]) == {"stm", "harmonized-copy-paste", "copy-paste"}
    assert metrics["summary"]["stm"]["bg_identity@appearance"]["mean"] > 95
    assert composed.frames.shape == (16, 272, 640, 3) and psnr(composed.frames, street.frames) > 18
    side = sm.read_video(out / "side_by_side.mp4")
    assert side.frames.shape[0] == 16 and side.frames.shape[2] >= 3 * 640
    preview = (out / "preview.png").read_bytes()
    assert preview[:8] == b"\x89PNG\r\n\x1a\n" and len(preview) > 50_000
    assert json.loads((out / "samples.json").read_text())[0]["name"] == "bikes"


def test_demo_rejects_bad_options(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "d"), "--frames", "1"]) == 2
    assert "frames 1" in capsys.readouterr().err
