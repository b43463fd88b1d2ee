"""The Video and Layers types, compositing, and the Layers folder format."""

from __future__ import annotations

import json

import numpy as np
import pytest

import splitmerge as sm
from splitmerge.eval import psnr
from splitmerge.video.layers import LAYERS_CRF, LAYERS_FILES

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
        assert np.array_equal(getattr(back, name), sm.read_video(tmp_path / "once.mp4").frames), name
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
