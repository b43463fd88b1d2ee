"""The ground's depth law as a training signal for a warp map's size and height (issue 18: "size by depth").

In a scene whose subjects stand on a flat ground, a subject's height follows where its feet are: height = K *
(feet y - horizon y), K the subject's height per unit of depth below the horizon (zero at the horizon, largest at
the bottom of the frame). The synthetic scenes (`data.synthetic`) are built on that law and know (horizon, K);
`eval.metrics.depth_scale_error` scores a placed subject by it.

Why a loss of its own: the augmentation's exact inverse (`merge.warp.inverse_error`) pins the zoom and vertical
shift only up to where the random crop's box lay, which nothing in the inputs shows; what the inputs do determine
is a line of (zoom, shift) pairs that put the subject at a size its feet allow. Regressed onto the inverse alone,
the reader read little of it (log-zoom RMSE 0.16 against the identity's 0.20, its map's depth-scale error x0.91
copy-paste's; docs/training.md). This error scores the map where the law is known: the subject's input extent
(top and feet rows of its matte) moved by the map, against the law. Clips without a known ground (real footage)
add nothing.

Coordinates are grid_sample's normalised ones (align_corners False: pixel row r's centre at (2 r + 1) / H - 1),
in which the map is y_in = k y_out + b_y (`merge.warp._grids`). K is a ratio of lengths: the same in pixels and
normalised units.

Shapes: alpha (B, 1, T, H, W); extent (B, T, 2) = (top, feet) edges, NaN in frames without a subject; ground
(B, 2) = (horizon, K), NaN for clips without one (training samples' ``ground``,
`data.torch_dataset.scene_ground`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .warp import SHIFT_Y, log_zoom

MIN_DEPTH = 0.02   # normalised units below the horizon where the law's expected height is floored
HUBER = 0.05       # the log-size residual's Huber width (ln units)


def matte_extent(alpha: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, H, W) matte -> (B, T, 2): the top edge and the feet (bottom edge) of its rows with alpha > 0.5,
    normalised (as `depth_scale_error` measures the subject: height = rows, feet = the last row's bottom edge);
    NaN in frames without a subject."""
    b, _, t, height, _ = alpha.shape
    rows = (alpha[:, 0] > 0.5).any(dim=-1)                       # (B, T, H)
    index = torch.arange(height, device=alpha.device).expand_as(rows)
    present = rows.any(dim=-1)
    top = torch.where(rows, index, height).amin(dim=-1).float()   # first row
    bottom = torch.where(rows, index, -1).amax(dim=-1).float()    # last row
    extent = torch.stack([2 * top / height - 1, 2 * (bottom + 1) / height - 1], dim=-1)
    return torch.where(present[..., None], extent, torch.full_like(extent, float("nan")))


def depth_law_error(parameters: torch.Tensor, extent: torch.Tensor, ground: torch.Tensor) -> torch.Tensor:
    """How far the map `parameters` (B, C, T) puts each subject from the size its feet allow: per frame the
    input extent moved by the map (top and feet y_out = (y_in - b_y) / k), the log of its height against the
    law's K * (feet - horizon) (floored at MIN_DEPTH below the horizon), Huber'd (divided by its width:
    |r| - HUBER / 2 beyond it, in ln units like the metric); the mean over frames with a
    subject of clips with a ground (0 when there are none). A scalar."""
    zoom = torch.exp(log_zoom(parameters.float()))                # (B, T)
    shift = parameters[:, SHIFT_Y].float()
    extent, ground = extent.to(zoom), ground.to(zoom)
    valid = torch.isfinite(extent).all(dim=-1) & torch.isfinite(ground).all(dim=-1, keepdim=True)  # (B, T)
    if not bool(valid.any()):
        return zoom.sum() * 0
    # NaNs replaced before any arithmetic: a NaN times a zero gradient is still NaN in the backward pass
    extent, ground = torch.nan_to_num(extent), torch.nan_to_num(ground, nan=1.0)
    top, feet = ((extent[..., i] - shift) / zoom for i in (0, 1))
    horizon, per_depth = ground[:, :1], ground[:, 1:]
    expected = per_depth * torch.clamp(feet - horizon, min=MIN_DEPTH)
    residual = torch.log(torch.clamp(feet - top, min=1e-4)) - torch.log(expected)
    return F.huber_loss(residual[valid], torch.zeros_like(residual[valid]), delta=HUBER) / HUBER
