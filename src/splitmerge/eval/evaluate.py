"""`splitmerge evaluate`: run composition methods on a benchmark and score them.

For every case and method: compose (a registered method) or read the method's video from a results folder
(``RESULTS/<case id>.mp4``, for methods run elsewhere); find where the subject is in the result (the method's
own matte when it gives one, else the result re-split by the default Split backends: recorded per row as
``matte``); score with the paper's five metrics (offline proxies, `features`) and, when the case has truth, the
ground-truth metrics (`metrics`); then write ``metrics.json``, ``metrics.csv`` (one row per case and method,
then one mean row per method with its 95% bootstrap interval) and ``report.html`` (`report`).
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np

from ..atomic import atomic_file
from ..errors import MissingFileError, OptionError
from ..video.io import read_video, write_video
from ..video.layers import Video, premultiply
from ..vlm.frames import sample_indices
from .bench import BenchCase, load_bench
from .feature_models import load_feature_models, model_metrics
from .features import paper_metrics
from .metrics import colour_error, depth_scale_error, mask_iou, masked_mse, masked_psnr, psnr, ssim, warping_error

# Which way is better, per metric; a metric with a backend tag (``fg_identity@clip-vit``) goes by its base name.
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "fg_psnr": True, "fg_mse": False, "bg_psnr": True,
                    "placement_iou": True, "depth_scale_error": False, "colour_error": False, "warp_error": False,
                    "fg_identity": True, "bg_identity": True, "fg_motion": False, "bg_motion": False,
                    "text_alignment": True}


def higher_is_better(name: str) -> bool:
    return HIGHER_IS_BETTER[name.split("@")[0]]


def metric_names(rows: list[dict]) -> list[str]:
    """Every metric the rows hold, ground-truth metrics first, in a stable order."""
    names = list(dict.fromkeys(name for row in rows for name in row["scores"]))
    order = list(HIGHER_IS_BETTER)
    return sorted(names, key=lambda name: (order.index(name.split("@")[0]), name))


BOOTSTRAP = 1000


def truth_metrics(result: np.ndarray, result_alpha: np.ndarray, truth: np.ndarray, truth_alpha: np.ndarray
                  ) -> dict:
    """Ground-truth scores of one result (T, H, W, 3) uint8 against the true clip and the subject's true matte."""
    subject = truth_alpha > 0.5
    near = np.stack([cv2.dilate((a > 0.01).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0 for a in truth_alpha])
    scores = {"psnr": psnr(truth, result), "ssim": ssim(truth, result),
              "bg_psnr": masked_psnr(truth, result, ~near), "placement_iou": mask_iou(result_alpha, truth_alpha),
              "warp_error": warping_error(result, truth)}
    if subject.any():
        scores.update(fg_mse=masked_mse(truth, result, subject), fg_psnr=masked_psnr(truth, result, subject),
                      colour_error=colour_error(truth, result, subject))
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
               model: str = "default") -> tuple[np.ndarray, np.ndarray | None, float]:
    """(frames, matte or None, fps) of `method` on `case`, whose subject `layer` and `background` are loaded."""
    if method in results:
        path = results[method] / f"{case.id}.mp4"
        if not path.is_file():
            raise MissingFileError(f"{path}: no result for case {case.id}")
        video = read_video(path)
        return video.frames, None, video.fps
    from ..merge.compose import compose

    composite = compose(fg=layer, background=background, prompt=case.prompt, method=method, seed=seed,
                        model=model)
    return composite.frames, composite.alpha, composite.fps


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
             subject_matte: str = "method", model: str = "default") -> dict:
    """Score `methods` (registered composition methods) and `results` folders (one method each, named by the
    folder) on the benchmark `bench`; write the outputs into `output`. Returns the metrics record.

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
    record, cases = load_bench(bench)
    results_by_name = {Path(folder).name: Path(folder) for folder in results or []}
    for folder in results_by_name.values():
        if not folder.is_dir():
            raise MissingFileError(f"{folder}: no such results folder")
    everything = list(dict.fromkeys(list(methods) + list(results_by_name)))
    if not everything:
        raise OptionError("evaluate: give at least one --method or --results folder")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    identity, action, flow = load_feature_models(**(features or {}))
    rows, started = [], time.perf_counter()
    judged_frames: dict[str, dict[str, np.ndarray]] = {method: {} for method in everything}
    for case in cases:
        layer = case.foreground()
        background_video = case.background()
        background = background_video.frames
        truth = (case.truth_video().frames, case.truth_alpha()) if case.truth else None
        for method in everything:
            frames, alpha, fps = _result_of(case, layer, background_video, method, results_by_name, seed, model)
            count = min(len(frames), layer.num_frames, len(background))
            frames = frames[:count]
            if subject_matte == "truth" and truth is not None:
                alpha, matte = truth[1], "truth"
            elif subject_matte == "resplit" or alpha is None:
                alpha, matte = _resplit(frames, fps)
            else:
                matte = "method"
            alpha = alpha[:count]
            write_video(out / "videos" / method / f"{case.id}.mp4", Video(frames, fps), crf=16)
            if judge is not None:  # the frames the judge will see, kept exact (re-decoding can differ by a level)
                judged_frames[method][case.id] = frames[sample_indices(len(frames), int(judge.get("frames", 4)))]
            scores = paper_metrics(layer.foreground[:count], layer.alpha[:count], background[:count], frames,
                                   alpha, case.prompt, _caption(frames, alpha, fps))
            if identity is not None or action is not None or flow is not None:
                keep = 1.0 - np.maximum(layer.alpha[:count] > 0.01, alpha > 0.01)
                scores.update(model_metrics(identity, action, layer.foreground[:count], background[:count],
                                            premultiply(frames, alpha), keep, frames, flow, case.prompt))
            if truth is not None:
                scores.update(truth_metrics(frames, alpha, truth[0][:count], truth[1][:count]))
            ground = ground_of(case.placement)
            if ground is not None:
                scores["depth_scale_error"] = depth_scale_error(alpha, *ground)
            rows.append({"case": case.id, "kind": case.kind, "method": method, "matte": matte,
                         "truth_matte": truth is not None, "scores": scores})
    summary = summarize_rows(rows)
    directions = {name: higher_is_better(name) for name in metric_names(rows)}
    metrics = {"bench": str(bench), "kind": record["kind"], "methods": everything, "cases": len(cases),
               "seconds": round(time.perf_counter() - started, 2), "higher_is_better": directions,
               "summary": summary, "rows": rows}
    if judge is not None:
        metrics["judge"] = _judge(out, cases, judged_frames, judge, seed)
    with atomic_file(out / "metrics.json") as temporary:
        temporary.write_text(json.dumps(metrics, indent=2) + "\n")
    _write_csv(out / "metrics.csv", rows, summary)
    from .report import write_report

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
        writer.writerow(["case", "method", "matte", *names, *[f"{n}_ci95_low" for n in names],
                         *[f"{n}_ci95_high" for n in names]])
        for row in rows:
            writer.writerow([row["case"], row["method"], row["matte"], *[row["scores"].get(n, "") for n in names],
                             *[""] * (2 * len(names))])
        for method, metrics in summary.items():
            means = [metrics[n]["mean"] if n in metrics else "" for n in names]
            lows = [metrics[n]["ci95"][0] if n in metrics else "" for n in names]
            highs = [metrics[n]["ci95"][1] if n in metrics else "" for n in names]
            writer.writerow(["mean", method, "", *means, *lows, *highs])
