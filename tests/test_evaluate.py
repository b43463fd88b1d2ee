"""Compose baselines, benchmarks, metrics that behave, and the evaluation report."""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pytest

import splitmerge as sm
import splitmerge.eval.evaluate
from splitmerge.cli import main
from splitmerge.data.synthetic import render_scene
from splitmerge.errors import OptionError
from splitmerge.eval.bench import load_bench, make_bench
from splitmerge.eval.evaluate import bootstrap_interval, truth_metrics
from splitmerge.eval.features import paper_metrics
from splitmerge.video.layers import composite
from splitmerge.video.transforms import color_jitter

SIZE = (96, 144)


@pytest.fixture(scope="module")
def scene():
    layers, params = render_scene(43, frames=9, size=SIZE)  # the camera pans 1.4 px a frame
    return layers, params


def test_metrics_score_identical_inputs_best_and_react_to_each_fault(scene):
    layers, _ = scene
    alpha, fg, bg = layers.alpha, layers.foreground, layers.background
    truth = composite(fg, alpha, bg)  # the scene without the subject's shadow: each fault below is the only one
    perfect = truth_metrics(truth, alpha, truth, alpha)
    assert perfect["psnr"] is None and perfect["ssim"] == pytest.approx(1.0) and perfect["placement_iou"] == 1.0
    assert perfect["colour_error"] == 0.0 and perfect["ring_psnr"] is None and perfect["bg_psnr"] is None
    best = paper_metrics(fg, alpha, bg, truth, alpha)
    assert best["fg_identity@appearance"] > 98 and best["bg_identity@appearance"] > 99.9
    assert best["bg_motion@dis"] < 0.1 and best["fg_motion@flow"] < 0.1  # (the flow at its edges differs a little)

    # A shifted subject lowers placement IoU (and PSNR), not the background far from both mattes; its colour error
    # counts only where the mattes overlap (subject against subject), not the subject against the background.
    from splitmerge.eval.metrics import colour_error

    moved_fg, moved_alpha = np.roll(fg, 12, axis=2), np.roll(alpha, 12, axis=2)
    moved = composite(moved_fg, moved_alpha, bg)
    shifted = truth_metrics(moved, moved_alpha, truth, alpha)
    assert shifted["placement_iou"] < 0.8 and shifted["psnr"] < 30 and shifted["bg_psnr"] is None  # exact there
    assert shifted["colour_error"] < 0.8 * colour_error(truth, moved, alpha > 0.5)
    assert perfect["light_error"] == 0.0 and shifted["light_error"] < 0.5  # the same subject, elsewhere
    # Washed towards grey (contrast halved, misplaced): colour_error over the overlap rewards it, light_error not.
    washed_fg = (0.5 * moved_fg.astype(np.float32) + 0.5 * 128 * moved_alpha[..., None]).astype(np.uint8)
    washed = truth_metrics(composite(washed_fg, moved_alpha, bg), moved_alpha, truth, alpha)
    assert washed["colour_error"] < shifted["colour_error"] and washed["light_error"] > shifted["light_error"] + 2
    # ... and contrast_error sees the halved contrast wherever the subject is (ln 2), not the move alone.
    assert perfect["contrast_error"] == 0.0 and shifted["contrast_error"] < 0.05
    assert washed["contrast_error"] == pytest.approx(math.log(2), abs=0.1)

    # A missing shadow: the ring just outside the true matte is darker in the truth. Only ring_psnr sees it.
    from splitmerge.eval.evaluate import grown

    ring = grown(alpha, 6) & ~(alpha > 0.01)
    shadowed = truth.copy()
    shadowed[ring] = (shadowed[ring] * 0.5).astype(np.uint8)
    unshadowed = truth_metrics(truth, alpha, shadowed, alpha, bg)
    assert unshadowed["ring_psnr"] < 25 and unshadowed["colour_error"] == 0.0 and unshadowed["bg_psnr"] is None
    # (no subject of the result's over the ring but its faintest edge, taken back to the background)
    assert unshadowed["effects_psnr"] == pytest.approx(unshadowed["ring_psnr"], abs=0.01)

    # A misplaced subject over the ring: re-tinting it moves ring_psnr, not effects_psnr (its pixels count as the
    # bare background); drawing the shadow where the subject is not raises effects_psnr.
    tinted_moved = composite((moved_fg * 0.6).astype(np.uint8), moved_alpha, bg)
    plain_scores = truth_metrics(moved, moved_alpha, shadowed, alpha, bg)
    tinted_scores = truth_metrics(tinted_moved, moved_alpha, shadowed, alpha, bg)
    assert tinted_scores["ring_psnr"] != pytest.approx(plain_scores["ring_psnr"], abs=0.1)
    assert tinted_scores["effects_psnr"] == plain_scores["effects_psnr"] == unshadowed["effects_psnr"]
    drawn = np.where((ring & ~(moved_alpha > 0.01))[..., None], shadowed, moved)
    assert truth_metrics(drawn, moved_alpha, shadowed, alpha, bg)["effects_psnr"] > plain_scores["effects_psnr"] + 3
    assert "effects_psnr" not in truth_metrics(moved, moved_alpha, shadowed, alpha)  # (needs the background)

    # A colour-shifted subject raises the colour error and lowers FG identity.
    tinted_fg, _ = color_jitter(fg, alpha, brightness=1.0, contrast=1.0, saturation=1.0, hue=0.3)
    tinted = composite(tinted_fg, alpha, bg)
    assert truth_metrics(tinted, alpha, truth, alpha)["colour_error"] > 10
    assert truth_metrics(tinted, alpha, truth, alpha)["light_error"] > 5
    assert paper_metrics(fg, alpha, bg, tinted, alpha)["fg_identity@appearance"] < best["fg_identity@appearance"] - 5

    # The subject's motion: mirrored and enlarged it is the same motion; frozen it is not.
    from splitmerge.video.transforms import affine, hflip

    placed_fg, placed_alpha = affine(*hflip(fg, alpha), 1.3, (0, 0), (SIZE[1] / 2, SIZE[0] / 2))
    placed = paper_metrics(fg, alpha, bg, composite(placed_fg, placed_alpha, bg), placed_alpha)["fg_motion@flow"]
    still_fg, still_alpha = np.repeat(fg[:1], len(fg), axis=0), np.repeat(alpha[:1], len(alpha), axis=0)
    still = paper_metrics(fg, alpha, bg, composite(still_fg, still_alpha, bg), still_alpha)["fg_motion@flow"]
    assert placed < 0.5 < still, (placed, still)

    # A frozen background raises the BG motion error (the camera pans in the input).
    frozen = composite(fg, alpha, np.repeat(bg[:1], len(bg), axis=0))
    assert paper_metrics(fg, alpha, bg, frozen, alpha)["bg_motion@dis"] > 10 * max(best["bg_motion@dis"], 0.01)
    assert truth_metrics(frozen, alpha, truth, alpha)["bg_psnr"] < 30


