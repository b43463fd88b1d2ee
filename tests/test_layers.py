"""The Video and Layers types, compositing, and the Layers folder format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import splitmerge as sm
from splitmerge.eval import psnr
from splitmerge.video.layers import (EFFECTS_FILE, EFFECTS_SCALE, LAYERS_CRF, LAYERS_FILES, LayersStream,
                                     within_matte)

from conftest import pattern_frames


def soft_disc(frames: int, height: int, width: int) -> np.ndarray:
    """(T, H, W) float32: a disc moving right, with a linear soft edge 4 px wide."""
    ys, xs = np.mgrid[0:height, 0:width]
    alpha = np.empty((frames, height, width), np.float32)
    for t in range(frames):
        distance = np.hypot(xs - (width / 3 + 2 * t), ys - height / 2)
        alpha[t] = np.clip((height / 4 - distance) / 4 + 0.5, 0, 1)
    return alpha


@pytest.fixture(scope="module")
def real_clips() -> tuple[np.ndarray, np.ndarray]:
    """Ten frames of two real sample clips at 48x64 (subject clip, background clip)."""
    subject = sm.read_video(sm.sample_path("carphone"), size=(48, 64), max_frames=10).frames
    background = sm.read_video(sm.sample_path("bigbuckbunny"), size=(48, 64), max_frames=10).frames
    return subject, background


@pytest.fixture
def layers(real_clips) -> sm.Layers:
    frames, background = real_clips
    return sm.Layers.from_matte(frames, soft_disc(10, 48, 64), background, 25.0, caption="a yellow square",
                                meta={"source": {"path": "x.mp4", "sha1": "abc", "start_frame": 0, "stride": 1,
                                                 "crop": None},
                                      "backends": {"matte": "test"}, "seconds": {"matte": 0.5}, "note": "kept"})


def test_composite_is_premultiplied_over_with_soft_alpha():
    bg = np.full((1, 2, 2, 3), 200, np.uint8)
    colour = np.full((1, 2, 2, 3), 100, np.uint8)
    alpha = np.array([[[0.0, 0.25], [0.5, 1.0]]], np.float32)
    fg = sm.premultiply(colour, alpha)
    assert fg[0, :, :, 0].tolist() == [[0, 25], [50, 100]]
    out = sm.composite(fg, alpha, bg)
    # 100 * a + 200 * (1 - a)
    assert out[0, :, :, 0].tolist() == [[200, 175], [150, 100]]


def test_composite_broadcasts_one_background_frame_and_rejects_mismatches():
    fg = np.zeros((3, 4, 5, 3), np.uint8)
    alpha = np.zeros((3, 4, 5), np.float32)
    still = np.full((4, 5, 3), 9, np.uint8)
    assert (sm.composite(fg, alpha, still) == 9).all()
    with pytest.raises(sm.ShapeError, match="shapes disagree"):
        sm.composite(fg, alpha[:, :3], still)
    with pytest.raises(sm.ShapeError, match="alpha must be float"):
        sm.composite(fg, alpha.astype(np.uint8), still)


def test_layers_recomposite_gives_back_the_clip_where_background_is_the_clip(layers):
    same = sm.Layers.from_matte(layers.frames, layers.alpha, layers.frames, layers.fps)
    assert np.abs(same.recomposite().astype(int) - layers.frames).max() <= 1


@pytest.mark.parametrize("change,words", [
    (lambda d: d.update(frames=d["frames"][..., :2]), "Layers.frames: expected shape (T, H, W, 3)"),
    (lambda d: d.update(frames=d["frames"].astype(np.float32)), "expected dtype uint8"),
    (lambda d: d.update(alpha=d["alpha"][:, :10]), "Layers.alpha: expected shape (10, 48, 64)"),
    (lambda d: d.update(alpha=d["alpha"].astype(np.float64)), "expected dtype float32"),
    (lambda d: d.update(alpha=d["alpha"] * 2), "within [0, 1]"),
    (lambda d: d.update(background=d["background"][:5]), "Layers.background: shape (5, 48, 64, 3) differs"),
    (lambda d: d.update(fps=0), "fps 0"),
    (lambda d: d.update(caption=3), "Layers.caption: expected str"),
])
def test_layers_validation_names_the_field(layers, change, words):
    fields = dict(frames=layers.frames, alpha=layers.alpha, foreground=layers.foreground,
                  background=layers.background, fps=layers.fps, caption=layers.caption)
    change(fields)
    with pytest.raises(sm.ShapeError) as raised:
        sm.Layers(**fields)
    assert words in str(raised.value)


def test_video_validation():
    with pytest.raises(sm.ShapeError, match="Video.frames"):
        sm.Video(np.zeros((4, 4, 3), np.uint8), 25)
    with pytest.raises(sm.ShapeError, match="empty clip"):
        sm.Video(np.zeros((0, 4, 4, 3), np.uint8), 25)
    assert sm.Video(np.zeros((2, 4, 4, 3), np.uint8), 24000 / 1001).rate.denominator == 1001


def test_save_load_round_trip(tmp_path, layers):
    folder = layers.save(tmp_path / "clip")
    assert sorted(p.name for p in folder.iterdir()) == sorted(LAYERS_FILES)
    header = json.loads((folder / "layers.json").read_text())
    assert header["format"] == "splitmerge.layers" and header["version"] == 1 and header["video_crf"] == LAYERS_CRF
    assert (header["num_frames"], header["height"], header["width"]) == (10, 48, 64)
    assert header["fg_ratio"] == pytest.approx(layers.fg_ratio, abs=1e-6)
    assert header["source"]["sha1"] == "abc" and header["backends"] == {"matte": "test"}

    back = sm.Layers.load(folder)
    assert np.abs(back.alpha - layers.alpha).max() <= 0.5 / 255 + 1e-7  # the documented 8-bit quantisation
    stored = np.round(layers.alpha.astype(np.float64) * 255)
    assert np.array_equal(back.alpha, stored.astype(np.float32) / np.float32(255))
    for name in ("frames", "foreground", "background"):
        # The codec tolerance: exactly one H.264 encode at the documented quality, nothing more (the encoder is
        # repeatable: video.io.REPEATABLE_X264).
        sm.write_video(tmp_path / "once.mp4", sm.Video(getattr(layers, name), 25), crf=LAYERS_CRF)
        once = sm.read_video(tmp_path / "once.mp4").frames
        once = within_matte(once, back.alpha) if name == "foreground" else once
        assert np.array_equal(getattr(back, name), once), name
        assert psnr(getattr(layers, name), getattr(back, name)) >= 31, name  # 64x48 real footage, 4:2:0
    assert back.caption == "a yellow square" and back.fps == 25.0
    assert back.meta["note"] == "kept" and back.meta["seconds"] == {"matte": 0.5}

    again = back.save(tmp_path / "again")  # alpha is exact from the second generation on
    assert np.array_equal(sm.Layers.load(again).alpha, back.alpha)


def test_save_load_keeps_35_db_on_a_real_clip_at_its_own_size(tmp_path):
    clip = sm.read_video(sm.sample_path("carphone"), max_frames=24)
    alpha = soft_disc(24, clip.height, clip.width)
    layers = sm.Layers.from_matte(clip.frames, alpha, clip.frames, clip.fps)
    back = sm.Layers.load(layers.save(tmp_path / "real"))
    assert psnr(clip.frames, back.frames) >= 35
    assert back.rate == clip.rate  # 30000/1001 survives


def test_a_loaded_foreground_has_no_colour_where_its_matte_is_zero(tmp_path):
    """The H.264 foreground's 4:2:0 chroma spills a saturated subject's colour past its edge onto alpha 0 (copy-paste
    would paste it): loading, whole or streamed, holds every channel to ceil(255 alpha)."""
    frames = np.zeros((4, 64, 96, 3), np.uint8)
    frames[..., 0], frames[..., 2] = 250, 30
    alpha = np.zeros((4, 64, 96), np.float32)
    alpha[:, 21:40, 33:51] = 1.0  # odd edges: 2x2 chroma blocks straddle them
    folder = sm.Layers.from_matte(frames, alpha, np.full_like(frames, 90), 25, "a red box").save(tmp_path / "box")
    sm.write_video(tmp_path / "once.mp4", sm.Video(sm.premultiply(frames, alpha), 25), crf=LAYERS_CRF)
    assert sm.read_video(tmp_path / "once.mp4").frames[alpha == 0].max() > 0  # the spill this guards against
    back = sm.Layers.load(folder)
    assert back.foreground[back.alpha == 0].max() == 0
    assert np.all(back.foreground <= np.ceil(back.alpha * 255)[..., None])
    streamed, matte = next(LayersStream(folder).chunks(4, 4))
    assert np.array_equal(streamed, back.foreground) and np.array_equal(matte, back.alpha)


def test_save_with_16_bit_alpha(tmp_path, layers):
    back = sm.Layers.load(layers.save(tmp_path / "deep", alpha_bits=16, preview=False))
    assert np.abs(back.alpha - layers.alpha).max() <= 0.5 / 65535 + 1e-7
    assert not (tmp_path / "deep" / "preview.mp4").exists()


def test_save_replaces_a_layers_folder_but_never_other_folders(tmp_path, layers):
    folder = layers.save(tmp_path / "clip")
    layers.save(folder)  # replacing our own format is fine
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    user = tmp_path / "photos"
    user.mkdir()
    (user / "holiday.jpg").write_bytes(b"jpeg")
    with pytest.raises(sm.LayersFormatError, match="not a Layers folder"):
        layers.save(user)
    assert (user / "holiday.jpg").read_bytes() == b"jpeg"


def test_failed_save_leaves_no_folder(tmp_path, layers, monkeypatch):
    import splitmerge.video.preview as preview

    calls = []
    real = preview.layers_preview_frame

    def broken(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:  # half way through the clip
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(preview, "layers_preview_frame", broken)
    with pytest.raises(OSError, match="disk full"):
        layers.save(tmp_path / "clip")
    assert list(tmp_path.iterdir()) == []


def test_layers_writer_streams_and_refuses_mismatched_frames(tmp_path, layers):
    with sm.LayersWriter(tmp_path / "streamed", layers.fps) as writer:
        for t in range(layers.num_frames):
            writer.write(layers.frames[t], layers.alpha[t], layers.foreground[t], layers.background[t])
        writer.close("streamed", {"source": {"path": "x"}, "filters": {"passed": True}})
    back = sm.Layers.load(tmp_path / "streamed")
    assert back.num_frames == layers.num_frames and back.meta["filters"] == {"passed": True}
    with pytest.raises(sm.ShapeError, match="frame 1 is 32x48"):
        with sm.LayersWriter(tmp_path / "bad", 25) as writer:
            writer.write(layers.frames[0], layers.alpha[0], layers.foreground[0], layers.background[0])
            small = np.zeros((48, 32, 3), np.uint8)
            writer.write(small, np.zeros((48, 32), np.float32), small, small)
    with sm.LayersWriter(tmp_path / "unclosed", 25) as writer:  # a block that never closes writes nothing
        writer.write(layers.frames[0], layers.alpha[0], layers.foreground[0], layers.background[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["streamed"]


@pytest.fixture
def saved(tmp_path, layers):
    return layers.save(tmp_path / "clip")


def test_load_missing_folder(tmp_path):
    with pytest.raises(sm.MissingFileError, match="no such Layers folder"):
        sm.Layers.load(tmp_path / "none")


@pytest.mark.parametrize("name", ["layers.json", "source.mp4", "foreground.mp4", "alpha.mkv", "background.mp4"])
def test_load_names_a_missing_file(saved, name):
    (saved / name).unlink()
    with pytest.raises(sm.LayersFormatError) as raised:
        sm.Layers.load(saved)
    assert str(saved / name) in str(raised.value) and "missing" in str(raised.value)


def test_load_names_a_wrong_shaped_video(saved):
    sm.write_video(saved / "background.mp4", sm.Video(pattern_frames(8, 48, 64), 25))
    with pytest.raises(sm.LayersFormatError) as raised:
        sm.Layers.load(saved)
    message = str(raised.value)
    assert str(saved / "background.mp4") in message and "8 frames of 64x48" in message and "says 10" in message


def test_load_names_a_wrong_shaped_matte(saved):
    sm.write_matte(saved / "alpha.mkv", np.zeros((10, 40, 64), np.float32), 25)
    with pytest.raises(sm.LayersFormatError, match=r"alpha.mkv: 10 frames of 64x40"):
        sm.Layers.load(saved)


@pytest.mark.parametrize("text,words", [
    ("{not json", "not valid JSON"),
    ('{"format": "other"}', "not a splitmerge layers.json"),
    ('{"format": "splitmerge.layers", "version": 7}', "unsupported version 7"),
    ('{"format": "splitmerge.layers", "version": 1, "num_frames": 10, "height": 48, "width": 64, "fps": -1}', "fps"),
    ('{"format": "splitmerge.layers", "version": 1, "num_frames": "10", "height": 48, "width": 64}', "num_frames"),
])
def test_load_rejects_a_malformed_header(saved, text, words):
    (saved / "layers.json").write_text(text)
    with pytest.raises(sm.LayersFormatError) as raised:
        sm.Layers.load(saved)
    assert str(saved / "layers.json") in str(raised.value) and words in str(raised.value)


def test_load_reports_a_corrupt_member_video(saved):
    (saved / "foreground.mp4").write_text("garbage")
    with pytest.raises(sm.MediaError, match="foreground.mp4: not a readable video"):
        sm.Layers.load(saved)


def test_preview_shows_four_labelled_panels(saved):
    info = sm.probe(saved / "preview.mp4")
    assert info.frames == 10 and info.height == 48 + 18
    assert info.width >= 4 * 64


# ------------------------------------------------------------------------------------------- version 2: effects


def shadowed_clip(channels: int = 1, frames: int = 6, height: int = 48, width: int = 64) -> sm.Layers:
    """A grey disc (`soft_disc`) over a smooth plate, casting a soft shadow (gain 0.4 at its darkest) below it,
    with a reflection (gain 1.25) down the right edge; the clip is ``fg + (1 - alpha) * effects * bg``."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    plate = np.rint(np.stack([60 + 120 * xs / width, 80 + 100 * ys / height, 150 + 0 * xs], -1)).astype(np.uint8)
    plate = np.repeat(plate[None], frames, axis=0)
    alpha = soft_disc(frames, height, width)
    gain = np.ones((frames, height, width), np.float32)
    for t in range(frames):
        distance = np.hypot((xs - (width / 3 + 2 * t)) / 2, ys - height * 0.85)
        gain[t] = 1 - 0.6 * np.clip((8 - distance) / 4, 0, 1)
    gain[:, :, -6:] = 1.25
    if channels == 3:  # a warm reflection: more red than blue
        gain = np.stack([gain, gain, gain], axis=-1)
        gain[:, :, -6:] = (1.4, 1.25, 1.1)
    foreground = sm.premultiply(np.full_like(plate, 140), alpha)
    source = sm.composite(foreground, alpha, plate, gain)
    return sm.Layers(source, alpha, foreground, plate, 25.0, "a grey disc and its shadow", effects=gain)


