"""`benchmarks/truth_ceilings.py`: its oracles undo exactly what the benchmark's augmentation did, so the
ceilings it prints are the benchmark's, not an artefact of the script."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from splitmerge.eval.bench import load_bench, make_bench
from splitmerge.eval.metrics import mask_iou

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "truth_ceilings.py"


def ceilings_module():
    spec = importlib.util.spec_from_file_location("truth_ceilings", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_exact_inverse_puts_the_subject_back_on_the_truth_and_its_true_shadow_fills_the_ring(tmp_path):
    ceilings = ceilings_module()
    _, cases = load_bench(make_bench("synthetic", tmp_path / "b", cases=4, frames=6, size=(64, 96)))
    by_method: dict[str, list[dict]] = {}
    for case in cases:
        layer, truth_alpha = case.foreground(), case.truth_alpha()
        exact = ceilings.put_back(layer.foreground, layer.alpha, case.transform, "exact")[1]
        assert mask_iou(exact, truth_alpha) > 0.8, case.id  # resampled twice: edges move by a pixel
        assert mask_iou(exact, truth_alpha) > mask_iou(layer.alpha, truth_alpha)
        for row in ceilings.case_rows(case):
            by_method.setdefault(row["method"], []).append(row["scores"])
    assert set(by_method) == {name + suffix for name in ceilings.PLACEMENTS for suffix in ("", "+shadow")}
    ring = {name: np.mean([s["ring_psnr"] for s in scores]) for name, scores in by_method.items()}
    # Where the subject stands where the truth's stood, the scene's own shadow is most of what the ring lacks.
    assert ring["exact+shadow"] > ring["exact"] + 1.0
    assert ring["exact+shadow"] > ring["copy-paste+shadow"] + 3.0
    effects = [s["effects_psnr"] for s in by_method["copy-paste"]]
    assert effects == [s["effects_psnr"] for s in by_method["exact"]]  # nothing drawn: the bare background