def test_depth_scale_error_scores_a_size_that_fits_where_the_feet_are():
    from splitmerge.eval.metrics import DEPTH_SCALE_CAP, depth_scale_error

    def box(top, bottom, left=10, width=6):
        alpha = np.zeros((2, 60, 80), np.float32)
        alpha[:, top:bottom, left:left + width] = 1
        return alpha

    # Ground: horizon at y 20, 0.5 px of height per px of depth. Feet at 40 (20 px deep) -> 10 px tall.
    assert depth_scale_error(box(30, 40), 20, 0.5) == pytest.approx(0, abs=0.06)
    assert depth_scale_error(box(30, 40, left=60), 20, 0.5) == pytest.approx(0, abs=0.06)   # x does not matter
    assert depth_scale_error(box(20, 40), 20, 0.5) == pytest.approx(np.log(2), abs=0.06)    # twice as tall
    assert depth_scale_error(box(5, 15), 20, 0.5) == DEPTH_SCALE_CAP                          # in the sky
    assert depth_scale_error(np.zeros((2, 60, 80), np.float32), 20, 0.5) == DEPTH_SCALE_CAP  # no subject


def test_bootstrap_interval_brackets_the_mean():
    values = list(np.random.default_rng(0).normal(5, 1, 40))
    low, high = bootstrap_interval(values)
    assert low < np.mean(values) < high and high - low < 1.5
    assert bootstrap_interval([3.0]) == (3.0, 3.0)


