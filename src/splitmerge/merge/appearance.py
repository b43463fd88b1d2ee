"""Appearance learnt on the true geometry: a warp Composer's colour map, relighting and cast shadow trained where
the subject really is, apart from where the network put it.

Why: trained through the pixel (x0) error alone, a colour map meets the subject where the network placed it;
while the placement is uncertain, a pixel error is lowest for a subject of low contrast shifted towards the
scenes' mean light (a misplaced, faithful subject is wrong twice: over the background and where the truth is).
Measured (stop 32, README): the stop-31 model gave every input, synthetic or real, gains 0.50-0.56 and offsets
+0.08..+0.23: it halved every subject's contrast, and a fixed tint of that kind alone earned most of its colour
gain over copy-paste. Shadows faded the same way: a dark shadow in the wrong place costs more than a faint one.

So with `appearance_weight` > 0 the pixel error trains the geometry only (`geometry_gradient_only` stops its
gradient into the appearance channels), and the appearance channels learn from errors on the true geometry:
- the colour map and relighting (`appearance_error`): the *input* layer moved back by the augmentation's exact
  inverse (known for every training sample: `warp.inverse_targets`) and re-tinted and relit as the network
  says, against the truth's subject pixels; the best answer is the inverse of the colour change itself;
- the shadow: `warp.shadow_error` already casts it from the true matte.
Sampling is unchanged: the map's colour and light are applied wherever the map's geometry puts the subject.
Measured worse at equal steps (colour, light and ring errors, each beyond its interval; docs/training.md), so the
presets leave `appearance_weight` at 0.

Shapes: raw (B, C, t, h, w) backbone output with C = WARP_CHANNELS or DRAWN_CHANNELS; layers (B, 3, T, H, W)
premultiplied in [0, 1]; mattes (B, 1, T, H, W) in [0, 1].
"""

from __future__ import annotations

import torch

from .warp import (FLIP, LOG_ZOOM, LOG_ZOOM_LIMIT, POOL, SHIFT_X, SHIFT_X_MIRRORED, SHIFT_Y,
                   apply_warp, inverse_targets, light_values, pool_parameters, relight_gain)

GEOMETRY_CHANNELS = (POOL, LOG_ZOOM, SHIFT_X, SHIFT_X_MIRRORED, SHIFT_Y, FLIP)
SURE = 30.0  # a mirror logit that picks its side for certain


def _gradient_only_where(raw: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """`raw` (B, C, t, h, w) unchanged in value, its gradient stopped at every channel where `keep` (C,) is False."""
    return torch.where(keep.view(1, -1, 1, 1, 1), raw, raw.detach())


def _geometry_mask(raw: torch.Tensor) -> torch.Tensor:
    """(C,) bool: True at the geometry's channels (`GEOMETRY_CHANNELS`) of `raw` (B, C, t, h, w)."""
    mask = torch.zeros(raw.shape[1], dtype=torch.bool, device=raw.device)
    mask[list(GEOMETRY_CHANNELS)] = True
    return mask


def geometry_gradient_only(raw: torch.Tensor) -> torch.Tensor:
    """`raw` (B, C, t, h, w) unchanged in value, with the gradient of whatever uses it stopped at every channel but
    the geometry's (`GEOMETRY_CHANNELS`: pool weights, zoom, shifts, mirror)."""
    return _gradient_only_where(raw, _geometry_mask(raw))


def appearance_gradient_only(raw: torch.Tensor) -> torch.Tensor:
    """`raw` (B, C, t, h, w) unchanged in value, with the gradient of whatever uses it stopped at the geometry's
    channels (`GEOMETRY_CHANNELS`): the complement of `geometry_gradient_only`."""
    return _gradient_only_where(raw, ~_geometry_mask(raw))


def true_geometry(parameters: torch.Tensor, transforms: list[dict], height: int, width: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled map parameters (B, C, T) with their geometry replaced by the augmentation's exact inverse
    (`warp.inverse_targets`; colour and light kept), and the mirror logit (B,) that picks the true side."""
    log_zoom, shift_x, shift_y, flipped = (value.to(parameters.device) for value in
                                           inverse_targets(transforms, height, width))
    exact = parameters.clone()
    ratio = (log_zoom / LOG_ZOOM_LIMIT).clamp(-1 + 1e-6, 1 - 1e-6)
    exact[:, LOG_ZOOM] = (LOG_ZOOM_LIMIT * torch.atanh(ratio))[:, None]  # warp applies LIMIT tanh(p / LIMIT)
    exact[:, SHIFT_X] = shift_x[:, None]
    exact[:, SHIFT_X_MIRRORED] = shift_x[:, None]
    exact[:, SHIFT_Y] = shift_y[:, None]
    flip = torch.where(flipped, SURE, -SURE).to(parameters)
    return exact, flip


def aligned_subject(raw: torch.Tensor, foreground: torch.Tensor, alpha: torch.Tensor, transforms: list[dict],
                    relight: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The input layer `foreground` (premultiplied, [0, 1]) with matte `alpha` moved back to where the truth has
    it by the exact inverse, re-tinted (and with `relight` relit) by the map `raw` says. Returns (layer, matte)."""
    parameters, _ = pool_parameters(raw, foreground.shape[2])
    exact, flip = true_geometry(parameters, transforms, *foreground.shape[-2:])
    layer, matte = apply_warp(exact, flip, foreground, alpha, hard=True)
    if relight:
        layer = torch.minimum(layer * relight_gain(matte, light_values(parameters)), matte)
    return layer, matte


def appearance_error(raw: torch.Tensor, foreground: torch.Tensor, alpha: torch.Tensor, transforms: list[dict],
                     video: torch.Tensor, alpha_target: torch.Tensor, relight: bool = False) -> torch.Tensor:
    """The colour map's (and relighting's) error on the true geometry: `aligned_subject` against the truth's
    subject, premultiplied (`video` (B, 3, T, H, W) the target clip in [-1, 1], times its matte `alpha_target`),
    in [-1, 1] units like the pixel error, averaged over the pixels where both mattes are (weights: their
    product; what the crop cut off the input is left out). A scalar."""
    layer, matte = aligned_subject(raw, foreground, alpha, transforms, relight)
    truth_alpha = alpha_target.float()
    truth = (video.float() + 1) / 2 * truth_alpha
    weight = matte.detach() * truth_alpha
    error = (2 * (layer - truth)).pow(2).sum(dim=1, keepdim=True) / 3
    return (error * weight).sum() / weight.sum().clamp(min=1.0)

