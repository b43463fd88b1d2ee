"""The ground's depth law as a training signal (merge/depth_law.py): the matte's extent, the error of a map against
the law, its agreement with the depth-scale metric, and the samples' ground."""

from __future__ import annotations

import math

import numpy as np
import torch

from splitmerge.data.synthetic import render_scene
from splitmerge.data.torch_dataset import SceneDataset, scene_ground
from splitmerge.eval.metrics import depth_scale_error
from splitmerge.merge.depth_law import HUBER, depth_law_error, matte_extent
from splitmerge.merge.warp import LOG_ZOOM, LOG_ZOOM_LIMIT, SHIFT_Y, WARP_CHANNELS, apply_warp


def standing_box(top: int, bottom: int, height: int = 64, width: int = 96) -> torch.Tensor:
    """(1, 1, 1, H, W): a matte of rows top..bottom (inclusive), columns 40..55."""
    alpha = torch.zeros(1, 1, 1, height, width)
    alpha[..., top:bottom + 1, 40:56] = 1
    return alpha


def zoom_parameter(zoom: float) -> float:
    """The LOG_ZOOM value whose zoom (`merge.warp.log_zoom`, tanh-limited) is `zoom`."""
    return LOG_ZOOM_LIMIT * math.atanh(math.log(zoom) / LOG_ZOOM_LIMIT)


def moved(parameters: torch.Tensor, alpha: torch.Tensor) -> np.ndarray:
    """The matte (T, H, W) the map `parameters` (1, C, T) moves `alpha` to."""
    _, matte = apply_warp(parameters, torch.tensor([-10.0]), alpha.expand(1, 3, -1, -1, -1).clone(), alpha,
                          hard=True)
    return matte[0, 0].numpy()


def test_the_extent_is_the_mattes_top_and_feet_edges_in_normalised_rows():
    alpha = torch.cat([standing_box(10, 29), torch.zeros(1, 1, 1, 64, 96)], dim=2)
    extent = matte_extent(alpha)
    assert extent.shape == (1, 2, 2)
    assert torch.allclose(extent[0, 0], torch.tensor([2 * 10 / 64 - 1, 2 * 30 / 64 - 1]))
    assert torch.isnan(extent[0, 1]).all()  # a frame without a subject


def test_the_error_is_the_metrics_law_and_vanishes_where_the_size_fits_the_feet():
    """A 10-row subject with its feet on row 49 under a horizon at row 39.5 fits K = 1 (pixel-centre rows, as
    `depth_scale_error` measures): the identity map's error is 0; a ground that wants it twice as big gives the
    Huber'd |ln 2| (ln units, like the metric); a map that doubles it about its feet fits that ground again, and
    the metric agrees on the moved matte. Clips without a ground (NaN) and frames without a subject add 0 and no
    NaN gradient."""
    alpha = standing_box(40, 49)
    horizon_px, per_depth = 39.5, 1.0     # feet edge at 49.5: expected 1 * 10 = 10 rows
    ground = torch.tensor([[2 * (horizon_px + 0.5) / 64 - 1, per_depth]])
    identity = torch.zeros(1, WARP_CHANNELS, 1, requires_grad=True)
    assert depth_law_error(identity, matte_extent(alpha), ground).item() < 1e-6
    assert depth_scale_error(alpha[0, 0].numpy(), horizon_px, per_depth) < 1e-6
    bigger = torch.tensor([[ground[0, 0], 2 * per_depth]])
    assert math.isclose(depth_law_error(identity, matte_extent(alpha), bigger).item(), math.log(2) - HUBER / 2,
                        rel_tol=1e-4)
    # y_in = k y_out + b: k = 1/2 about the feet edge f (b = f (1 - k)) doubles the subject, feet kept
    parameters = torch.zeros(1, WARP_CHANNELS, 1)
    feet = 2 * 50 / 64 - 1
    parameters[:, LOG_ZOOM], parameters[:, SHIFT_Y] = zoom_parameter(0.5), feet * 0.5
    assert depth_law_error(parameters, matte_extent(alpha), bigger).item() < 1e-3
    assert depth_scale_error(moved(parameters, alpha), horizon_px, 2 * per_depth) < 0.03
    missing = torch.full((1, 2), float("nan"))
    error = depth_law_error(identity, matte_extent(alpha), missing)
    error.backward()
    assert error.item() == 0 and torch.isfinite(identity.grad).all()
    # a batch of a clip with a ground and one without (real footage), and a frame without a subject
    batch = torch.zeros(2, WARP_CHANNELS, 2, requires_grad=True)
    extent = matte_extent(torch.cat([alpha, torch.zeros_like(alpha)], dim=2).expand(2, -1, -1, -1, -1))
    error = depth_law_error(batch, extent, torch.cat([bigger, missing]))
    error.backward()
    assert math.isclose(error.item(), math.log(2) - HUBER / 2, rel_tol=1e-4)
    assert torch.isfinite(batch.grad).all() and batch.grad[1].abs().sum() == 0 and batch.grad[0, LOG_ZOOM, 0] != 0


def test_descending_the_error_puts_a_rescaled_subject_back_on_its_scenes_law():
    """A synthetic scene's subject made 1.4 times bigger about its feet: gradient steps on the map's zoom and
    vertical shift alone bring its depth-scale error from ln 1.4 to below 0.05 (the scene's own ground). (Zoomed
    about a point of the horizon it would still fit: the law is a line through the horizon.)"""
    layers, params = render_scene(500_123, 2, (64, 96))
    alpha = torch.from_numpy(layers.alpha[:1])[None, None]
    feet = float(matte_extent(alpha)[0, 0, 1])
    zoomed = torch.zeros(1, WARP_CHANNELS, 1)
    zoomed[:, LOG_ZOOM], zoomed[:, SHIFT_Y] = zoom_parameter(1 / 1.4), feet * (1 - 1 / 1.4)
    alpha = torch.from_numpy(moved(zoomed, alpha))[None, None]
    horizon_px, per_depth = params.depth_law(64)
    before = depth_scale_error(alpha[0, 0].numpy(), horizon_px, per_depth)
    assert before > 0.25
    ground = torch.tensor([scene_ground(params, 64)])
    parameters = torch.zeros(1, WARP_CHANNELS, 1, requires_grad=True)
    optimizer = torch.optim.Adam([parameters], lr=0.02)
    for _ in range(200):
        loss = depth_law_error(parameters, matte_extent(alpha), ground)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert depth_scale_error(moved(parameters.detach(), alpha), horizon_px, per_depth) < 0.05


def test_synthetic_samples_carry_their_scenes_ground():
    sample = SceneDataset(1, 500_007, frames=1, size=(64, 96), augment=None)[0]
    _, params = render_scene(500_007, 2, (64, 96))
    assert torch.allclose(sample["ground"], torch.tensor(scene_ground(params, 64)))
    assert depth_law_error(torch.zeros(1, WARP_CHANNELS, 1), matte_extent(sample["alpha"][None]),
                           sample["ground"][None]).item() < 0.1  # the truth's rasterised size fits its law