@pytest.fixture(scope="module")
def shadowed(tmp_path_factory) -> tuple[sm.Layers, object]:
    clip = shadowed_clip()
    return clip, clip.save(tmp_path_factory.mktemp("v2") / "clip")


def test_composite_with_effects_scales_the_background_behind_the_subject():
    fg = np.zeros((1, 1, 2, 3), np.uint8)
    fg[0, 0, 1] = 50
    alpha = np.array([[[0.0, 0.5]]], np.float32)
    bg = np.full((1, 1, 2, 3), 200, np.uint8)
    gray = np.array([[[0.5, 0.5]]], np.float32)
    assert sm.composite(fg, alpha, bg, gray)[0, 0, :, 0].tolist() == [100, 100]  # 0 + 1 * .5 * 200, 50 + .5 * .5 * 200
    colour = np.ones((1, 1, 2, 3), np.float32)
    colour[0, 0, 0] = (1.2, 1.0, 0.25)
    assert sm.composite(fg, alpha, bg, colour)[0, 0, 0].tolist() == [240, 200, 50]
    assert np.array_equal(sm.composite(fg, alpha, bg, np.ones_like(alpha)), sm.composite(fg, alpha, bg))
    with pytest.raises(sm.ShapeError, match="effects must be float shaped like alpha"):
        sm.composite(fg, alpha, bg, gray[..., :1])


