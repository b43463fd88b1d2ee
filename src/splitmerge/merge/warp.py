"""The ``warp`` output of a Composer: the subject layer as a *moved and re-tinted copy of the input layer*, so
the subject's identity (its pixels, shape and motion) is kept by construction and the model only decides where
the subject goes, how big it is, which way it faces and how its colour matches the scene.

The backbone gives `WARP_CHANNELS` values per latent cell. They are pooled per frame with softmax weights of
their own (every cell votes, the confident ones count most) into one inverse map per frame, in grid_sample's
normalised coordinates (x, y in [-1, 1] across the frame):

    x_in = m * k * x_out + b_x(m),   y_in = k * y_out + b_y,   m = +1 (as given) or -1 (mirrored)

with k = exp(log k) the inverse zoom, and per-channel colour gains and offsets applied to the premultiplied
layer: rgb' = g * rgb + o * a. The mirror is a clip-wide choice: both maps are warped and mixed with the flip
probability p (a soft mix keeps the choice trainable; `hard=True` picks one side, for sampling, where the
Composer chooses it once at the first step and holds it: `flip` replaces the pooled logit). A zero backbone
output is the identity: the layer as given, unmirrored (p = sigmoid(`FLIP_OFFSET`)), colours unchanged.

Shapes: raw (B, WARP_CHANNELS, t, h, w) with t the latent frames; layers (B, 3, T, H, W) premultiplied in
[0, 1]; mattes (B, 1, T, H, W) in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POOL, LOG_ZOOM, SHIFT_X, SHIFT_X_MIRRORED, SHIFT_Y, FLIP = range(6)
GAIN, OFFSET = slice(6, 9), slice(9, 12)
WARP_CHANNELS = 12
FLIP_OFFSET = -3.0        # the layer starts unmirrored (p = 0.05)
LOG_ZOOM_LIMIT = 0.7      # inverse zoom within 0.5-2.0 (the paper's crop areas reach 0.71-1.41)
LOG_GAIN_LIMIT = 0.7


def pool_parameters(raw: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame map parameters from per-cell votes.

    Args:
        raw: (B, WARP_CHANNELS, t, h, w) backbone output; `frames` T is a multiple of t (latent frames are
            repeated over the pixel frames they cover).
    Returns:
        (parameters (B, WARP_CHANNELS, T) pooled over each frame's cells, flip logit (B,) pooled over the clip).
    """
    raw = raw.float()
    b, c, t, h, w = raw.shape
    weights = torch.softmax(raw[:, POOL].reshape(b, t, h * w), dim=-1)  # (B, t, cells)
    pooled = torch.einsum("bctn,btn->bct", raw.reshape(b, c, t, h * w), weights)
    flip = pooled[:, FLIP].mean(dim=1) + FLIP_OFFSET
    return pooled.repeat_interleave(frames // t, dim=2), flip


def mirror_error(raw: torch.Tensor, transforms: list[dict], level: torch.Tensor) -> torch.Tensor:
    """The clip-wide mirror logit of `raw` (B, WARP_CHANNELS, t, h, w) against the flips training applied
    (`transforms`, one augmentation record per clip: the layer must be mirrored back when it was flipped):
    binary cross-entropy, each clip's weighted by its noise level `level` (B,) in [0, 1]. Sampling chooses the
    mirror at pure noise, from the inputs and caption alone; at low noise the draft shows the answer, so those
    levels teach little that sampling can use. A scalar."""
    flips = torch.tensor([float(bool(record.get("flip"))) for record in transforms], device=raw.device)
    logit = pool_parameters(raw, raw.shape[2])[1]
    error = F.binary_cross_entropy_with_logits(logit, flips, reduction="none")
    return (error * level.to(error)).mean()


def _grids(parameters: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(as given, mirrored) sampling grids, each (B * T, H, W, 2), from (B, WARP_CHANNELS, T) parameters."""
    b, _, t = parameters.shape
    zoom = torch.exp(LOG_ZOOM_LIMIT * torch.tanh(parameters[:, LOG_ZOOM] / LOG_ZOOM_LIMIT))
    zoom = zoom.reshape(b * t, 1, 1)
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height * 2 - 1
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width * 2 - 1
    y_out, x_out = torch.meshgrid(ys.to(parameters.device), xs.to(parameters.device), indexing="ij")
    y_in = zoom * y_out + parameters[:, SHIFT_Y].reshape(b * t, 1, 1)
    grids = []
    for mirror, shift in ((1.0, SHIFT_X), (-1.0, SHIFT_X_MIRRORED)):
        x_in = mirror * zoom * x_out + parameters[:, shift].reshape(b * t, 1, 1)
        grids.append(torch.stack([x_in, y_in], dim=-1))
    return grids[0], grids[1]


def warp_layer(raw: torch.Tensor, layer: torch.Tensor, alpha: torch.Tensor, hard: bool = False,
               flip: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Move and re-tint a premultiplied layer as the backbone output `raw` (B, WARP_CHANNELS, t, h, w) says:
    `apply_warp` of its `pool_parameters`; a given `flip` logit (B,) replaces the pooled one (sampling holds
    the mirror it chose at its first step)."""
    parameters, pooled = pool_parameters(raw, layer.shape[2])
    return apply_warp(parameters, pooled if flip is None else flip, layer, alpha, hard)


def apply_warp(parameters: torch.Tensor, flip: torch.Tensor, layer: torch.Tensor, alpha: torch.Tensor,
               hard: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Move and re-tint a premultiplied layer, at any resolution (the map is in normalised coordinates).

    Args:
        parameters: (B, WARP_CHANNELS, T) per-frame parameters; flip: (B,) the clip's mirror logit.
        layer: (B, 3, T, H, W) premultiplied colour in [0, 1]; alpha (B, 1, T, H, W).
        hard: take the likelier side instead of mixing the mirrored and unmirrored warps.
    Returns:
        (layer (B, 3, T, H, W) premultiplied in [0, 1], matte (B, 1, T, H, W)).
    """
    b, _, t, height, width = layer.shape
    pair = torch.cat([layer, alpha], dim=1).transpose(1, 2).reshape(b * t, 4, height, width).float()
    as_given, mirrored = _grids(parameters, height, width)
    if hard:  # one side only: the same pixels as mixing with p = 0 or 1, at half the cost
        chosen = (flip > 0).repeat_interleave(t).view(b * t, 1, 1, 1)
        moved = F.grid_sample(pair, torch.where(chosen, mirrored, as_given), mode="bilinear",
                              padding_mode="zeros", align_corners=False)
    else:
        p = torch.sigmoid(flip).repeat_interleave(t).view(b * t, 1, 1, 1)
        moved = sum(weight * F.grid_sample(pair, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
                    for weight, grid in ((1 - p, as_given), (p, mirrored)))
    moved = moved.reshape(b, t, 4, height, width).transpose(1, 2)
    colour, matte = moved[:, :3], moved[:, 3:].clamp(0, 1)
    gain = torch.exp(LOG_GAIN_LIMIT * torch.tanh(parameters[:, GAIN] / LOG_GAIN_LIMIT))  # (B, 3, T)
    offset = parameters[:, OFFSET]
    colour = gain[..., None, None] * colour + offset[..., None, None] * matte
    return torch.minimum(colour.clamp(min=0), matte), matte


def zero_output(backbone: torch.nn.Module) -> None:
    """Start a fresh backbone at the identity warp: its output projection all zeros."""
    projection = backbone.proj_out
    torch.nn.init.zeros_(projection.weight)
    if projection.bias is not None:
        torch.nn.init.zeros_(projection.bias)
