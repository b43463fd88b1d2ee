"""Which autocast a training run uses: ``TrainConfig.mixed_precision`` resolved on the machine it runs on.

bf16 autocast is the first lever for CPU training speed only where the CPU multiplies bf16 fast (AVX512-BF16 or
AMX): measured on such hosts a 2048x2048 bf16 matmul ran 2.2-2.6x the fp32 rate and a cpu-small step 1.3x
faster. On a CPU without them (AVX2 only, e.g. an AMD EPYC measured 2026-12-02) torch emulates bf16: 0.6-0.9
GFLOP/s against 42-73 fp32, a cpu-small-drawn step went from 4 s to about 50 s. So ``auto`` (the CPU presets)
measures both rates once, on a matmul small enough to take well under a second even emulated, and picks bf16
only where it is clearly faster; ``bf16`` asks for it whatever it costs (with a notice where it is slow).
"""

from __future__ import annotations

import time

import torch

MODES = ("no", "auto", "bf16", "fp16")  # accelerate's names; "no" is fp32
PROBE_SIZE = 256          # matmul side: 34 MFLOP, under 0.1 s at the slowest emulated bf16 rate measured
PROBE_BUDGET = 0.05       # seconds of timed matmuls per dtype (see matmul_rate)
FASTER = 1.5              # bf16 is chosen where its matmul rate is at least this multiple of fp32's


def matmul_rate(dtype: torch.dtype, size: int = PROBE_SIZE, repeats: int = 3, budget: float = PROBE_BUDGET) -> float:
    """Best GFLOP/s of a size x size CPU matmul in `dtype`, timed at least `repeats` times and for at least
    `budget` seconds (after one untimed). The budget matters: a fresh process's first few calls (its thread pool
    starting, another process on the cores) measured 2-4 GFLOP/s where the rate was 150-500, enough to flip
    ``auto``'s choice; a fast matmul repeats a few hundred times within the budget, an emulated one `repeats` times."""
    a, b = torch.ones(size, size, dtype=dtype), torch.ones(size, size, dtype=dtype)
    torch.mm(a, b)
    best, timed, count = float("inf"), 0.0, 0
    while count < repeats or (timed < budget and count < 1000):
        started = time.perf_counter()
        torch.mm(a, b)
        took = time.perf_counter() - started
        best, timed, count = min(best, took), timed + took, count + 1
    return 2 * size ** 3 / max(best, 1e-9) / 1e9


def resolve(mode: str, cuda: bool | None = None) -> tuple[str, str]:
    """(accelerate's mixed_precision, a one-line reason) for the requested `mode` (one of `MODES`) on this
    machine (`cuda`: whether training runs on a CUDA device; detected when None). ``auto``: bf16 on a GPU that
    supports it, else fp32 there; on a CPU, bf16 where its matmul rate is `FASTER` times fp32's, else fp32."""
    if mode not in MODES:
        raise ValueError(f"mixed_precision {mode!r}: expected one of {', '.join(MODES)}")
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if cuda:
        if mode == "auto":
            chosen = "bf16" if torch.cuda.is_bf16_supported() else "no"
            return chosen, f"auto on a GPU: {'bf16' if chosen == 'bf16' else 'fp32 (no bf16 support)'}"
        return mode, mode
    if mode not in ("auto", "bf16"):
        return mode, mode
    fp32, bf16 = matmul_rate(torch.float32), matmul_rate(torch.bfloat16)
    rates = f"{PROBE_SIZE}x{PROBE_SIZE} matmul: bf16 {bf16:.1f} GFLOP/s, fp32 {fp32:.1f}"
    fast = bf16 >= FASTER * fp32
    if mode == "bf16":
        return "bf16", f"bf16 as asked ({rates}" + (")" if fast else "; this CPU emulates bf16: `auto` runs fp32)")
    return ("bf16", f"auto: bf16 ({rates})") if fast else ("no", f"auto: fp32 ({rates}: no fast bf16 here)")