@pytest.mark.parametrize("change,words", [
    (lambda e: e[:, :10], "Layers.effects: expected shape (10, 48, 64) (T, H, W) or (10, 48, 64, 3)"),
    (lambda e: e[..., None], "Layers.effects: expected shape"),
    (lambda e: e.astype(np.float64), "Layers.effects: expected dtype float32"),
    (lambda e: e - 2, "Layers.effects: values must be finite and >= 0"),
    (lambda e: e * np.float32(np.nan), "Layers.effects: values must be finite"),
    (lambda e: list(e), "Layers.effects: expected shape"),
])
def test_effects_are_validated(layers, change, words):
    with pytest.raises(sm.ShapeError) as raised:
        sm.Layers(layers.frames, layers.alpha, layers.foreground, layers.background, 25,
                  effects=change(np.ones(layers.alpha.shape, np.float32)))
    assert words in str(raised.value)


def test_a_version_2_folder_round_trips_its_effects(shadowed):
    clip, folder = shadowed
    assert sorted(p.name for p in folder.iterdir()) == sorted((*LAYERS_FILES, EFFECTS_FILE))
    header = json.loads((folder / "layers.json").read_text())
    assert header["version"] == 2 and header["effects_scale"] == EFFECTS_SCALE == 32768
    assert header["effects_channels"] == 1 and sm.probe(folder / EFFECTS_FILE).pix_fmt == "gray16le"
    back = sm.Layers.load(folder)
    assert back.effects.dtype == np.float32 and back.effects.shape == (6, 48, 64)
    assert np.abs(back.effects - clip.effects).max() <= 0.5 / EFFECTS_SCALE  # the documented quantisation
    assert back.gain is back.effects
    assert np.array_equal(clip.recomposite(), clip.frames)
    assert psnr(clip.frames, back.recomposite()) >= 40  # after one H.264 encode of foreground and background
    without = sm.composite(back.foreground, back.alpha, back.background)
    assert psnr(clip.frames, without) < 25  # the shadow and the reflection are in the effects, not the plate
    again = back.save(folder.parent / "again", preview=False)  # exact from the second generation on
    assert np.array_equal(sm.Layers.load(again).effects, back.effects)


