"""Reading and writing real video files through PyAV."""

from __future__ import annotations

import tracemalloc
from fractions import Fraction

import numpy as np
import pytest

import splitmerge as sm
from splitmerge.eval import psnr
from splitmerge.video.geometry import apply_resize, mask_window, plan_resize

from conftest import decode_index, frame_index_color, pattern_frames, write_raw_video


def index_clip(path, count=30, size=(32, 48), fps=25):
    frames = np.stack([np.full((*size, 3), frame_index_color(i), np.uint8) for i in range(count)])
    return sm.write_video(path, sm.Video(frames, fps))


def test_h264_round_trip_on_real_sample_keeps_quality_count_and_exact_rate(tmp_path):
    original = sm.read_video(sm.sample_path("carphone"))
    assert original.frames.shape == (120, 144, 176, 3)
    assert original.meta["fps_rational"] == "30000/1001"
    sm.write_video(tmp_path / "copy.mp4", original)
    back = sm.read_video(tmp_path / "copy.mp4")
    assert back.frames.shape == original.frames.shape
    assert sm.probe(tmp_path / "copy.mp4").fps_rational == "30000/1001"
    assert psnr(original.frames, back.frames) >= 35.0


@pytest.mark.parametrize("height,width", [(47, 63), (48, 63), (47, 64), (3, 5)])
def test_odd_sizes_write_and_read_back_at_the_true_size(tmp_path, height, width):
    frames = pattern_frames(6, height, width)
    sm.write_video(tmp_path / "odd.mp4", sm.Video(frames, 25))
    info = sm.probe(tmp_path / "odd.mp4")
    assert (info.height, info.width) == (height, width)
    back = sm.read_video(tmp_path / "odd.mp4").frames
    assert back.shape == frames.shape
    if height * width > 100:
        assert psnr(frames, back) > 30


@pytest.mark.parametrize("bits,dtype", [(16, np.uint16), (8, np.uint8)])
def test_matte_integers_round_trip_bit_exactly(tmp_path, bits, dtype):
    rng = np.random.default_rng(bits)
    stored = rng.integers(0, np.iinfo(dtype).max, size=(5, 47, 63), dtype=dtype, endpoint=True)
    sm.write_matte(tmp_path / "a.mkv", stored, 25, bits=bits)
    assert np.array_equal(sm.read_matte(tmp_path / "a.mkv", raw=True), stored)
    assert sm.probe(tmp_path / "a.mkv").frames == 5  # Matroska keeps no count: counted from packets


def test_float_matte_is_quantised_to_16_bits_and_stable_on_rewrite(tmp_path):
    alpha = np.random.default_rng(0).uniform(size=(4, 20, 30)).astype(np.float32)
    alpha[0, 0, :3] = (0.0, 1.0, 0.5)
    sm.write_matte(tmp_path / "a.mkv", alpha, 25)
    back = sm.read_matte(tmp_path / "a.mkv")
    assert back.dtype == np.float32
    assert np.abs(back - alpha).max() <= 0.5 / 65535 + 1e-7
    assert back[0, 0, 0] == 0.0 and back[0, 0, 1] == 1.0
    sm.write_matte(tmp_path / "b.mkv", back, 25)
    assert np.array_equal(sm.read_matte(tmp_path / "b.mkv"), back)


def test_start_stride_max_frames_pick_the_right_frames_and_rate(tmp_path):
    path = index_clip(tmp_path / "idx.mp4", count=30)
    video = sm.read_video(path, start=5, stride=3, max_frames=4)
    assert [decode_index(f) for f in video.frames] == [5, 8, 11, 14]
    assert video.fps == pytest.approx(25 / 3)
    assert video.meta["fps_rational"] == "25/3"
    assert [decode_index(f) for f in sm.iter_frames(path, start=27)] == [27, 28, 29]
    reader = sm.VideoReader(path, start=2, stride=4)
    assert reader.expected_frames() == len(list(reader)) == 7


def test_iter_frames_yields_what_read_video_returns(clip_path):
    whole = sm.read_video(clip_path, size=(32, 40)).frames
    streamed = np.stack(list(sm.iter_frames(clip_path, size=(32, 40))))
    assert np.array_equal(whole, streamed)


def test_resize_cover_centre_crops_then_resizes_and_records_the_box(clip_path):
    full = sm.read_video(clip_path).frames  # 64 x 96
    small = sm.read_video(clip_path, size=(32, 32))
    crop = small.meta["source"]["resize"]["crop"]
    assert crop == {"top": 0, "left": 16, "height": 64, "width": 64}
    plan = plan_resize((64, 96), (32, 32))
    assert np.array_equal(small.frames[3], apply_resize(full[3], plan))


