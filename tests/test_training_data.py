"""Training data: StmDataset / StmIterableDataset samples, the augmentation switches, the input noise, and the
synthetic scenes' ground truth."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from splitmerge.data import NoiseConfig, StmDataset, StmIterableDataset, add_input_noise, build, collate_samples
from splitmerge.data.export import export
from splitmerge.data.synthetic import BENCHMARK_SEED, draw_params, render_scene
from splitmerge.errors import OptionError
from splitmerge.video.layers import composite
from splitmerge.video.transforms import AugmentConfig


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "dataset"
    build([], folder, synthetic=4, frames=13, size=(96, 144))
    return folder


def test_samples_have_the_documented_shapes_and_ranges(dataset):
    data = StmDataset(dataset, split=None, frames=8, size=(64, 96))
    sample = data[0]
    for name, channels in (("video", 3), ("foreground", 3), ("background", 3), ("alpha", 1), ("alpha_target", 1)):
        assert sample[name].shape == (channels, 8, 64, 96) and sample[name].dtype == torch.float32, name
    for name in ("video", "foreground", "background"):
        assert -1 <= sample[name].min() and sample[name].max() <= 1
    assert 0 <= sample["alpha"].min() and sample["alpha"].max() <= 1
    assert isinstance(sample["caption"], str) and sample["caption"] and len(sample["id"]) == 12
    assert 0 <= sample["transform"]["start"] <= 13 - 8
    batch = next(iter(DataLoader(data, batch_size=3, collate_fn=collate_samples)))
    assert batch["video"].shape == (3, 3, 8, 64, 96) and len(batch["caption"]) == 3
    with pytest.raises(OptionError, match="frames 20"):
        StmDataset(dataset, split=None, frames=20)
    with pytest.raises(OptionError, match="no ok clips in split 'test'"):
        StmDataset(dataset, split="test")


def assert_reproducible_and_redrawn_each_epoch(first, second, index: int = 1) -> None:
    """Two datasets made alike give the same sample; set_epoch draws other transforms for it."""
    a, b = first[index], second[index]
    assert a["transform"] == b["transform"] and torch.equal(a["foreground"], b["foreground"])
    transforms = set()
    for epoch in range(6):
        first.set_epoch(epoch)
        transforms.add(repr(first[index]["transform"]))
    assert len(transforms) > 1


def test_samples_are_reproducible_and_change_with_the_epoch(dataset):
    assert_reproducible_and_redrawn_each_epoch(StmDataset(dataset, split=None, seed=3),
                                               StmDataset(dataset, split=None, seed=3))


def test_fresh_procedural_scenes_are_samples_rendered_on_demand():
    """`SceneDataset`: scene `first_seed + index` as a training sample of the documented shapes, without the
    augmentation exactly its rendered frames, reproducible, redrawn with the epoch; benchmark seeds refused."""
    from splitmerge.data.torch_dataset import SceneDataset, to_signed

    scenes = SceneDataset(3, 500_000, frames=1, size=(64, 96), seed=2)
    sample = scenes[1]
    assert len(scenes) == 3 and sample["id"] == "scene-500001"
    for name, channels in (("video", 3), ("foreground", 3), ("background", 3), ("alpha", 1), ("effects", 1)):
        assert sample[name].shape == (channels, 1, 64, 96), name
    assert sample["effects"].min() < 1  # the subject's shadow is part of the target
    assert_reproducible_and_redrawn_each_epoch(scenes, SceneDataset(3, 500_000, frames=1, size=(64, 96), seed=2))
    plain = SceneDataset(3, 500_000, frames=2, size=(64, 96), augment=None)[2]
    layers, _ = render_scene(500_002, 2, (64, 96))
    assert torch.equal(plain["video"], to_signed(layers.frames)) and torch.equal(plain["alpha"][0],
                                                                                torch.from_numpy(layers.alpha))
    with pytest.raises(OptionError, match="benchmarks'"):
        SceneDataset(10, BENCHMARK_SEED - 5)


def test_without_augmentation_the_foreground_is_the_clip_under_its_matte(dataset):
    sample = StmDataset(dataset, split=None, augment=None)[0]
    assert torch.equal(sample["alpha"], sample["alpha_target"])
    assert sample["transform"]["flip"] is False and sample["transform"]["crop"] is None
    # premultiplied: fg + (1 - alpha) * bg rebuilds the clip (within 8-bit rounding of the stored layers)
    to_uint8 = lambda t: ((t + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 3, 0).numpy()  # noqa: E731
    rebuilt = composite(to_uint8(sample["foreground"]), sample["alpha"][0].numpy(), to_uint8(sample["background"]))
    assert np.abs(rebuilt.astype(int) - to_uint8(sample["video"]).astype(int)).mean() < 3


def test_each_augmentation_switch_turns_its_piece_off(dataset):
    def pieces(config):
        data = StmDataset(dataset, split=None, augment=config)
        found = []
        for epoch in range(8):
            data.set_epoch(epoch)
            found += [data[i]["transform"] for i in range(len(data))]
        return found

    everything = pieces(AugmentConfig())
    assert any(t["flip"] for t in everything) and any(t["jitter"] for t in everything)
    assert all(t["crop"]["kept"] >= 0.9 for t in everything if t["crop"])  # >= 90% of the subject stays in view
    assert not any(t["flip"] for t in pieces(AugmentConfig(flip_p=0)))
    assert not any(t["jitter"] for t in pieces(AugmentConfig(jitter_p=0)))
    assert not any(t["crop"] for t in pieces(AugmentConfig(crop_p=0)))


def test_webdataset_shards_stream_the_same_samples(dataset, tmp_path):
    shards = export(dataset, tmp_path / "shards", "webdataset", split=None, per_shard=2)
    mapped = StmDataset(dataset, split=None, augment=None, frames=6)
    streamed = StmIterableDataset(shards, augment=None, frames=6, shuffle=False)
    by_id = {sample["id"]: sample for sample in streamed}
    assert set(by_id) == {row["id"] for row in mapped.rows}
    one = mapped[0]
    other = by_id[one["id"]]
    assert other["video"].shape == one["video"].shape and other["caption"] == one["caption"]
    # Two DataLoader workers split the shards: every sample once.
    loader = DataLoader(StmIterableDataset(shards, frames=6, size=(48, 72)), batch_size=None, num_workers=2)
    assert sorted(sample["id"] for sample in loader) == sorted(by_id)


def test_input_noise_follows_the_paper_and_switches_off():
    generator = torch.Generator().manual_seed(0)
    fg, bg = torch.zeros(400, 1, 2, 4, 4), torch.zeros(400, 1, 2, 4, 4)
    noisy_fg, noisy_bg = add_input_noise(fg, bg, generator)
    fg_sigma = noisy_fg.flatten(1).std(dim=1).log()
    bg_sigma = noisy_bg.flatten(1).std(dim=1).log()
    assert fg_sigma.mean().item() == pytest.approx(-1.0, abs=0.15) and bg_sigma.mean().item() < -2.5
    same = add_input_noise(fg, bg, torch.Generator().manual_seed(0))
    assert torch.equal(same[0], noisy_fg)
    off = add_input_noise(fg, bg, generator, NoiseConfig(enabled=False))
    assert off[0] is fg and off[1] is bg


def test_synthetic_scenes_are_exact_and_physically_consistent():
    layers, params = render_scene(5, frames=9, size=(96, 144))
    again, _ = render_scene(5, frames=9, size=(96, 144))
    assert np.array_equal(layers.frames, again.frames)
    rebuilt = layers.recomposite()
    assert np.abs(rebuilt.astype(int) - layers.frames.astype(int)).max() <= 2
    for t in range(9):  # feet on the ground: the matte's lowest row is at the recorded feet, below the horizon
        rows = np.nonzero(layers.alpha[t].max(axis=1) > 0.5)[0]
        if len(rows) and params.feet[t][1] < 95:
            assert abs(rows.max() - params.feet[t][1]) <= 2
        assert params.feet[t][1] > params.horizon
    heights = np.array(params.heights)
    depth = (np.array(params.feet)[:, 1] - params.horizon) / (96 - params.horizon)
    assert np.allclose(heights / depth, params.max_height)  # size follows depth
    assert draw_params(BENCHMARK_SEED, 9, (96, 144)) != draw_params(0, 9, (96, 144))
    lit = replace(params, light=(1.0, 1.0, 1.0))
    assert lit.caption() == params.caption()