def test_compose_baselines_and_their_options(scene, tmp_path):
    layers, _ = scene
    background = sm.Video(layers.background, layers.fps)
    held = {"anchor": "screen", "occlusion": "off"}   # the subject back into its own clip, exactly
    plain = sm.compose(fg=layers, background=background, method="copy-paste", **held)
    unshadowed = composite(layers.foreground, layers.alpha, layers.background)  # copy-paste casts no shadow
    assert np.abs(plain.frames.astype(int) - unshadowed.astype(int)).max() <= 2  # it rebuilds the rest
    assert np.allclose(plain.alpha, layers.alpha, atol=1e-4) and plain.meta["method"] == "copy-paste"
    tinted_fg, _ = color_jitter(layers.foreground, layers.alpha, brightness=1.5, contrast=1.0, saturation=1.0,
                                hue=0.0)
    bright = sm.Layers(layers.frames, layers.alpha, tinted_fg, layers.background, layers.fps)
    pasted = sm.compose(fg=bright, background=background, method="copy-paste", **held)
    harmonized = sm.compose(fg=bright, background=background, method="harmonized-copy-paste", **held)
    inside = layers.alpha > 0.9
    error = lambda result: np.abs(result.frames.astype(int) - layers.frames.astype(int))[inside].mean()  # noqa: E731
    assert error(harmonized) < error(pasted)  # pulled back towards the scene's light
    moved = sm.compose(fg=layers, background=background, method="copy-paste", position=(0.2, 0.5), scale=0.5)
    assert moved.alpha.sum() < 0.5 * layers.alpha.sum()
    track = tmp_path / "track.csv"
    track.write_text("\n".join(f"{0.2 + 0.05 * t},0.6" for t in range(9)))
    along = sm.compose(fg=layers, background=background, method="copy-paste", trajectory=track)
    xs = [np.nonzero(a > 0.5)[1].mean() for a in along.alpha]
    assert np.all(np.diff(xs) > 0)
    with pytest.raises(OptionError, match="method 'magic'"):
        sm.compose(fg=layers, background=background, method="magic")
    empty = sm.Layers(layers.frames, np.zeros_like(layers.alpha), np.zeros_like(layers.foreground),
                      layers.background, layers.fps)
    with pytest.raises(OptionError, match="fg 2: the subject's matte is empty"):
        sm.compose(fg=[layers, empty], background=background, method="copy-paste")
    with pytest.raises(OptionError, match="fg 1: placed entirely outside"):
        sm.compose(fg=layers, background=background, method="copy-paste", position=(5.0, 5.0))
    out = tmp_path / "result.mp4"
    assert main(["compose", "--fg", str(tmp_path / "missing"), "--bg", "x.mp4", "-o", str(out)]) == 2
    assert not out.exists()


def test_benchmarks_keep_their_inputs_truth_and_transforms(tmp_path):
    bench = make_bench("synthetic", tmp_path / "synthetic", cases=2, frames=9, size=SIZE)
    record, cases = load_bench(bench)
    assert record["kind"] == "synthetic" and len(cases) == 2 and record["version"] == 2
    for case in cases:
        assert case.truth and case.transform["crop"] and case.transform["jitter"]  # every input is transformed
        layer, truth = case.foreground(), case.truth_video()
        assert layer.frames.shape == truth.frames.shape == (9, *SIZE, 3)
        assert case.truth_alpha().shape == (9, *SIZE) and len(case.placement["feet"]) == 9
        assert layer.caption == case.prompt and case.stated_prompt.startswith(case.prompt)
    # The harmonization track: the truth's placement, only the colours jittered.
    given = make_bench("synthetic", tmp_path / "given", cases=2, frames=9, size=SIZE, given_placement=True)
    record, cases = load_bench(given)
    assert record["settings"]["given_placement"]
    for case in cases:
        assert not case.transform["flip"] and case.transform["crop"] is None and case.transform["jitter"]
        assert np.abs(case.foreground().alpha - case.truth_alpha()).max() < 0.01
    with pytest.raises(OptionError, match="given-placement"):
        make_bench("cross", tmp_path / "cross-given", cases=1, frames=9, size=SIZE, given_placement=True)
    # A version 1 benchmark (prompts read off the truth) is refused.
    old = json.loads((given / "bench.json").read_text())
    (given / "bench.json").write_text(json.dumps({**old, "version": 1}))
    with pytest.raises(sm.SplitMergeError, match="version 1"):
        load_bench(given)
    cross = make_bench("cross", tmp_path / "cross", cases=2, frames=9, size=SIZE)
    _, cross_cases = load_bench(cross)
    assert not any(case.truth for case in cross_cases) and "-on-" in cross_cases[0].id
    with pytest.raises(OptionError, match="needs --data"):
        make_bench("self", tmp_path / "self")


