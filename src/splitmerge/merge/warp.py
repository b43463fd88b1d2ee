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

A drawn Composer (`DRAWN_CHANNELS` outputs) also draws what a moved copy cannot, from six more clip-wide values
pooled the same way:
- its **cast shadow** (the effects layer): the moved matte projected onto the ground from its feet by a distant
  light, ``x' = x + shear (fy - y)``, ``y' = fy - squash (fy - y)`` (`data.shadows`), blurred and darkened;
  the network decides shear, squash (the light's direction and height), darkness and softness from the scene
  (`cast_shadow`, `effects_gain`: the gain over the background, 1 - darkness);
- its **relighting**: a log-gain ramp across the moved subject's box (its lit side; `relight_gain`).
The shadow follows the subject wherever the warp puts it and is drawn from its matte at any resolution. (A
per-cell darkness map was tried first: with the subject's place uncertain it learnt one faint darkening of the
whole ground, docs/training.md.)

Shapes: raw (B, WARP_CHANNELS or DRAWN_CHANNELS, t, h, w) with t the latent frames; layers (B, 3, T, H, W)
premultiplied in [0, 1]; mattes (B, 1, T, H, W) in [0, 1].
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..video.homography import apply_homography, local_similarity

POOL, LOG_ZOOM, SHIFT_X, SHIFT_X_MIRRORED, SHIFT_Y, FLIP = range(6)
GAIN, OFFSET = slice(6, 9), slice(9, 12)
WARP_CHANNELS = 12
SHADOW_SHEAR, SHADOW_SQUASH, SHADOW_DARK, SHADOW_BLUR, LIGHT_X, LIGHT_Y = range(12, 18)
DRAWN_CHANNELS = 18
SHEAR_LIMIT, SQUASH_LIMIT = 1.5, 0.6   # shadow lean and length per px of the subject's height
MIN_SQUASH = 0.05         # the projection's inverse divides by sign(squash) sqrt(squash^2 + MIN_SQUASH^2)
SQUASH_OFFSET = 0.5       # a fresh shadow falls behind the subject (squash 0.28): away from 0, it can learn to turn
EFFECTS_OFFSET = -4.0     # the shadow starts near empty: darkness DARK_MAX * sigmoid(-4) = 0.016
DARK_MAX = 0.9            # the darkest shadow keeps a tenth of the light
DARK_FLOOR = 0.02         # sampled darkness below this is exactly 0: the background there is exact
BLUR_RANGE = (0.005, 0.05)  # the shadow's Gaussian softness, in frame heights
LOG_RELIGHT_LIMIT = 0.4   # the relighting ramp's gain stays within exp(+-0.4) at the subject's edges
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


def log_zoom(parameters: torch.Tensor) -> torch.Tensor:
    """The map's log-zoom (..., T) from its parameters (..., WARP_CHANNELS or more, T), within +-LOG_ZOOM_LIMIT."""
    return LOG_ZOOM_LIMIT * torch.tanh(parameters[..., LOG_ZOOM, :] / LOG_ZOOM_LIMIT)


def _grids(parameters: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(as given, mirrored) sampling grids, each (B * T, H, W, 2), from (B, WARP_CHANNELS, T) parameters."""
    b, _, t = parameters.shape
    zoom = torch.exp(log_zoom(parameters)).reshape(b * t, 1, 1)
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


def light_values(parameters: torch.Tensor) -> dict[str, torch.Tensor]:
    """A drawn Composer's per-frame shadow and light from its pooled map parameters (B, DRAWN_CHANNELS, T), each
    (B, T): {"shear", "squash", "darkness" in [0, DARK_MAX], "blur" (frame heights), "light_x", "light_y"
    (log-gains)}."""
    return {"shear": SHEAR_LIMIT * torch.tanh(parameters[:, SHADOW_SHEAR]),
            "squash": SQUASH_LIMIT * torch.tanh(parameters[:, SHADOW_SQUASH] + SQUASH_OFFSET),
            "darkness": DARK_MAX * torch.sigmoid(parameters[:, SHADOW_DARK] + EFFECTS_OFFSET),
            "blur": BLUR_RANGE[0] + (BLUR_RANGE[1] - BLUR_RANGE[0]) * torch.sigmoid(parameters[:, SHADOW_BLUR]),
            "light_x": LOG_RELIGHT_LIMIT * torch.tanh(parameters[:, LIGHT_X]),
            "light_y": LOG_RELIGHT_LIMIT * torch.tanh(parameters[:, LIGHT_Y])}


def drawn_values(raw: torch.Tensor, frames: int) -> dict[str, torch.Tensor]:
    """`light_values` of a drawn raw output (B, DRAWN_CHANNELS, t, h, w), per frame of `frames`, (B, frames)."""
    return light_values(pool_parameters(raw, frames)[0])


def _feet_rows(matte: torch.Tensor) -> torch.Tensor:
    """(B, T) the lowest row (px) where each frame's matte (B, 1, T, H, W) exceeds 0.5; -1 where it never does."""
    rows = torch.arange(matte.shape[-2], device=matte.device, dtype=torch.float32)
    present = (matte[:, 0] > 0.5).any(dim=-1)  # (B, T, H)
    return torch.where(present, rows, torch.full_like(rows, -1.0)).amax(dim=-1)


def _gaussian_blur(maps: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur (N, 1, H, W) maps by a Gaussian of `sigma` (N,) px each, separably (differentiable in sigma). The
    kernel reaches 3 of the largest sigma the light allows (`BLUR_RANGE`), whatever the batch: a frame blurs
    the same alone or with others (streamed and in-memory results agree)."""
    radius = max(1, math.ceil(3 * BLUR_RANGE[1] * maps.shape[-2]))
    offsets = torch.arange(-radius, radius + 1, device=maps.device, dtype=torch.float32)
    kernels = torch.exp(-0.5 * (offsets[None] / sigma[:, None].clamp(min=0.3)) ** 2)
    kernels = kernels / kernels.sum(dim=1, keepdim=True)  # (N, K)
    n, _, h, w = maps.shape
    flat = maps.reshape(1, n, h, w)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius)), kernels[:, None, :, None], groups=n)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0)), kernels[:, None, None, :], groups=n)
    return flat.reshape(n, 1, h, w)


def cast_shadow(matte: torch.Tensor, values: dict[str, torch.Tensor]) -> torch.Tensor:
    """The darkness (B, 1, T, H, W) in [0, DARK_MAX] that a subject with matte (B, 1, T, H, W) casts on the
    ground under the per-frame light `values` (`light_values`, each (B, T)): each frame's matte projected from
    its feet (its lowest row) along the light (module docstring), blurred, times the darkness. Nothing where a
    frame has no subject."""
    b, _, t, h, w = matte.shape
    per_frame = {name: value.reshape(b * t, 1, 1) for name, value in values.items()}
    feet = _feet_rows(matte.detach()).reshape(b * t, 1, 1)
    squash = per_frame["squash"]
    squash = torch.where(squash < 0, -1.0, 1.0) * torch.sqrt(squash ** 2 + MIN_SQUASH ** 2)
    ys = torch.arange(h, device=matte.device, dtype=torch.float32).reshape(1, h, 1)
    xs = torch.arange(w, device=matte.device, dtype=torch.float32).reshape(1, 1, w)
    height_above = (feet - ys) / squash  # how high above the feet the point casting onto (x', y') is
    source_y = (feet - height_above).expand(-1, h, w)
    source_x = xs - per_frame["shear"] * height_above
    grid = torch.stack([(source_x + 0.5) / w * 2 - 1, (source_y + 0.5) / h * 2 - 1], dim=-1)
    frames = matte.float().transpose(1, 2).reshape(b * t, 1, h, w)
    cast = F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    cast = cast * ((height_above >= 0) & (feet >= 0)).float()[:, None]  # only what stands above its feet
    cast = _gaussian_blur(cast, per_frame["blur"].reshape(-1) * h).clamp(0, 1)
    darkness = per_frame["darkness"].reshape(b * t, 1, 1, 1) * cast
    return darkness.reshape(b, t, 1, h, w).transpose(1, 2)


def effects_gain(matte: torch.Tensor, values: dict[str, torch.Tensor], floor: bool = False) -> torch.Tensor:
    """The gain (B, 1, T, H, W) the subject's cast shadow puts on the background, 1 - `cast_shadow`. With `floor`
    (sampling), darkness below `DARK_FLOOR` is 0, so the background is exact where no shadow falls."""
    darkness = cast_shadow(matte, values)
    if floor:
        darkness = torch.where(darkness < DARK_FLOOR, torch.zeros_like(darkness), darkness)
    return 1 - darkness


def relight_gain(matte: torch.Tensor, values: dict[str, torch.Tensor]) -> torch.Tensor:
    """The subject's relighting, (B, 1, T, H, W): exp(light_x u + light_y v) per frame, with (u, v) running from
    -1 to 1 across the frame's box of the matte (B, 1, T, H, W) > 0.5 (1 where a frame has no subject): one
    side lit, the other in shade."""
    b, _, t, h, w = matte.shape
    solid = matte.detach()[:, 0] > 0.5  # (B, T, H, W)
    log_gain = torch.zeros(b, t, h, w, device=matte.device)
    for name, size, reduced, shape in (("light_x", w, -2, (b, t, 1, w)), ("light_y", h, -1, (b, t, h, 1))):
        present = solid.any(dim=reduced)  # (B, T, size)
        index = torch.arange(size, device=matte.device, dtype=torch.float32)
        first = torch.where(present, index, torch.full_like(index, float(size))).amin(dim=-1, keepdim=True)
        last = torch.where(present, index, torch.full_like(index, -1.0)).amax(dim=-1, keepdim=True)
        across = ((index - (first + last) / 2) / ((last - first) / 2).clamp(min=1)).clamp(-1, 1)
        across = across * (last >= first).float()  # (B, T, size)
        log_gain = log_gain + values[name].reshape(b, t, 1, 1) * across.reshape(shape)
    return torch.exp(log_gain)[:, None]


def placement_error(matte: torch.Tensor, truth: torch.Tensor, scales=(4, 8, 16)) -> torch.Tensor:
    """Mean squared difference of two mattes (B, 1, T, H, W), each box-blurred per frame at each scale (kernel k,
    stride k / 2), averaged over the scales: a scalar that still falls as a matte moves towards the truth when
    the two do not overlap (a plain pixel error has no gradient then). The mean of `blurred_difference`."""
    return blurred_difference(matte, truth, scales).mean()


def blurred_difference(matte: torch.Tensor, truth: torch.Tensor, scales=(4, 8, 16)) -> torch.Tensor:
    """`placement_error` per clip, (B,)."""
    total = matte.new_zeros(matte.shape[0])
    for k in scales:
        kernel, stride = (1, k, k), (1, max(k // 2, 1), max(k // 2, 1))
        total = total + (F.avg_pool3d(matte.float(), kernel, stride, ceil_mode=True)
                         - F.avg_pool3d(truth.float(), kernel, stride, ceil_mode=True)).pow(2).flatten(1).mean(1)
    return total / len(scales)


def shadow_error(raw: torch.Tensor, alpha_target: torch.Tensor, effects: torch.Tensor) -> torch.Tensor:
    """The drawn shadow against the true effects `effects` (B, 1, T, H, W) (gains, 1 = untouched): the shadow the
    *true* matte `alpha_target` would cast under the drawn light (`cast_shadow`) against the true darkness
    (1 - gain), compared blurred at three scales (`placement_error`: a shadow falling the wrong way still learns
    which way to turn), x 100 (shadows are a small part of the frame). Judged on the true matte, the light is
    learnt apart from the placement. A scalar: the mean of `shadow_errors`."""
    return shadow_errors(raw, alpha_target, effects).mean()


def shadow_errors(raw: torch.Tensor, alpha_target: torch.Tensor, effects: torch.Tensor) -> torch.Tensor:
    """`shadow_error` per clip, (B,)."""
    drawn = cast_shadow(alpha_target.float(), drawn_values(raw, alpha_target.shape[2]))
    return 100 * blurred_difference(drawn, (1 - effects.float()).clamp(0, 1))


def inverse_targets(transforms: list[dict], height: int, width: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The exact inverse of each clip's augmentation (`video.transforms.apply_params`: flip, then the resized
    crop x' = s (x - c) + c + d) as the map this module applies: u_in = m k u_out + b, in grid_sample's
    normalised coordinates. Returns (log k (B,), b_x (B,), b_y (B,), flipped (B,) bool); the colour jitter
    has no exact gain-and-offset inverse and is left out."""
    zooms, shift_x, shift_y, flipped = [], [], [], []
    for record in transforms:
        crop = record.get("crop") or {"scale": 1.0, "center": [0.0, 0.0], "shift": [0.0, 0.0]}
        s = float(crop["scale"])
        (cx, cy), (dx, dy) = crop["center"], crop["shift"]
        zooms.append(math.log(s))
        shift_x.append(s - 1 + 2 / width * ((1 - s) * (cx + 0.5) + dx))
        shift_y.append(s - 1 + 2 / height * ((1 - s) * (cy + 0.5) + dy))
        flipped.append(bool(record.get("flip")))
    as_tensor = lambda values: torch.tensor(values, dtype=torch.float32)  # noqa: E731
    return as_tensor(zooms), as_tensor(shift_x), as_tensor(shift_y), torch.tensor(flipped)


def inverse_error(raw: torch.Tensor, transforms: list[dict], height: int, width: int,
                  targets: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
    """Squared error of the pooled per-frame map (zoom in log, shifts in normalised units; the shift of the side
    the truth needs: mirrored for a flipped input) against the augmentation's exact inverse (`inverse_targets`,
    computed unless `targets` gives it). The augmentation is known for every training sample: this regresses it
    directly. A scalar."""
    parameters, _ = pool_parameters(raw, raw.shape[2])  # (B, C, t)
    targets = targets if targets is not None else inverse_targets(transforms, height, width)
    true_zoom, shift_x, shift_y, flipped = (value.to(raw.device) for value in targets)
    zoom = log_zoom(parameters)
    side = torch.where(flipped[:, None], parameters[:, SHIFT_X_MIRRORED], parameters[:, SHIFT_X])
    return ((zoom - true_zoom[:, None]).pow(2) + (side - shift_x[:, None]).pow(2)
            + (parameters[:, SHIFT_Y] - shift_y[:, None]).pow(2)).mean()


def zero_output(backbone: torch.nn.Module) -> None:
    """Start a fresh backbone at the identity warp: its output projection all zeros."""
    projection = backbone.proj_out
    torch.nn.init.zeros_(projection.weight)
    if projection.bias is not None:
        torch.nn.init.zeros_(projection.bias)


def _normalised(points, size: tuple[int, int]) -> np.ndarray:
    """Pixel (x, y) -> grid_sample's normalised coordinates (align_corners=False) in a (H, W) frame."""
    return (2 * np.asarray(points, np.float64) + 1) / np.array([size[1], size[0]]) - 1


def _pixels(points, size: tuple[int, int]) -> np.ndarray:
    """Inverse of `_normalised`."""
    return ((np.asarray(points, np.float64) + 1) * np.array([size[1], size[0]]) - 1) / 2


def hold_on_world(parameters: torch.Tensor, camera: np.ndarray, targets: np.ndarray, size: tuple[int, int],
                  mirrored: bool = False) -> tuple[torch.Tensor, np.ndarray | None]:
    """A clip's map (WARP_CHANNELS or more, T) made to place the subject where it placed it in the first frame and
    let the background's camera carry it (``anchor="world"`` with ``placement="model"``).

    Every frame takes the first frame's zoom, and its shifts are set so the map is the first frame's, conjugated by
    the camera's local similarity at the subject's anchor (`video.homography.local_similarity`): the moved subject
    lands where the first frame put it, carried. Colours, light and shadow stay per frame. A mirror does not
    commute with a camera's roll (the grid can only mirror about the frame's vertical axis), so a `mirrored` map
    becomes its unmirrored part plus `reflections`: per frame the (3, 3) pixel map that mirrors the already
    carried layer about the carried axis, to apply to the layer first (`render_warp`).

    Args:
        parameters: the sampled map; camera: (T, 3, 3) the background's first frame -> frame t, pixels of `size`
            (H, W); targets: (T, 2) px where the placement put the subject's anchor, first-frame coordinates (the
            layer the map moves is already carried there); mirrored: whether the mirrored side is taken.
    Returns:
        (the held map, to be rendered unmirrored when `mirrored`; the reflections (T, 3, 3) or None).
    """
    values = parameters.detach().double().cpu().numpy().copy()
    zoom = float(np.exp(log_zoom(torch.from_numpy(values[:, :1])).item()))
    width = size[1]
    # grid: n_in = scale * n_out + shift. Mirrored: n_out = (n_in - b) / (-k) = U(-n_in), U unmirrored with -b.
    first = np.array([-values[SHIFT_X_MIRRORED, 0] if mirrored else values[SHIFT_X, 0], values[SHIFT_Y, 0]])
    values[LOG_ZOOM] = values[LOG_ZOOM, 0]
    centre = np.array([(size[1] - 1) / 2, (size[0] - 1) / 2])
    reflections = np.empty((values.shape[1], 3, 3)) if mirrored else None
    mirror = np.array([[-1.0, 0, width - 1], [0, 1, 0], [0, 0, 1]])   # pixels about the frame's vertical axis
    for t in range(values.shape[1]):
        carry = local_similarity(camera[t], targets[t])
        anchor = apply_homography(carry, targets[t])                          # where the carried anchor is
        lands = apply_homography(carry, _pixels((_normalised(targets[t], size) - first) / zoom, size))
        values[SHIFT_X, t], values[SHIFT_Y, t] = _normalised(zoom * (centre - lands) + anchor, size)
        if mirrored:
            reflections[t] = carry @ mirror @ np.linalg.inv(carry)
    return torch.from_numpy(values).to(parameters.dtype), reflections
