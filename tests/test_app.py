"""`splitmerge app`: its jobs (checks, one job per session, cancel) and the page end to end in headless Chromium
(Playwright driving Debian's /usr/bin/chromium): upload two sample clips, split, place, compose, play the result."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from splitmerge.app.jobs import AppLimits, JobRunner, Workspace, check_video
from splitmerge.errors import OptionError
from splitmerge.samples import sample_path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def slow_job(seconds: float, progress) -> dict:
    """A job for the runner: reports progress, sleeps, answers."""
    progress(0.5, "sleeping")
    time.sleep(seconds)
    return {"slept": seconds}


def failing_job(progress) -> dict:
    raise OptionError("the input is wrong")


def test_uploads_are_checked_with_one_line_errors(tmp_path):
    limits = AppLimits(max_seconds=5.0)
    assert check_video(sample_path("carphone"), AppLimits(), "background")["width"] == 176
    with pytest.raises(OptionError, match=r"foreground video is 1\d\.\d s long; the limit is 5 s"):
        check_video(sample_path("bikes"), limits, "foreground")
    text = tmp_path / "clip.mp4"
    text.write_text("not a video")
    with pytest.raises(OptionError, match="background video clip.mp4"):
        check_video(text, limits, "background")
    with pytest.raises(OptionError, match="the limit is 0.001 MB"):
        check_video(sample_path("carphone"), AppLimits(max_upload_mb=0.001), "foreground")
    with pytest.raises(OptionError, match="no video given"):
        check_video(tmp_path / "missing.mp4", limits, "foreground")


def test_one_job_per_session_and_cancel_stops_it():
    runner = JobRunner()
    events = runner.run("a", slow_job, {"seconds": 0.2})
    assert next(events) == ("progress", 0.5, "sleeping") and runner.busy("a")
    with pytest.raises(OptionError, match="already running"):
        next(runner.run("a", slow_job, {"seconds": 0.1}))
    assert list(runner.run("b", slow_job, {"seconds": 0.0}))[-1] == ("done", {"slept": 0.0}, None)  # others may
    assert list(events)[-1] == ("done", {"slept": 0.2}, None) and not runner.busy("a")
    long = runner.run("a", slow_job, {"seconds": 60})
    next(long)
    started = time.perf_counter()
    assert runner.cancel("a") and list(long)[-1] == ("cancelled", None, None)
    assert time.perf_counter() - started < 10 and not runner.cancel("a")
    assert list(runner.run("a", failing_job, {}))[-1] == ("error", "the input is wrong", None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _outside_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback (from a UDP socket's route; no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.123", 9))
            address = probe.getsockname()[0]
        except OSError:
            return []
    return [] if address.startswith("127.") else [address]


@pytest.fixture
def server(tmp_path):
    """The app in its own process on a free loopback port, with a working folder in tmp_path."""
    port, workdir = _free_port(), tmp_path / "work"
    home, cwd = tmp_path / "home", tmp_path / "cwd"  # to see that nothing is written there
    home.mkdir()
    cwd.mkdir()
    log = (tmp_path / "server.log").open("w")
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HOME": str(home)}
    environment.pop("MPLCONFIGDIR", None)
    environment.pop("XDG_CACHE_HOME", None)
    process = subprocess.Popen([sys.executable, "-m", "splitmerge.cli", "app", "--port", str(port), "--workdir",
                                str(workdir), "--frames", "16", "--steps", "4", "--max-seconds", "20"],
                               stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=cwd)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            time.sleep(0.5)
    yield url, workdir, process
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)
    log.close()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (make test installs Debian's chromium)")
def test_the_page_splits_composes_and_plays_the_result(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, workdir, process = server
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    for address in _outside_addresses():  # it listens on loopback only
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=2).close()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        # A file that is not a video: a clear message, nothing split.
        first = browser.new_page()
        first.goto(url)
        bad = tmp_path / "notes.mp4"
        bad.write_text("not a video")
        first.locator("#fg-video input[type=file]").set_input_files(str(bad))
        first.click("#split-button")
        first.get_by_text("foreground video notes.mp4").first.wait_for(timeout=60_000)
        first.close()

        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(url)
        page.locator("#fg-video input[type=file]").set_input_files(str(sample_path("bigbuckbunny")))
        page.wait_for_selector("#fg-video video", timeout=60_000)
        page.wait_for_selector("#fg-frame img", timeout=60_000)  # its first frame, to click on the subject
        page.click("#split-button")
        page.wait_for_selector("#matte-video video", timeout=180_000)
        assert "split: done" in page.inner_text("#status")
        assert "moves" in page.input_value("#caption textarea")
        page.locator("#bg-video input[type=file]").set_input_files(str(sample_path("carphone")))
        page.wait_for_selector("#bg-frame img", timeout=60_000)
        box = page.locator("#bg-frame img").bounding_box()
        page.mouse.click(box["x"] + 0.35 * box["width"], box["y"] + 0.6 * box["height"])  # place the subject
        page.wait_for_timeout(1000)
        page.click("#compose-button")
        page.wait_for_selector("#result-video video", timeout=300_000)
        assert "16 frames with stm" in page.inner_text("#status")
        state = page.evaluate("""async () => {
            const video = document.querySelector('#result-video video');
            video.muted = true;
            await video.play();
            await new Promise(resolve => setTimeout(resolve, 400));
            return {ready: video.readyState, time: video.currentTime, width: video.videoWidth,
                    height: video.videoHeight, error: video.error && video.error.code};
        }""")
        assert state["error"] is None and state["ready"] >= 2 and state["time"] > 0  # it decodes and plays
        assert (state["width"], state["height"]) == (176, 144)  # the background's size
        downloads = page.inner_text("#downloads").replace("\n", "")
        assert "result.mp4" in downloads and "result_layers.zip" in downloads
        links = [page.locator("#downloads a").nth(i).get_attribute("href")
                 for i in range(page.locator("#downloads a").count())]
        fetched = [page.request.get(link if link.startswith("http") else url.rstrip("/") + link) for link in links]
        assert fetched and all(answer.ok for answer in fetched)
        assert any(answer.body()[4:8] == b"ftyp" for answer in fetched)  # the mp4 itself
        assert any(answer.body()[:2] == b"PK" for answer in fetched)     # the zip of the result's layers
        assert "subject kept" in page.inner_text("#metrics")
        page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        # A long step can be cancelled: its worker process is stopped.
        page.click("#compose-button")
        page.get_by_text("compose: composing with stm").wait_for(timeout=60_000)
        page.click("#cancel-button")
        page.get_by_text("compose: cancelled").wait_for(timeout=30_000)
        # What it wrote is inside its working folder: the uploads and the session's outputs.
        assert any((workdir / "uploads").rglob("*.mp4")) and any((workdir / "sessions").rglob("result.mp4"))
        browser.close()
    deadline = time.time() + 20  # the closed tab ends the session: its files go
    while any((workdir / "sessions").rglob("result.mp4")) and time.time() < deadline:
        time.sleep(0.5)
    assert not any((workdir / "sessions").rglob("result.mp4"))
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)
    assert not (workdir / "sessions").exists() and not (workdir / "uploads").exists()  # cleaned at exit
    written = [path for folder in (tmp_path / "home", tmp_path / "cwd") for path in folder.rglob("*")]
    assert not written, f"written outside the working folder: {written[:5]}"


def test_a_session_writes_only_inside_the_working_folder(tmp_path):
    workspace = Workspace(tmp_path / "work")
    folder = workspace.job_folder("../../etc/evil", "split")  # a session id cannot climb out
    assert folder.is_dir() and (tmp_path / "work" / "sessions") in folder.parents
    workspace.forget("../../etc/evil")
    assert not folder.exists() and (tmp_path / "work" / "sessions").is_dir()
    workspace.close()
    assert not any((tmp_path / "work").iterdir())


def test_split_and_compose_jobs_write_what_the_page_shows(tmp_path):
    import zipfile

    import splitmerge as sm
    from splitmerge.app.jobs import compose_job, split_job

    limits, steps = AppLimits(frames=12, steps=2), []
    split = split_job(str(sample_path("bigbuckbunny")), str(tmp_path / "split"), limits,
                      lambda fraction, text: steps.append(fraction))
    assert steps[-1] == 1.0 and steps == sorted(steps) and "moves" in split["caption"]
    overlay = sm.read_video(split["overlay"])
    assert overlay.frames.shape == (12, 240, 426, 3)
    alpha = sm.Layers.load(split["layers"]).alpha  # a click on the subject's first frame picks that subject
    first = next(t for t in range(len(alpha)) if (alpha[t] > 0.5).any())
    ys, xs = np.nonzero(alpha[first] > 0.5)
    point = (float(np.median(xs)) / alpha.shape[2], float(np.median(ys)) / alpha.shape[1])
    picked = split_job(str(sample_path("bigbuckbunny")), str(tmp_path / "picked"), limits, lambda *_: None,
                       point=point)
    chosen = sm.Layers.load(picked["layers"])
    assert chosen.meta["backends"]["segmenter"]["pick"] == {"point": list(point)}
    assert ((chosen.alpha > 0.5) & (alpha > 0.5)).sum() >= 0.5 * (alpha > 0.5).sum()
    composed = compose_job(split["layers"], str(sample_path("carphone")), str(tmp_path / "compose"), "stm",
                           (0.4, 0.6), 0.7, limits, lambda fraction, text: None, placement="given")
    result = sm.read_video(composed["result"])
    assert result.frames.shape == (12, 144, 176, 3) and composed["frames"] == 12
    assert composed["mirrored"] == [False]  # a given placement keeps the orientation
    with zipfile.ZipFile(composed["layers_zip"]) as bundle:
        assert "result_layers/alpha.mkv" in bundle.namelist() and "result_layers/layers.json" in bundle.namelist()
    assert composed["metrics"]["bg_identity@appearance"] > 95
    assert composed["anchor"]["mode"] in ("world", "screen") and "frames_occluded" in composed["occlusion"]
    with pytest.raises(OptionError, match="method 'magic'"):
        compose_job(split["layers"], str(sample_path("carphone")), str(tmp_path / "c2"), "magic", None, 1.0,
                    limits, lambda fraction, text: None)


def test_bad_app_options_are_one_line_errors(capsys):
    from splitmerge.cli import main

    assert main(["app", "--frames", "3"]) == 2
    assert "frames 3: expected 8 to 400" in capsys.readouterr().err
    assert main(["app", "--port", "70000"]) == 2
    assert "--port 70000" in capsys.readouterr().err
    assert main(["app", "--max-upload-mb", "0"]) == 2
    assert "limits must be above 0" in capsys.readouterr().err


def test_the_compose_job_outlines_what_passes_in_front(tmp_path):
    """A walker nearer the camera passes in front of the subject: the preview's result panel outlines it; with the
    box unticked (``occlusion="off"``) nothing is outlined."""
    import splitmerge as sm
    from splitmerge.app.jobs import compose_job
    from splitmerge.eval.anchor_truth import OcclusionCase, render_occlusion_case

    clip = render_occlusion_case(OcclusionCase(frames=16, size=(120, 180)))
    clip.subject.save(tmp_path / "subject")
    sm.write_video(tmp_path / "shot.mp4", clip.background)
    shown = {}
    for occlusion in ("auto", "off"):
        done = compose_job(str(tmp_path / "subject"), str(tmp_path / "shot.mp4"), str(tmp_path / occlusion),
                           "copy-paste", clip.position, 1.0, AppLimits(frames=16, steps=2), lambda *_: None,
                           placement="given", occlusion=occlusion)
        panels = sm.read_video(done["side_by_side"]).frames
        cyan = (panels[..., 0] < 80) & (panels[..., 1] > 180) & (panels[..., 2] > 180)
        shown[occlusion] = (done["occlusion"]["frames_occluded"], int(cyan.sum()))
    assert shown["auto"][0] > 0 and shown["auto"][1] > 10, shown
    assert shown["off"][0] == 0 and shown["off"][1] < shown["auto"][1] / 5, shown