def test_mask_window_is_the_grown_box_clipped_to_the_frame():
    mask = np.zeros((10, 12), bool)
    assert mask_window(mask, 3) is None
    mask[2:4, 9:11] = True
    assert mask_window(mask) == (slice(2, 4), slice(9, 11))
    assert mask_window(mask, 3) == (slice(0, 7), slice(6, 12))   # 2 - 3 and 11 + 3 clipped


def test_resize_contain_pads_with_black(clip_path):
    video = sm.read_video(clip_path, size=(64, 64), fit="contain")
    content = video.meta["source"]["resize"]["content"]
    assert content == {"top": 10, "left": 0, "height": 43, "width": 64}  # 96x64 -> 64x42.7, centred
    assert video.frames[:, :10].max() == 0 and video.frames[:, 53:].max() == 0
    assert video.frames[:, 10:53].mean() > 50


@pytest.mark.parametrize("rotation,turns", [(90, 1), (-90, 3), (180, 2)])
def test_rotation_metadata_is_honoured(tmp_path, rotation, turns):
    frames = pattern_frames(4, 48, 64)
    path = write_raw_video(tmp_path / "rot.mp4", frames, rotation=rotation)
    info = sm.probe(path)
    assert info.rotation == rotation
    expected = np.rot90(frames, turns, axes=(1, 2))
    assert (info.height, info.width) == expected.shape[1:3]
    back = sm.read_video(path).frames
    assert back.shape == expected.shape
    assert psnr(expected, back) > 30


def test_variable_frame_rate_reads_at_a_constant_rate(tmp_path):
    frames = [np.full((32, 48, 3), frame_index_color(i), np.uint8) for i in range(7)]
    times_ms = [0, 40, 80, 200, 240, 400, 440]  # gaps: frames held on screen for 1 to 4 periods of 40 ms
    path = write_raw_video(tmp_path / "vfr.mp4", frames, pts=times_ms, time_base=Fraction(1, 1000))
    assert [decode_index(f) for f in sm.iter_frames(path)] == list(range(7))
    constant = sm.read_video(path, fps=25)
    assert [decode_index(f) for f in constant.frames] == [0, 1, 2, 2, 2, 3, 4, 4, 4, 4, 5, 6]
    assert constant.fps == 25
    halved = sm.read_video(path, fps=12.5)
    assert [decode_index(f) for f in halved.frames] == [0, 2, 2, 4, 4, 5]  # grid 0, 80, ..., 400 ms


def test_one_frame_video_reads_as_one_frame(tmp_path):
    sm.write_video(tmp_path / "one.mp4", sm.Video(pattern_frames(1, 32, 32), 25))
    assert sm.probe(tmp_path / "one.mp4").frames == 1
    assert sm.read_video(tmp_path / "one.mp4").frames.shape == (1, 32, 32, 3)


def test_4k_video_is_resized_while_streaming_without_holding_full_frames(tmp_path):
    path = tmp_path / "uhd.mp4"
    frames = 8
    with sm.VideoWriter(path, 25, preset="ultrafast", crf=30) as writer:
        for image in pattern_frames(frames, 2160 // 8, 3840 // 8):
            writer.write(np.repeat(np.repeat(image, 8, axis=0), 8, axis=1))
    full_frame_bytes = 2160 * 3840 * 3
    tracemalloc.start()
    video = sm.read_video(path, size=(216, 384))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert video.frames.shape == (frames, 216, 384, 3)
    # Streaming holds about one full-size frame (plus its crop) at a time, never all eight.
    assert peak < 3 * full_frame_bytes < frames * full_frame_bytes


def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.mp4"
    sm.write_video(target, sm.Video(pattern_frames(3, 32, 32), 25))
    before = target.read_bytes()
    writer = sm.VideoWriter(target, 25)
    writer.write(pattern_frames(1, 32, 32)[0])
    with pytest.raises(sm.ShapeError, match="frame 1 is 48x32"):
        writer.write(pattern_frames(1, 32, 48)[0])
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_writer_context_aborts_on_exception(tmp_path):
    with pytest.raises(RuntimeError):
        with sm.VideoWriter(tmp_path / "x.mp4", 25) as writer:
            writer.write(pattern_frames(1, 32, 32)[0])
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


def test_ntsc_rates_are_kept_exact(tmp_path):
    sm.write_video(tmp_path / "ntsc.mp4", sm.Video(pattern_frames(5, 16, 16), 29.97))
    assert sm.probe(tmp_path / "ntsc.mp4").fps_rational == "30000/1001"
    sm.write_video(tmp_path / "pal.mp4", sm.Video(pattern_frames(5, 16, 16), 12.5))
    assert sm.probe(tmp_path / "pal.mp4").fps_rational == "25/2"


def test_probe_reports_real_sample_fields():
    info = sm.probe(sm.sample_path("bikes")).to_dict()
    assert info["frames"] == 250 and info["width"] == 640 and info["height"] == 272
    assert info["fps_rational"] == "25/1" and info["codec"] == "h264" and info["duration"] == pytest.approx(10.0)
    assert info["rotation"] == 0
