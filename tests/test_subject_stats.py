"""The subject's colour statistics as a placement-free target (merge/subject_stats.py): what the error sees, the
hedge the pixel error learns on a misplaced subject, and the statistics undoing it."""

from __future__ import annotations

import math

import torch

from splitmerge.merge.subject_stats import statistics_error
from splitmerge.merge.warp import GAIN, LOG_GAIN_LIMIT, OFFSET, SHIFT_X, WARP_CHANNELS, apply_warp

HEIGHT, WIDTH, FRAMES = 32, 48, 2


def textured_subject(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(colour (1, 3, T, H, W) in [0, 1], a random texture about mid-grey; matte (1, 1, T, H, W): a 12x10 box)."""
    g = torch.Generator().manual_seed(seed)
    colour = (0.5 + 0.35 * (2 * torch.rand(1, 3, 1, HEIGHT, WIDTH, generator=g) - 1)).expand(-1, -1, FRAMES, -1, -1)
    alpha = torch.zeros(1, 1, FRAMES, HEIGHT, WIDTH)
    alpha[..., 10:22, 14:24] = 1
    return colour, alpha


def test_the_error_vanishes_for_the_subject_moved_and_sees_halved_contrast_and_a_tint():
    colour, alpha = textured_subject()
    truth = (colour * alpha) * 2 - 1  # the clip over a black scene, in [-1, 1]
    shifted_colour, shifted_alpha = colour.roll(15, dims=-1), alpha.roll(15, dims=-1)
    assert statistics_error(shifted_colour * shifted_alpha, shifted_alpha, truth, alpha).item() < 1e-8
    washed = ((colour - 0.5) * 0.5 + 0.5) * alpha  # (ln 2 squared, a little less for the spread's floor)
    assert math.isclose(statistics_error(washed, alpha, truth, alpha).item(), math.log(2) ** 2, rel_tol=0.05)
    tinted = (colour + 0.1).clamp(0, 1) * alpha
    assert math.isclose(statistics_error(tinted, alpha, truth, alpha).item(), 4 * 0.1 ** 2, rel_tol=0.1)
    # a frame without the subject in the result adds nothing (and no NaN)
    missing = alpha.clone()
    missing[:, :, 1] = 0
    assert statistics_error(colour * missing, missing, truth, alpha).item() < 1e-8


def fitted_colour_map(statistics_weight: float, steps: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """Gains and offsets (3,) of a colour map fitted by Adam on a subject whose place is fixed 6 px off the truth's,
    over a textured scene: the pixel error of the composite over the frame, plus `statistics_weight` x
    `statistics_error`."""
    colour, alpha = textured_subject(0)
    scene = textured_subject(1)[0].roll(7, dims=-2)
    truth = (alpha * colour + (1 - alpha) * scene) * 2 - 1
    parameters = torch.zeros(1, WARP_CHANNELS, FRAMES)
    parameters[:, SHIFT_X] = 2 * 6 / WIDTH  # x_in = x_out + b: the layer lands 6 px to the left of the truth
    colour_map = torch.zeros(6, requires_grad=True)
    optimizer = torch.optim.Adam([colour_map], lr=0.02)
    for _ in range(steps):
        current = parameters.clone()
        current[:, GAIN] = colour_map[:3, None]
        current[:, OFFSET] = colour_map[3:, None]
        layer, matte = apply_warp(current, torch.tensor([-30.0]), colour * alpha, alpha, hard=True)
        picture = (layer + (1 - matte) * scene) * 2 - 1
        loss = (picture - truth).pow(2).mean() + statistics_weight * statistics_error(layer, matte, truth, alpha)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    gain = torch.exp(LOG_GAIN_LIMIT * torch.tanh(colour_map[:3] / LOG_GAIN_LIMIT)).detach()
    return gain, colour_map[3:].detach()


def test_the_pixel_error_washes_a_misplaced_subject_out_and_the_statistics_keep_it():
    """The hedge (docs/training.md): the pixel error alone drives a misplaced subject's gains to their floor (0.50,
    half the contrast) with offsets towards the scene's mean; with the statistics beside it at weight 1 the gains
    stay near 1 and the offsets near 0 (deterministic: Adam on six numbers; gains 0.50 / 0.98-1.01 here)."""
    gain, offset = fitted_colour_map(0.0)
    assert float(gain.max()) < 0.6 and float(offset.min()) > 0.15
    gain, offset = fitted_colour_map(1.0)
    assert 0.9 < float(gain.min()) and float(gain.max()) < 1.1 and float(offset.abs().max()) < 0.06
