"""`mixed_precision` resolved on the machine: bf16 autocast only where this CPU multiplies bf16 fast."""

from __future__ import annotations

import math
import time

import pytest

from splitmerge.cli import main
from splitmerge.errors import OptionError
from splitmerge.merge import precision
from splitmerge.merge.train import TrainConfig


def rates(monkeypatch, fp32: float, bf16: float) -> list:
    """Make `matmul_rate` report these GFLOP/s; returns the dtypes it was asked about."""
    asked = []

    def fake(dtype, *args, **kwargs):
        asked.append(str(dtype))
        return bf16 if "bfloat16" in str(dtype) else fp32

    monkeypatch.setattr(precision, "matmul_rate", fake)
    return asked


def test_auto_picks_bf16_only_where_the_cpu_multiplies_it_fast(monkeypatch):
    rates(monkeypatch, fp32=195.0, bf16=424.0)   # an AMX host (README benchmark table)
    chosen, reason = precision.resolve("auto", cuda=False)
    assert chosen == "bf16" and "424.0" in reason
    rates(monkeypatch, fp32=73.0, bf16=0.9)      # AVX2 only: torch emulates bf16 (measured 2026-12-02)
    chosen, reason = precision.resolve("auto", cuda=False)
    assert chosen == "no" and "fp32" in reason
    rates(monkeypatch, fp32=100.0, bf16=120.0)   # barely faster: not worth autocast's conversions
    assert precision.resolve("auto", cuda=False)[0] == "no"


def test_bf16_asked_for_is_kept_with_a_notice_and_fp32_is_never_measured(monkeypatch):
    rates(monkeypatch, fp32=73.0, bf16=0.9)
    chosen, reason = precision.resolve("bf16", cuda=False)
    assert chosen == "bf16" and "emulates" in reason
    asked = rates(monkeypatch, fp32=73.0, bf16=0.9)
    assert precision.resolve("no", cuda=False) == ("no", "no") and asked == []
    with pytest.raises(ValueError, match="fp32"):
        precision.resolve("fp32", cuda=False)


def test_the_probe_measures_a_real_rate():
    rate = precision.matmul_rate(precision.torch.float32, size=64, repeats=2)
    assert math.isfinite(rate) and rate > 0


def test_the_probe_outlasts_a_slow_start(monkeypatch):
    """A fresh process's first matmuls ran 50-100x slower than its rate (measured: fp32 2.1 GFLOP/s where it was
    160): the probe keeps timing for its budget, so a slow start cannot decide `auto`."""
    real_mm, calls = precision.torch.mm, []

    def slow_at_first(a, b):
        calls.append(1)
        if len(calls) <= 6:
            time.sleep(0.01)
        return real_mm(a, b)

    monkeypatch.setattr(precision.torch, "mm", slow_at_first)
    rate = precision.matmul_rate(precision.torch.float32, size=64, repeats=3, budget=0.1)
    assert len(calls) > 7 and rate > 2 * 64 ** 3 / 0.01 / 1e9 * 10


def test_an_unknown_mode_is_a_one_line_error_before_any_run_folder(tmp_path, capsys):
    with pytest.raises(OptionError, match="mixed_precision 'fp32': expected one of no, auto, bf16, fp16"):
        TrainConfig(mixed_precision="fp32")
    config = tmp_path / "bad.yaml"
    config.write_text("mixed_precision: fp32\n")
    assert main(["train", "--config", str(config), "--data", str(tmp_path), "-o", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "mixed_precision" in error
    assert not (tmp_path / "run").exists()