def test_plain_prompts_say_nothing_of_left_or_right_and_stated_prompts_state_the_truth(tmp_path):
    """The honest protocol: a case's prompt is measured on the input as given, with no left or right; the stated
    prompt adds the truth's direction of motion, which the synthetic scene knows exactly."""
    from splitmerge.merge.orientation import stated_direction

    bench = make_bench("synthetic", tmp_path / "b", cases=6, frames=12, size=(64, 96))
    stated = 0
    for case in load_bench(bench)[1]:
        assert not re.search(r"\b(left|right)", case.prompt, re.IGNORECASE), case.prompt
        feet = case.placement["feet"]
        direction = stated_direction(case.stated_prompt)
        if direction:
            stated += 1
            assert direction == (1 if feet[-1][0] > feet[0][0] else -1), (case.id, case.stated_prompt)
    assert stated >= 4  # the scenes' subjects walk sideways: most prompts state it


def test_a_self_benchmark_from_real_videos_is_scored_against_the_real_frames(tmp_path):
    """``bench make self --source VIDEO``: the video is split here into clips, each one a case whose truth is
    the real frames."""
    from splitmerge.data.manifest import read_manifest
    from splitmerge.eval.metrics import psnr
    from splitmerge.samples import sample_path

    bench = tmp_path / "real"
    assert main(["bench", "make", "self", "-o", str(bench), "--source", str(sample_path("bigbuckbunny")),
                 "--cases", "2", "--frames", "12", "--size", "64x96"]) == 0
    record, cases = load_bench(bench)
    assert record["settings"]["sources"] and len(cases) >= 1 and (bench / "split" / "manifest.parquet").is_file()
    rows = {row["id"]: row for row in read_manifest(bench / "split")}
    for case in cases:
        assert case.source["dataset"] == "split" and case.truth and not re.search(r"\b(left|right)", case.prompt)
        row = rows[case.source["clip"]]
        real = sm.read_video(row["source_path"], size=(64, 96), start=row["start_frame"], stride=row["stride"],
                             max_frames=12).frames
        assert psnr(real, case.truth_video().frames) > 30  # the truth is the video's own frames
    assert main(["bench", "make", "self", "-o", str(tmp_path / "x"), "--source", str(tmp_path / "none.mp4")]) == 2