def test_three_channel_effects_and_gains_beyond_two(tmp_path):
    clip = shadowed_clip(channels=3, frames=3, height=16, width=24)
    clip.effects[0, 0, 0] = (0.0, 5.0, 65535 / 32768)  # gains of 2 and more store as the largest, 65535/32768
    back = sm.Layers.load(clip.save(tmp_path / "rgb", preview=False))
    assert json.loads((tmp_path / "rgb" / "layers.json").read_text())["effects_channels"] == 3
    assert sm.probe(tmp_path / "rgb" / EFFECTS_FILE).pix_fmt == "gbrp16le"
    assert back.effects.shape == (3, 16, 24, 3)
    assert back.effects[0, 0, 0].tolist() == [0.0, 65535 / 32768, 65535 / 32768]
    clip.effects[0, 0, 0] = back.effects[0, 0, 0]
    assert np.abs(back.effects - clip.effects).max() <= 0.5 / EFFECTS_SCALE
    assert back.effects[0, 0, -1].tolist() == pytest.approx([1.4, 1.25, 1.1], abs=0.5 / EFFECTS_SCALE)


def test_a_folder_without_effects_stays_version_1_and_loads_with_effects_none(saved):
    header = json.loads((saved / "layers.json").read_text())
    assert header["version"] == 1 and "effects_scale" not in header
    assert not (saved / EFFECTS_FILE).exists()
    back = sm.Layers.load(saved)
    assert back.effects is None
    assert back.gain.shape == back.alpha.shape and (back.gain == 1).all() and not back.gain.flags.writeable
    assert np.array_equal(back.recomposite(), sm.composite(back.foreground, back.alpha, back.background))
    (saved / EFFECTS_FILE).write_text("not ours")  # version 1 defines no effects.mkv: it is not read
    assert sm.Layers.load(saved).effects is None


