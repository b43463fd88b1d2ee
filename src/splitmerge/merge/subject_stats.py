"""The subject's colour statistics as a placement-free target for a warp Composer's colour map (issue 18: "its light
matched", and the subject kept).

Why: trained through the pixel error alone, the colour map meets the subject wherever the network placed it, and
while the placement is uncertain a washed-out subject costs least (a faithful subject in the wrong place is wrong
twice: over the background and where the truth is). Measured on the stop-39 model: every placed subject's
lightness contrast about halved (`eval.metrics.contrast_error`, README). Learning the colour on the true geometry
instead (`merge.appearance`) kept the contrast but learnt no colour (docs/training.md).

This error compares what does not depend on where the subject is: per frame and channel, the mean colour and the
log spread (standard deviation) of the moved subject's colour over its own solid pixels against those of the
truth's subject over its own. Washing out shows directly (half the spread: ln 2 per channel, squared), a tint in
the mean term; the pixel error still trains the map beside it. Its gradient reaches the colour and light channels
only (`merge.appearance.appearance_gradient_only`): the spread of a moved subject hardly depends on its place, and
the geometry has its own signals.

Shapes: layers (B, 3, T, H, W) premultiplied in [0, 1] (the truth's: colour in [0, 1] and its matte); mattes
(B, 1, T, H, W) in [0, 1]; statistics (B, 3, T).
"""

from __future__ import annotations

import torch

SOLID = 0.5            # pixels whose matte is above this are the subject's own (its soft edge mixes the scene in)
MIN_PIXELS = 8         # a frame's subject with fewer solid pixels gives no statistics
SPREAD_FLOOR = 0.02    # colour units ([0, 1]): a flat subject's spread counts as this much


def colour_statistics(colour: torch.Tensor, matte: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per frame and channel, (mean (B, 3, T), log spread (B, 3, T), present (B, T) bool) of the straight (not
    premultiplied) `colour` (B, 3, T, H, W) over the pixels where `matte` (B, 1, T, H, W) > `SOLID`; present where a
    frame has `MIN_PIXELS` of them (elsewhere the values are finite and meaningless)."""
    weights = (matte.detach() > SOLID).float()
    count = weights.sum(dim=(-2, -1))  # (B, 1, T)
    total = count.clamp(min=1.0)
    mean = (colour * weights).sum(dim=(-2, -1)) / total
    variance = ((colour - mean[..., None, None]).pow(2) * weights).sum(dim=(-2, -1)) / total
    log_spread = 0.5 * torch.log(variance + SPREAD_FLOOR ** 2)
    return mean, log_spread, count[:, 0] >= MIN_PIXELS


def straight(layer: torch.Tensor, matte: torch.Tensor) -> torch.Tensor:
    """The colour (B, 3, T, H, W) of a premultiplied `layer` under its `matte`, where the matte is solid (elsewhere
    it is not used by `colour_statistics`)."""
    return layer / matte.clamp(min=SOLID)


def statistics_error(layer: torch.Tensor, matte: torch.Tensor, truth: torch.Tensor, truth_alpha: torch.Tensor
                     ) -> torch.Tensor:
    """The moved subject's colour statistics against the truth's subject's: per frame and channel, the squared
    difference of the means (in [-1, 1] units, like the pixel error) plus that of the log spreads, averaged over
    channels and over the frames where both subjects are present (0 where none is). `layer` (B, 3, T, H, W)
    premultiplied in [0, 1] with `matte`; `truth` (B, 3, T, H, W) the target clip in [-1, 1] with its subject's
    `truth_alpha`. A scalar."""
    mean, spread, present = colour_statistics(straight(layer.float(), matte.float()), matte)
    true_mean, true_spread, true_present = colour_statistics((truth.float() + 1) / 2, truth_alpha.float())
    both = (present & true_present).float()  # (B, T)
    error = (4 * (mean - true_mean).pow(2) + (spread - true_spread).pow(2)).mean(dim=1)  # (B, T)
    return (error * both).sum() / both.sum().clamp(min=1.0)
