"""The light a clip's true effects show, fitted in hindsight, as a target the scene reader can regress.

A drawn Composer casts the moved subject's shadow under a light it decides (`merge.warp.cast_shadow`: the
shadow's lean, length, darkness and softness). Trained only through the shadow's error against the true effects
(`merge.warp.shadow_error`), the scene reader never learnt which way the light falls: early on its shadow is faint,
the error is lowest for a long shadow leaning to one side whatever the scene, the lean saturates there, and the
side stayed at chance on scenes whose props all cast their shadows one way (docs/training.md). The side is a
discrete choice like the mirror, and like the mirror it is learnt by regression on a known answer, not through a
rendered error with two basins. (Measured: through the rendered error alone, the reader warmed up on the training
mix cast its shadow to the right side on 0.50 of 48 synthetic benchmark cases.)

Here the answer is read off each training frame's own truth: the light whose shadow of the true matte best matches
the true effects, found by gradient descent on that frame alone from four starts (either lean, either length
direction; the best kept). Nothing outside the sample is used (real clips' effects come from the split,
synthetic ones from the render), so the reader learns to predict from the scene what the truth's shadow shows.

Shapes: mattes and effects (N, 1, T, H, W) in [0, 1] (effects are gains, 1 = untouched); light values (N, T).
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from .warp import (BLUR_RANGE, DARK_MAX, DRAWN_CHANNELS, SHADOW_BLUR, SHADOW_DARK, SHADOW_SHEAR, SHADOW_SQUASH,
                   SHEAR_LIMIT, SQUASH_LIMIT, light_values, shadow_errors)

LIGHT_CHANNELS = (SHADOW_SHEAR, SHADOW_SQUASH, SHADOW_DARK, SHADOW_BLUR)
FIT_STEPS = 80
FIT_HEIGHT = 32          # frames are fitted at most this many rows tall
FIT_RATE = 0.1
START_LEAN = 0.7          # raw lean of the starts (shear +-0.9)
START_LENGTHS = (0.0, -1.0)  # raw lengths of the starts: squash +-0.28 (behind the subject, towards the camera)
START_DARK = 3.0          # raw darkness of the starts (0.24): dark enough that lean and length have a gradient
NO_SHADOW = 0.05          # a fitted darkness below this says nothing about the light's direction


def _raw_map(light: torch.Tensor) -> torch.Tensor:
    """(N, 4, T) raw light channels -> a map of one cell (N, DRAWN_CHANNELS, T, 1, 1) (`merge.warp` layout)."""
    n, _, t = light.shape
    raw = light.new_zeros(n, DRAWN_CHANNELS, t)
    raw[:, list(LIGHT_CHANNELS)] = light
    return raw[..., None, None]


def frame_error(light: torch.Tensor, matte: torch.Tensor, effects: torch.Tensor) -> torch.Tensor:
    """(N,) the error of the shadow `matte` casts under the raw `light` (N, 4, T) against the true `effects`
    (N, 1, T, H, W), as `merge.warp.shadow_error` judges a drawn Composer's (`shadow_errors`)."""
    return shadow_errors(_raw_map(light), matte, effects)


def _reduced(frames: torch.Tensor) -> torch.Tensor:
    """(N, 1, T, H, W) averaged in blocks to at most `FIT_HEIGHT` rows: the light's values are in units of the
    frame (lean and length per unit of height, softness in frame heights), so a smaller frame fits the same light
    (measured: 40 s for 256 frames of 64x96 at full size on one core)."""
    factor = max(1, frames.shape[-2] // FIT_HEIGHT)
    return F.avg_pool3d(frames, (1, factor, factor), ceil_mode=True) if factor > 1 else frames


def fit_light(matte: torch.Tensor, effects: torch.Tensor, steps: int = FIT_STEPS) -> dict[str, torch.Tensor]:
    """The light (`merge.warp.light_values`, each (N, T)) that best explains each clip's `effects` (N, 1, T, H, W)
    as the shadow of its `matte` (N, 1, T, H, W): Adam on each clip's `frame_error` from four starts (a lean to
    either side, a shadow behind the subject or towards the camera; neither crosses over in the descent), the best
    kept per clip. Deterministic (no random draw). Also "error" (N,), the fit's residual."""
    matte, effects = _reduced(matte.float()), 1 - _reduced((1 - effects.float()).clamp(0, 1))
    n, _, t = matte.shape[:3]
    best, best_error = None, None
    for lean, length in itertools.product((START_LEAN, -START_LEAN), START_LENGTHS):
        light = torch.zeros(n, len(LIGHT_CHANNELS), t)
        light[:, 0], light[:, 1], light[:, 2] = lean, length, START_DARK
        light.requires_grad_(True)
        optimizer = torch.optim.Adam([light], lr=FIT_RATE)
        for _ in range(steps):
            error = frame_error(light, matte, effects)
            optimizer.zero_grad(set_to_none=True)
            error.sum().backward()  # clips are independent: the sum's gradient is each clip's own
            optimizer.step()
        with torch.no_grad():
            error = frame_error(light, matte, effects)
        light = light.detach()
        if best is None:
            best, best_error = light, error
        else:
            better = error < best_error
            best = torch.where(better[:, None, None], light, best)
            best_error = torch.minimum(error, best_error)
    return {**light_values(_raw_map(best)[..., 0, 0]), "error": best_error}


def fit_clip_light(matte: torch.Tensor, effects: torch.Tensor) -> dict[str, torch.Tensor]:
    """`fit_light` on each clip's middle frame alone, each value (B, 1): what joint training regresses the reader's
    every frame onto (a clip's light holds still; fitting one frame of each of a step's clips costs a tenth of a
    second, all of them seconds)."""
    middle = matte.shape[2] // 2
    return fit_light(matte[:, :, middle:middle + 1], effects[:, :, middle:middle + 1])


def light_error(votes: torch.Tensor, fitted: dict[str, torch.Tensor]) -> torch.Tensor:
    """The reader's light votes (B, DRAWN_CHANNELS, t, 1, 1) against fitted lights (`fit_light`, each (B, t), or
    (B, 1) for the whole clip, `fit_clip_light`): squared errors of darkness and softness (each normalised by its
    range) and, where the fit shows a shadow (darkness > `NO_SHADOW`), of lean and length (by their limits). A
    scalar."""
    ours = light_values(votes[..., 0, 0].float())
    shown = (fitted["darkness"] > NO_SHADOW).float()
    spread = BLUR_RANGE[1] - BLUR_RANGE[0]
    direction = (((ours["shear"] - fitted["shear"]) / SHEAR_LIMIT).pow(2)
                 + ((ours["squash"] - fitted["squash"]) / SQUASH_LIMIT).pow(2))
    return ((direction * shown).mean() + ((ours["darkness"] - fitted["darkness"]) / DARK_MAX).pow(2).mean()
            + ((ours["blur"] - fitted["blur"]) / spread).pow(2).mean())


def scene_agreement(light: dict[str, torch.Tensor], scene) -> dict[str, float]:
    """How light values (`merge.warp.light_values`, each of any shape over frames) agree with a synthetic scene's
    light (`data.synthetic.SceneParams`): the fraction of frames whose lean and whose length direction fall the
    scene's way, and the mean darkness beside the scene's (for benchmarks/scene_reader.py and map_readout.py)."""
    return {"side_right": float((torch.sign(light["shear"]) == math.copysign(1.0, scene.shear)).float().mean()),
            "length_right": float((torch.sign(light["squash"]) == math.copysign(1.0, scene.squash)).float().mean()),
            "darkness": float(light["darkness"].mean()), "true_darkness": float(scene.darkness)}