def test_layers_writer_with_effects_writes_what_save_writes(tmp_path, shadowed):
    clip, folder = shadowed
    with sm.LayersWriter(tmp_path / "streamed", clip.rate) as writer:
        for t in range(clip.num_frames):
            writer.write(clip.frames[t], clip.alpha[t], clip.foreground[t], clip.background[t], clip.effects[t])
        writer.close(clip.caption, clip.meta)
    saved_header = json.loads((folder / "layers.json").read_text())
    assert json.loads((tmp_path / "streamed" / "layers.json").read_text()) == saved_header
    streamed, whole = sm.Layers.load(tmp_path / "streamed"), sm.Layers.load(folder)
    for name in ("frames", "alpha", "foreground", "background", "effects"):
        assert np.array_equal(getattr(streamed, name), getattr(whole, name)), name
    info = sm.probe(tmp_path / "streamed" / "preview.mp4")  # five panels: the effects too
    assert info.height == 48 + 18 and info.width >= 5 * 64


def test_layers_writer_refuses_effects_on_some_frames_only(tmp_path, shadowed):
    clip, _ = shadowed
    frame = (clip.frames[0], clip.alpha[0], clip.foreground[0], clip.background[0])
    with pytest.raises(sm.ShapeError, match="frame 1 has no effects, earlier frames had one-channel effects"):
        with sm.LayersWriter(tmp_path / "some", 25, preview=False) as writer:
            writer.write(*frame, clip.effects[0])
            writer.write(*frame)
    with pytest.raises(sm.ShapeError, match="frame 1 has three-channel effects, earlier frames had no effects"):
        with sm.LayersWriter(tmp_path / "late", 25, preview=False) as writer:
            writer.write(*frame)
            writer.write(*frame, np.ones((48, 64, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_layers_stream_gives_effects_on_request(shadowed, saved):
    clip, folder = shadowed
    stream = LayersStream(folder)
    assert stream.version == 2 and stream.has_effects and stream.effects_scale == EFFECTS_SCALE
    parts = list(stream.chunks(5, 2, effects=True))
    assert [len(alpha) for _, alpha, _ in parts] == [2, 2, 1]
    effects = np.concatenate([gain for _, _, gain in parts])
    assert np.array_equal(effects, sm.Layers.load(folder).effects[:5])
    assert all(len(part) == 2 for part in stream.chunks(5, 2))  # without effects: the pairs as before
    plain = LayersStream(saved)
    assert plain.version == 1 and not plain.has_effects and plain.effects_scale is None
    for foreground, alpha, gain in plain.chunks(4, 3, colour=False, effects=True):
        assert foreground is None and gain.shape == alpha.shape and (gain == 1).all()


@pytest.fixture
def v2(tmp_path, shadowed):
    import shutil

    return Path(shutil.copytree(shadowed[1], tmp_path / "clip"))


def _rewrite_effects(folder, effects, cls=None):
    from splitmerge.video.io import GainWriter

    with GainWriter(folder / EFFECTS_FILE, 25) as writer:
        for frame in effects:
            writer.write(frame)


@pytest.mark.parametrize("damage,words", [
    (lambda f: _rewrite_effects(f, np.ones((4, 48, 64), np.float32)), "effects.mkv: 4 frames of 64x48, "
                                                                      "layers.json says 6 frames of 64x48"),
    (lambda f: _rewrite_effects(f, np.ones((6, 40, 64), np.float32)), "effects.mkv: 6 frames of 64x40"),
    (lambda f: _rewrite_effects(f, np.ones((6, 48, 64, 3), np.float32)), "expected lossless 16-bit effects "
                                                                         "(ffv1 gbrp16le found, gray16le for the 1"),
    (lambda f: sm.write_matte(f / EFFECTS_FILE, np.ones((6, 48, 64), np.float32), 25, bits=8),
     "expected lossless 16-bit effects (ffv1 gray found"),
    (lambda f: (f / EFFECTS_FILE).write_text("garbage"), "effects.mkv: not a readable video"),
    (lambda f: (f / EFFECTS_FILE).unlink(), "effects.mkv: missing from the Layers folder"),
])
def test_malformed_effects_give_one_line_naming_the_file(v2, damage, words):
    damage(v2)
    with pytest.raises(sm.LayersFormatError) as raised:
        sm.Layers.load(v2)
    message = str(raised.value)
    assert str(v2 / EFFECTS_FILE) in message and words in message and "\n" not in message


@pytest.mark.parametrize("change,words", [
    ({"effects_scale": 0}, "effects_scale must be a positive number, got 0"),
    ({"effects_scale": "32768"}, "effects_scale must be a positive number"),
    ({"effects_channels": 2}, "effects_channels must be 1 or 3, got 2"),
    ({"effects_scale": None, "effects_channels": None}, "effects.mkv: present, but"),
])
def test_a_malformed_version_2_header_names_the_file(v2, change, words):
    header = json.loads((v2 / "layers.json").read_text())
    header.update(change)
    header = {key: value for key, value in header.items() if value is not None}
    (v2 / "layers.json").write_text(json.dumps(header))
    for read in (sm.Layers.load, LayersStream):
        with pytest.raises(sm.LayersFormatError, match=words):
            read(v2)


def test_a_wrong_length_effects_file_is_found_while_streaming(v2):
    _rewrite_effects(v2, np.ones((4, 48, 64), np.float32))
    with pytest.raises(sm.LayersFormatError, match="effects.mkv and alpha.mkv have different frame counts"):
        list(LayersStream(v2).chunks(6, 4, effects=True))


def test_webdataset_export_carries_effects_when_a_clip_has_them(tmp_path):
    import tarfile

    from splitmerge.data import build
    from splitmerge.data.export import export
    from splitmerge.data.manifest import read_manifest

    dataset = tmp_path / "dataset"
    build([], dataset, synthetic=2, frames=4, size=(32, 48))
    rows = [row for row in read_manifest(dataset) if row["status"] == "ok"]
    with_effects = rows[0]
    (dataset / with_effects["clip"] / EFFECTS_FILE).write_bytes(b"effects bytes")
    (dataset / rows[1]["clip"] / EFFECTS_FILE).unlink()  # (synthetic scenes have their shadow as effects)
    shards = export(dataset, tmp_path / "shards", "webdataset", split=None, per_shard=10)
    with tarfile.open(shards[0]) as archive:
        names = set(archive.getnames())
        assert archive.extractfile(f"{with_effects['id']}.effects.mkv").read() == b"effects bytes"
    assert f"{rows[1]['id']}.effects.mkv" not in names and f"{rows[1]['id']}.alpha.mkv" in names