def test_evaluate_writes_metrics_csv_and_a_report(tmp_path, capsys):
    bench = tmp_path / "bench"
    assert main(["bench", "make", "synthetic", "-o", str(bench), "--cases", "2", "--frames", "9", "--size",
                 "96x144"]) == 0
    out = tmp_path / "eval"
    assert main(["evaluate", "--bench", str(bench), "--method", "copy-paste", "--method",
                 "harmonized-copy-paste", "-o", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["methods"] == ["copy-paste", "harmonized-copy-paste"] and len(metrics["rows"]) == 4
    assert metrics["track"] == "plain" and {row["track"] for row in metrics["rows"]} == {"plain"}
    for method in metrics["methods"]:
        for entry in metrics["summary"][method].values():
            assert entry["ci95"][0] <= entry["mean"] + 1e-9 and entry["mean"] <= entry["ci95"][1] + 1e-9
        assert "placement_iou" in metrics["summary"][method] and "fg_identity@appearance" in metrics["summary"][method]
    with (out / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 + 2 and rows[-1]["case"] == "mean" and rows[0]["matte"] == "method"
    page = (out / "report.html").read_text()
    assert page.count("<video") == 2 and "harmonized-copy-paste" in page and "charts/psnr.png" in page
    assert "track\nplain" in page and all((out / "cases" / f"{row['case']}.mp4").is_file() for row in metrics["rows"])
    # Options a method does not take, or for a method not evaluated, are one-line errors; nothing is scored.
    for option in ("copy-paste.bogus=1", "stm.mirror=keep", "mirror=keep"):
        capsys.readouterr()
        assert main(["evaluate", "--bench", str(bench), "--method", "copy-paste", "--option", option,
                     "-o", str(tmp_path / "bad")]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "bad" / "metrics.json").exists()
    stated = tmp_path / "stated"
    assert main(["evaluate", "--bench", str(bench), "--method", "copy-paste", "--prompt", "stated",
                 "-o", str(stated)]) == 0
    assert json.loads((stated / "metrics.json").read_text())["rows"][0]["track"] == "stated"
    assert (out / "charts" / "psnr.png").read_bytes()[:4] == b"\x89PNG"
    # A results folder (a method run elsewhere): its videos are re-split to find the subject.
    results = tmp_path / "truth-as-method"
    results.mkdir()
    for case in load_bench(bench)[1]:
        sm.write_video(results / f"{case.id}.mp4", case.truth_video())
    again = tmp_path / "eval2"
    assert main(["evaluate", "--bench", str(bench), "--results", str(results), "-o", str(again)]) == 0
    scored = json.loads((again / "metrics.json").read_text())
    assert scored["rows"][0]["matte"].startswith("resplit")
    assert scored["summary"]["truth-as-method"]["psnr"]["mean"] > 35  # the truth itself, through the codec
    third = tmp_path / "eval3"
    assert main(["evaluate", "--bench", str(bench), "--results", str(results), "--subject-matte", "truth",
                 "-o", str(third)]) == 0
    by_truth = json.loads((third / "metrics.json").read_text())
    assert {row["matte"] for row in by_truth["rows"]} == {"truth"}
    assert by_truth["summary"]["truth-as-method"]["placement_iou"]["mean"] == 1.0
    assert by_truth["summary"]["truth-as-method"]["depth_scale_error"]["mean"] < 0.1  # the truth fits its ground
    capsys.readouterr()
    assert main(["evaluate", "--bench", str(tmp_path / "nope"), "--method", "copy-paste", "-o", str(again)]) == 2
    assert "no bench.json" in capsys.readouterr().err


def test_judge_parses_strictly():
    from splitmerge.eval.judge import KEYS, parse_answer

    full = {key: "1" for key in KEYS}
    full["overall"], full["scale"] = "2", "none"
    verdicts = parse_answer("Sure! " + json.dumps(full) + " Hope that helps.")
    assert verdicts["fg_identity"] == 0 and verdicts["overall"] == 1 and verdicts["scale"] is None
    partial = parse_answer(json.dumps({"overall": "video 2", "fg_identity": "maybe"}))
    assert partial["overall"] == 1 and partial["fg_identity"] == "unparsed" and partial["bg_motion"] == "unparsed"
    assert set(parse_answer("I prefer the first one.").values()) == {"unparsed"}


def test_vlm_judge_records_order_maps_winners_and_caches(tmp_path, monkeypatch):
    from fake_vlm import FakeServer
    from splitmerge.eval.judge import KEYS

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    bench = make_bench("synthetic", tmp_path / "bench", cases=3, frames=9, size=SIZE)
    always_first = json.dumps({key: "1" for key in KEYS})
    with FakeServer() as server:
        server.plan = [("answer", always_first), ("answer", always_first), ("answer", "no idea")]
        judge = {"url": server.url, "model": "judge-vlm", "frames": 2, "retries": 0}
        metrics = sm.eval.evaluate.evaluate(bench, ["copy-paste", "harmonized-copy-paste"], tmp_path / "eval",
                                            judge=judge)
        asked = len(server.requests)
        request = server.requests[0]["body"]
        images = [part for part in request["messages"][-1]["content"] if part["type"] == "image_url"]
        assert request["model"] == "judge-vlm" and len(images) == 4 * 2  # fg, bg, video 1, video 2
        record = json.loads((tmp_path / "eval" / "judge.json").read_text())
        # The judge always says "video 1": each win goes to whichever method was shown first.
        for verdict in record["verdicts"][:2]:
            assert set(verdict["winners"].values()) == {verdict["shown"][0]}
        assert set(record["verdicts"][2]["winners"].values()) == {"unparsed"}
        assert record["verdicts"][2]["reply"] == "no idea"
        table = metrics["judge"]["summary"]["copy-paste vs harmonized-copy-paste"]["overall"]
        assert table["unparsed"] == 1 and table["copy-paste"] + table["harmonized-copy-paste"] == 2
        assert "VLM judge" in (tmp_path / "eval" / "report.html").read_text()
        # A rerun costs nothing: every answer comes from the cache.
        sm.eval.evaluate.evaluate(bench, ["copy-paste", "harmonized-copy-paste"], tmp_path / "eval", judge=judge)
        assert len(server.requests) == asked == 3
