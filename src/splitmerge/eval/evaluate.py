"""`splitmerge evaluate`: run composition methods on a benchmark and score them.

For every case and method: compose (a registered method, with the case's prompt on the chosen track and the
method's own options) or read the method's video from a results folder (``RESULTS/<case id>.mp4``, for methods
run elsewhere); find where the subject is in the result (the method's own matte when it gives one, else the
result re-split by the default Split backends: recorded per row as ``matte``); score with the paper's five metrics
(offline proxies, `features`) and, when the case has truth, the ground-truth metrics (`truth_metrics`: each
measures one thing); then write ``metrics.json``, ``metrics.csv`` (one row per case and method, then one mean
row per method with its 95% bootstrap interval) and ``report.html`` (`report`).

Tracks (the honest protocol, docs/cli.md): ``plain`` (the default: a prompt a user would write for the inputs as
given), ``stated`` (plus the truth's direction of motion) and, on a benchmark made with ``--given-placement``,
``harmonization`` (every method keeps the truth's placement; colour alone is scored). Every row names its track.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from pathlib import Path

import cv2
import numpy as np

from ..atomic import atomic_dir, atomic_file
from ..config_types import is_integer
from ..errors import MediaError, MissingFileError, OptionError
from ..paths import check_output, check_own_folder
from ..video.io import read_video, write_video
from ..video.layers import Video, premultiply
from ..vlm.frames import sample_indices
from .bench import PROMPTS, BenchCase, load_bench
from .feature_models import load_feature_models, model_metrics
from .features import paper_metrics
from .metrics import (colour_error, contrast_error, depth_scale_error, light_error, mask_iou, masked_psnr, psnr,
                      ssim, warping_error)
from .report import case_video, write_report

# Which way is better, per metric; a metric with a backend tag (``fg_identity@clip-vit``) goes by its base name.
HIGHER_IS_BETTER = {"placement_iou": True, "depth_scale_error": False, "colour_error": False, "light_error": False,
                    "contrast_error": False,
                    "ring_psnr": True, "effects_psnr": True, "bg_psnr": True, "psnr": True, "ssim": True,
                    "warp_error": False,
                    "fg_identity": True, "bg_identity": True, "fg_motion": False, "bg_motion": False,
                    "text_alignment": True}
RING = 12  # px: the effects ring outside the true matte (shadow, contact), and the margin of "far from both"


def higher_is_better(name: str) -> bool:
    return HIGHER_IS_BETTER[name.split("@")[0]]


def metric_names(rows: list[dict]) -> list[str]:
    """Every metric the rows hold, ground-truth metrics first, in a stable order."""
    names = list(dict.fromkeys(name for row in rows for name in row["scores"]))
    order = list(HIGHER_IS_BETTER)
    return sorted(names, key=lambda name: (order.index(name.split("@")[0]), name))


BOOTSTRAP = 1000


def grown(alpha: np.ndarray, radius: int = RING) -> np.ndarray:
    """(T, H, W) bool: where a matte (T, H, W) is above 0.01, grown by a disk of `radius` px."""
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return np.stack([cv2.dilate((a > 0.01).astype(np.uint8), disk) > 0 for a in alpha])


def truth_metrics(result: np.ndarray, result_alpha: np.ndarray, truth: np.ndarray, truth_alpha: np.ndarray,
                  background: np.ndarray | None = None) -> dict:
    """Ground-truth scores of one result (T, H, W, 3) uint8 with its subject's matte `result_alpha` (T, H, W)
    against the true clip and the subject's true matte (and the input `background` (T, H, W, 3) uint8, for
    ``effects_psnr``), each measuring one thing:

    - ``placement_iou``: J of the result's matte and the true one (where the subject is, how big);
    - ``colour_error``: mean CIEDE2000 where both mattes are above 0.5 (the subject's colour, wherever it landed;
      absent when they do not overlap; a misplaced subject washed towards the scene's mean scores better);
    - ``light_error``: CIEDE2000 between the mean colours of the result's subject and the true one (matte > 0.5),
      per frame: its light and tint matched, wherever it landed and whatever its contrast;
    - ``contrast_error``: |ln| of the result's subject's lightness contrast (std of L*, matte > 0.5) against the
      true subject's, per frame: its pattern kept (a subject washed out to half its contrast scores 0.69);
    - ``ring_psnr``: PSNR over the pixels within `RING` px outside the true matte (shadow, contact; a misplaced
      subject over the ring counts too, so a tint alone moves it);
    - ``effects_psnr``: the same ring, with the result's own subject (matte > 0) taken back to the input
      background: what the method drew on the background next to the subject (a cast shadow, contact) alone,
      over the same pixels for every method (copy-paste, tinted or not, scores the bare background);
    - ``bg_psnr``: PSNR over the pixels farther than `RING` px from both mattes (the background kept);
    - ``psnr``, ``ssim``: the whole frame; ``warp_error``: temporal steadiness (flow from the truth).
    None where a region is empty or a PSNR is infinite."""
    scores = {"placement_iou": mask_iou(result_alpha, truth_alpha), "psnr": psnr(truth, result),
              "ssim": ssim(truth, result), "warp_error": warping_error(result, truth)}
    overlap = (result_alpha > 0.5) & (truth_alpha > 0.5)
    if overlap.any():
        scores["colour_error"] = colour_error(truth, result, overlap)
    light = light_error(truth, truth_alpha > 0.5, result, result_alpha > 0.5)
    if light is not None:
        scores["light_error"] = light
    contrast = contrast_error(truth, truth_alpha > 0.5, result, result_alpha > 0.5)
    if contrast is not None:
        scores["contrast_error"] = contrast
    near_truth = grown(truth_alpha)
    ring = near_truth & ~(truth_alpha > 0.01)
    if ring.any():
        scores["ring_psnr"] = masked_psnr(truth, result, ring)
        if background is not None:
            drawn = np.where((result_alpha > 0)[..., None], background, result)
            scores["effects_psnr"] = masked_psnr(truth, drawn, ring)
    far = ~(near_truth | grown(result_alpha))
    if far.any():
        scores["bg_psnr"] = masked_psnr(truth, result, far)
    return {key: (None if isinstance(value, float) and math.isinf(value) else value) for key, value in scores.items()}


def ground_of(placement: dict | None) -> tuple[float, float] | None:
    """(horizon y, subject height per px of depth below it) of a synthetic case's scene, from its recorded
    placement (horizon, feet and heights per frame); None for other cases."""
    if not placement or not {"horizon", "feet", "heights"} <= set(placement):
        return None
    horizon = float(placement["horizon"])
    ratios = [h / (y - horizon) for (_, y), h in zip(placement["feet"], placement["heights"], strict=True)
              if y - horizon > 1]
    return (horizon, float(np.median(ratios))) if ratios else None


def _result_of(case: BenchCase, layer, background: Video, method: str, results: dict[str, Path], seed: int,
               prompt: str, settings: dict) -> tuple[np.ndarray, np.ndarray | None, float]:
    """(frames, matte or None, fps) of `method` on `case`, whose subject `layer` and `background` are loaded;
    `settings`: `compose` keywords (the method's options, the model, the placement)."""
    if method in results:
        path = results[method] / f"{case.id}.mp4"
        if not path.is_file():
            raise MissingFileError(f"{path}: no result for case {case.id}")
        video = read_video(path)
        if video.frames.shape[1:3] != background.frames.shape[1:3]:
            (h, w), (bh, bw) = video.frames.shape[1:3], background.frames.shape[1:3]
            raise MediaError(f"{path}: the result is {w}x{h}, the case's background {bw}x{bh}; a result keeps "
                             f"the background's size")
        return video.frames, None, video.fps
    from ..merge.compose import compose

    # A case with truth was filmed as one clip: its subject's layer already moves with the background's camera,
    # and whatever passed in front of it is in the truth's own frames (the benchmark scores the subject alone).
    held = {"anchor": "screen", "occlusion": "off"} if case.truth else {}
    composite = compose(fg=layer, background=background, prompt=prompt, method=method, seed=seed, **held,
                        **settings)
    return composite.frames, composite.alpha, composite.fps


def _settings(methods: list[str], results: dict[str, Path], options: dict[str, dict], model: str, given: bool
              ) -> dict[str, dict]:
    """Per registered method, the `compose` keywords it runs with; a one-line error for an option that names a
    method not evaluated, a results folder, or a key the method does not take."""
    from ..merge.compose import check_options

    for method in options:
        if method in results or method not in methods:
            raise OptionError(f"--option {method}.*: {method!r} is not a --method of this evaluation")
    settings = {}
    keywords = ("model", "steps", "guidance")  # compose's own, settable per method
    for method in methods:
        if method in results:
            continue
        own = dict(options.get(method, {}))
        check_options(method, {key: value for key, value in own.items() if key not in keywords})
        settings[method] = {"model": model, "placement": "given" if given else "auto", **own}
    return settings


def _resplit(frames: np.ndarray, fps: float) -> tuple[np.ndarray, str]:
    """The subject's matte in a result, by the default Split backends (the paper's protocol)."""
    from ..decompose.pipeline import NoSubjectError, split

    try:
        layers = split(Video(frames, fps), caption="-")
        return layers.alpha, "resplit"
    except NoSubjectError:
        return np.zeros(frames.shape[:3], np.float32), "resplit (nothing found)"


def _caption(frames: np.ndarray, alpha: np.ndarray, fps: float) -> str:
    from ..decompose.backends import SplitClip, get_backend

    return get_backend("captioner", "measured").describe(SplitClip(frames, fps), alpha)


def bootstrap_interval(values: list[float], seed: int = 0, resamples: int = BOOTSTRAP) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean."""
    data = np.asarray([v for v in values if v is not None and np.isfinite(v)], float)
    if len(data) == 0:
        return (math.nan, math.nan)
    if len(data) == 1:
        return (float(data[0]), float(data[0]))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), (resamples, len(data)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def paired_difference(rows: list[dict], metric: str, method: str, baseline: str, seed: int = 0) -> dict:
    """The mean over cases of `method`'s `metric` minus `baseline`'s on the same case, with its 95% bootstrap
    interval (cases where either has no value are left out): a paired comparison, tighter than two intervals."""
    mine = {row["case"]: row["scores"].get(metric) for row in rows if row["method"] == method}
    theirs = {row["case"]: row["scores"].get(metric) for row in rows if row["method"] == baseline}
    differences = [mine[case] - theirs[case] for case in mine
                   if mine[case] is not None and theirs.get(case) is not None
                   and np.isfinite(mine[case]) and np.isfinite(theirs[case])]
    if not differences:
        return {"mean": None, "ci95": [None, None], "cases": 0}
    low, high = bootstrap_interval(differences, seed)
    return {"mean": float(np.mean(differences)), "ci95": [low, high], "cases": len(differences)}


def versus(rows: list[dict], baseline: str = "copy-paste") -> dict:
    """Per other method and ground-truth metric, `paired_difference` against `baseline` ({} without it)."""
    methods = list(dict.fromkeys(row["method"] for row in rows))
    if baseline not in methods:
        return {}
    names = [name for name in metric_names(rows) if "@" not in name]
    return {f"{method} - {baseline}": {name: paired_difference(rows, name, method, baseline) for name in names}
            for method in methods if method != baseline}


def summarize_rows(rows: list[dict]) -> dict:
    """Per method and metric: mean, 95% bootstrap interval and case count."""
    summary: dict[str, dict] = {}
    for method in dict.fromkeys(row["method"] for row in rows):
        mine = [row for row in rows if row["method"] == method]
        metrics = {}
        for name in metric_names(rows):
            values = [row["scores"].get(name) for row in mine]
            finite = [v for v in values if v is not None and np.isfinite(v)]
            if finite:
                low, high = bootstrap_interval(finite)
                metrics[name] = {"mean": float(np.mean(finite)), "ci95": [low, high], "cases": len(finite)}
        summary[method] = metrics
    return summary


def evaluate(bench: str | Path, methods: list[str], output: str | Path, results: list[str | Path] | None = None,
             seed: int = 0, judge: dict | None = None, features: dict | None = None,
             subject_matte: str = "method", model: str = "default", prompt: str = "plain",
             options: dict[str, dict] | None = None) -> dict:
    """Score `methods` (registered composition methods) and `results` folders (one method each, named by the
    folder) on the benchmark `bench`; write the outputs into `output`. Returns the metrics record.

    `prompt`: the track, ``plain`` (each case's prompt: what a user writes for the inputs as given) or ``stated``
    (plus the truth's direction of motion). `options`: per method, its `compose` options, e.g. ``{"stm":
    {"mirror": "keep"}}`` (the CLI's ``--option stm.mirror=keep``); recorded in the metrics.
    `judge`: when given, also ask a VLM judge for pairwise verdicts (`judge.run_judge`): a dict of `ChatClient`
    options (url, model, api_key, timeout, retries; the environment fills what is missing) plus ``frames`` per
    video (default 4). Its answers are cached under ``output/.vlm_cache`` unless ``cache_dir`` says otherwise.
    `model`: the Composer folder for the ``stm`` method ("default": the bundled one).
    `subject_matte`: where the subject is in each result: "method" (the method's own matte; results from a
    folder are re-split), "resplit" (always split the result again: the paper's protocol) or "truth" (the
    benchmark's true matte where there is one). Each row records which was used.
    `features`: model backends for the paper's metrics besides the offline proxies, ``{"identity_model": DIR,
    "action_model": DIR, "flow_model": DIR}`` (`feature_models`).
    """
    if subject_matte not in ("method", "resplit", "truth"):
        raise OptionError(f"subject matte {subject_matte!r}: expected method, resplit or truth")
    if prompt not in PROMPTS:
        raise OptionError(f"prompt {prompt!r}: expected one of {', '.join(PROMPTS)}")
    frames = (judge or {}).get("frames", 4)
    if not is_integer(frames) or not 1 <= frames <= 64:
        raise OptionError(f"judge frames {frames!r}: expected 1 to 64 frames per video")
    record, cases = load_bench(bench)
    results_by_name = {Path(folder).name: Path(folder) for folder in results or []}
    for folder in results_by_name.values():
        if not folder.is_dir():
            raise MissingFileError(f"{folder}: no such results folder")
    everything = list(dict.fromkeys(list(methods) + list(results_by_name)))
    if not everything:
        raise OptionError("evaluate: give at least one --method or --results folder")
    given = bool(record["settings"].get("given_placement"))
    track = "harmonization" if given else prompt
    settings = _settings(everything, results_by_name, options or {}, model, given)
    inputs = [bench, *results_by_name.values(), *(value for value in (features or {}).values() if value)]
    final = check_output(output, [*inputs, model if model != "default" else None], kind="folder")
    check_own_folder(final, "metrics.json", "an evaluation")
    with atomic_dir(final) as out:
        _keep_vlm_cache(final, out)
        return _score(out, bench, record, cases, everything, results_by_name, settings, seed, judge, features,
                      subject_matte, prompt, given, track)


def _keep_vlm_cache(previous: Path, fresh: Path) -> None:
    """Carry a judge cache (``.vlm_cache``) over from an earlier evaluation in the same folder."""
    if (previous / ".vlm_cache").is_dir():
        shutil.copytree(previous / ".vlm_cache", fresh / ".vlm_cache")


def _score(out: Path, bench, record: dict, cases: list[BenchCase], everything: list[str], results_by_name: dict,
           settings: dict, seed: int, judge: dict | None, features: dict | None, subject_matte: str, prompt: str,
           given: bool, track: str) -> dict:
    """`evaluate`'s work, writing into the (temporary) folder `out`."""
    identity, action, flow = load_feature_models(**(features or {}))
    rows, started = [], time.perf_counter()
    judged_frames: dict[str, dict[str, np.ndarray]] = {method: {} for method in everything}
    for case in cases:
        layer = case.foreground()
        background_video = case.background()
        background = background_video.frames
        text = case.prompt_for(prompt)
        truth = (case.truth_video().frames, case.truth_alpha()) if case.truth else None
        made = {}
        for method in everything:
            frames, alpha, fps = _result_of(case, layer, background_video, method, results_by_name, seed, text,
                                            settings.get(method, {}))
            count = min(len(frames), layer.num_frames, len(background))
            frames = frames[:count]
            if subject_matte == "truth" and truth is not None:
                alpha, matte = truth[1], "truth"
            elif subject_matte == "resplit" or alpha is None:
                alpha, matte = _resplit(frames, fps)
            else:
                matte = "method"
            alpha = alpha[:count]
            made[method] = frames
            write_video(out / "videos" / method / f"{case.id}.mp4", Video(frames, fps), crf=16)
            if judge is not None:  # the frames the judge will see, kept exact (re-decoding can differ by a level)
                judged_frames[method][case.id] = frames[sample_indices(len(frames), int(judge.get("frames", 4)))]
            scores = paper_metrics(layer.foreground[:count], layer.alpha[:count], background[:count], frames,
                                   alpha, text, _caption(frames, alpha, fps))
            if identity is not None or action is not None or flow is not None:
                keep = 1.0 - np.maximum(layer.alpha[:count] > 0.01, alpha > 0.01)
                scores.update(model_metrics(identity, action, layer.foreground[:count], background[:count],
                                            premultiply(frames, alpha), keep, frames, flow, text))
            if truth is not None:
                scores.update(truth_metrics(frames, alpha, truth[0][:count], truth[1][:count], background[:count]))
            ground = ground_of(case.placement)
            if ground is not None:
                scores["depth_scale_error"] = depth_scale_error(alpha, *ground)
            rows.append({"case": case.id, "kind": case.kind, "method": method, "track": track, "matte": matte,
                         "options": settings.get(method, {}), "truth_matte": truth is not None, "scores": scores})
        case_video(out, case.id, layer.foreground, background, made, None if truth is None else truth[0],
                   layer.fps)
    summary = summarize_rows(rows)
    directions = {name: higher_is_better(name) for name in metric_names(rows)}
    metrics = {"bench": str(bench), "kind": record["kind"], "track": track, "prompt": prompt,
               "placement": "given" if given else "the method's", "methods": everything, "cases": len(cases),
               "options": settings,
               "seconds": round(time.perf_counter() - started, 2), "higher_is_better": directions,
               "summary": summary, "versus": versus(rows), "rows": rows}
    if judge is not None:
        metrics["judge"] = _judge(out, cases, judged_frames, judge, seed)
    with atomic_file(out / "metrics.json") as temporary:
        temporary.write_text(json.dumps(metrics, indent=2) + "\n")
    _write_csv(out / "metrics.csv", rows, summary)
    write_report(out, metrics, cases)
    return metrics


def _judge(out: Path, cases: list[BenchCase], videos: dict[str, dict[str, np.ndarray]], options: dict,
           seed: int) -> dict:
    """Run the VLM judge over every pair of methods (`videos`: method -> case id -> the frames to show);
    writes ``judge.json``; returns its summary part."""
    from ..vlm.http import ChatClient
    from .judge import run_judge

    if len(videos) < 2:
        raise OptionError("the judge compares methods in pairs: give at least two")
    options = dict(options)
    frames = int(options.pop("frames", 4))
    client = ChatClient(**{"cache_dir": out / ".vlm_cache", **options})
    judged = run_judge(client, cases, videos, seed=seed, frames=frames)
    with atomic_file(out / "judge.json") as temporary:
        temporary.write_text(json.dumps(judged, indent=2) + "\n")
    return {key: judged[key] for key in ("model", "endpoint", "frames", "summary")}


def _write_csv(path: Path, rows: list[dict], summary: dict) -> None:
    names = metric_names(rows)
    with atomic_file(path) as temporary, temporary.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "method", "track", "matte", *names, *[f"{n}_ci95_low" for n in names],
                         *[f"{n}_ci95_high" for n in names]])
        for row in rows:
            writer.writerow([row["case"], row["method"], row["track"], row["matte"],
                             *[row["scores"].get(n, "") for n in names], *[""] * (2 * len(names))])
        tracks = {row["method"]: row["track"] for row in rows}
        for method, metrics in summary.items():
            means = [metrics[n]["mean"] if n in metrics else "" for n in names]
            lows = [metrics[n]["ci95"][0] if n in metrics else "" for n in names]
            highs = [metrics[n]["ci95"][1] if n in metrics else "" for n in names]
            writer.writerow(["mean", method, tracks[method], "", *means, *lows, *highs])
