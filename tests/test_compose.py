"""`compose` with the bundled default Composer: the CLI end to end, placement flags, several subjects, the
background kept exactly, and bad inputs named in one line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import splitmerge as sm
from splitmerge.cli import main
from splitmerge.data.synthetic import render_scene
from splitmerge.errors import OptionError, ShapeError
from splitmerge.video.transforms import place

SIZE = (72, 108)   # not the default model's 64x96: inputs are resized to it and the result brought back


@pytest.fixture(scope="module")
def scene():
    layers, _ = render_scene(3, frames=12, size=SIZE)
    return layers, sm.Video(layers.background, layers.fps)


@pytest.fixture(scope="module")
def files(tmp_path_factory, scene):
    layers, background = scene
    root = tmp_path_factory.mktemp("compose")
    layers.save(root / "subject")
    other, _ = render_scene(8, frames=12, size=(90, 120))
    sm.write_video(root / "street.mp4", sm.Video(other.background, 24.0))
    return root


def test_cli_composes_with_the_default_model_and_writes_layers(files, capsys):
    out, layers_out = files / "out" / "result.mp4", files / "out" / "layers"
    assert main(["compose", "--fg", str(files / "subject"), "--bg", str(files / "street.mp4"), "-o", str(out),
                 "--steps", "2", "--layers-out", str(layers_out)]) == 0
    assert "method stm" in capsys.readouterr().out  # stm with the bundled model is the default
    result, street = sm.read_video(out), sm.read_video(files / "street.mp4")
    assert result.frames.shape == street.frames.shape == (12, 90, 120, 3) and result.fps == street.fps
    written = sm.Layers.load(layers_out)
    assert written.frames.shape == (12, 90, 120, 3) and 0 < written.fg_ratio < 0.5
    assert written.meta["compose"]["method"] == "stm" and written.meta["compose"]["placement"]["by"] == "model"
    outside = written.alpha == 0
    assert outside.mean() > 0.5
    # Both files went through the codec; outside the subject the result is the street within codec noise.
    assert np.abs(result.frames[outside].astype(int) - street.frames[outside]).mean() < 3


def test_given_placement_holds_and_only_the_colour_is_the_models(scene, tmp_path):
    layers, background = scene
    placed_fg, placed_alpha = place(layers.foreground, layers.alpha, SIZE, position=(0.3, 0.6), scale=0.6)
    held = sm.compose(fg=layers, background=background, method="stm", steps=2, position=(0.3, 0.6), scale=0.6,
                      anchor="screen")  # the scene pans; this holds the placement on the screen
    assert held.meta["placement"]["by"] == "given" and held.meta["mirrored"] == [False]
    assert np.allclose(held.alpha, np.where(placed_alpha < 1 / 255, 0, placed_alpha), atol=1e-5)
    outside = held.alpha == 0
    assert np.array_equal(held.frames[outside], layers.background[outside])  # exact, pixel for pixel
    # The same start, but the model has the last word: it may move, scale and mirror the subject.
    free = sm.compose(fg=layers, background=background, method="stm", steps=2, position=(0.3, 0.6), scale=0.6,
                      placement="model")
    assert free.meta["placement"]["by"] == "model"
    assert np.array_equal(free.frames[free.alpha == 0], layers.background[free.alpha == 0])
    # A trajectory with a scale per frame: the subject grows as the rows say and follows x.
    rows = [{"x": 0.2 + 0.04 * t, "y": 0.6, "scale": 0.4 + 0.04 * t} for t in range(12)]
    track = tmp_path / "track.json"
    track.write_text(json.dumps(rows))
    grown = sm.compose(fg=layers, background=background, method="stm", steps=2, trajectory=track)
    areas = (grown.alpha > 0.5).sum(axis=(1, 2))
    xs = [np.nonzero(a > 0.5)[1].mean() for a in grown.alpha]
    assert areas[-1] > 1.8 * areas[0] and xs[-1] > xs[0] + 0.2 * SIZE[1]  # (plus its own motion)
    assert grown.meta["placement"]["scale"][0] == pytest.approx(0.4)


def test_several_subjects_in_order_with_the_default_model(scene):
    layers, background = scene
    other, _ = render_scene(11, frames=12, size=SIZE)
    both = sm.compose(fg=[layers, other], background=background, method="stm", steps=2, seed=1)
    again = sm.compose(fg=[layers, other], background=background, method="stm", steps=2, seed=1)
    assert np.array_equal(both.frames, again.frames) and len(both.meta["mirrored"]) == 2  # deterministic
    one = sm.compose(fg=layers, background=background, method="stm", steps=2, seed=1)
    assert both.alpha.sum() > one.alpha.sum()  # the second subject adds to the union matte
    assert np.array_equal(both.frames[both.alpha == 0], layers.background[both.alpha == 0])


def test_bad_compose_inputs_are_named(scene, files, tmp_path, capsys):
    layers, background = scene
    # A Layers folder whose matte is another size than its videos.
    broken = tmp_path / "broken"
    shutil.copytree(files / "subject", broken)
    small, _ = render_scene(3, frames=12, size=(48, 64))
    small.save(tmp_path / "small")
    shutil.copy(tmp_path / "small" / "alpha.mkv", broken / "alpha.mkv")
    out = tmp_path / "out.mp4"
    street = str(files / "street.mp4")
    assert main(["compose", "--fg", str(broken), "--bg", street, "-o", str(out)]) == 2
    error = capsys.readouterr().err
    assert "alpha.mkv" in error and "64" in error and len(error.strip().splitlines()) == 1
    # A matte shorter than its foreground video, read a chunk at a time.
    from splitmerge.errors import LayersFormatError
    from splitmerge.video.layers import LayersStream

    short_matte = tmp_path / "short_matte"
    shutil.copytree(files / "subject", short_matte)
    shorter, _ = render_scene(3, frames=8, size=SIZE)
    shorter.save(tmp_path / "shorter")
    shutil.copy(tmp_path / "shorter" / "alpha.mkv", short_matte / "alpha.mkv")
    with pytest.raises(LayersFormatError, match="different frame counts"):
        list(LayersStream(short_matte).chunks(12, 5))
    # Layers whose arrays disagree cannot even be made.
    with pytest.raises(ShapeError):
        sm.Layers(layers.frames, layers.alpha[:, :-2], layers.foreground, layers.background, layers.fps)
    # A trajectory shorter than the clip, a malformed one, a bad scale, both position and trajectory.
    short = tmp_path / "short.csv"
    short.write_text("0.5,0.5\n0.6,0.5\n")
    assert main(["compose", "--fg", str(files / "subject"), "--bg", street, "-o", str(out), "--trajectory",
                 str(short)]) == 2
    assert "2 rows for 12 frames" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"x": 0.5}]))
    with pytest.raises(OptionError, match="not a trajectory"):
        sm.compose(fg=layers, background=background, method="copy-paste", trajectory=bad)
    with pytest.raises(OptionError, match="scale must be above 0"):
        sm.compose(fg=layers, background=background, method="copy-paste", trajectory=[[0.5, 0.5, 0.0]] * 12)
    with pytest.raises(OptionError, match="scale -1"):
        sm.compose(fg=layers, background=background, method="copy-paste", scale=-1)
    with pytest.raises(OptionError, match="not both"):
        sm.compose(fg=layers, background=background, method="copy-paste", position=(0.5, 0.5), trajectory=bad)
    with pytest.raises(OptionError, match="placement 'somewhere'"):
        sm.compose(fg=layers, background=background, placement="somewhere")
    # A background that is not a video; a missing model folder.
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    assert main(["compose", "--fg", str(files / "subject"), "--bg", str(text), "-o", str(out)]) == 2
    assert "notes.mp4" in capsys.readouterr().err
    assert main(["compose", "--fg", str(files / "subject"), "--bg", street, "-o", str(out), "--model",
                 str(tmp_path / "nomodel")]) == 2
    assert "no Composer" in capsys.readouterr().err
    assert not out.exists()  # nothing half-written


def test_orientation_reads_the_stated_and_the_observed_direction():
    from splitmerge.merge.orientation import observed_direction, should_mirror, stated_direction

    assert stated_direction("A cup of coffee moves to the right away from the camera across brick.") == 1
    assert stated_direction("A grey subject in the lower left of the frame moves slowly to the left. "
                            "The camera pans right.") == -1
    assert stated_direction("A dog walking leftwards on grass") == -1
    assert stated_direction("A subject stays in place. The camera pans left.") == 0  # the camera is not the subject
    assert stated_direction("a cat runs to the left while a dog runs to the right") == 0  # both: no one direction
    alpha = np.zeros((9, 20, 40), np.float32)
    for t in range(9):
        alpha[t, 5:15, 4 + 3 * t: 10 + 3 * t] = 1
    assert observed_direction(alpha) == 1 and observed_direction(alpha[:, :, ::-1]) == -1
    assert observed_direction(np.repeat(alpha[:1], 9, axis=0)) == 0  # standing still
    assert observed_direction(np.zeros_like(alpha)) == 0
    assert should_mirror("it moves to the left", alpha) and not should_mirror("it moves to the right", alpha)
    assert not should_mirror("a red box", alpha)  # the text says nothing: keep


@pytest.mark.parametrize("method, chunk", [("stm", 5), ("copy-paste", 7)])
def test_streamed_compose_writes_what_compose_in_memory_writes(tmp_path, method, chunk):
    """`compose_to_file` (what the CLI runs) reads a few frames at a time, yet writes the same result, frame for
    frame, as `sm.compose` followed by `save`: two subjects, a trajectory, the map's windows across chunks."""
    from splitmerge.merge.stream import compose_to_file

    first, _ = render_scene(4, frames=37, size=(60, 90))
    second, _ = render_scene(9, frames=40, size=(72, 96))
    first.save(tmp_path / "a")
    second.save(tmp_path / "b")
    street, _ = render_scene(12, frames=45, size=(80, 120))
    sm.write_video(tmp_path / "street.mp4", sm.Video(street.background, 25.0))
    track = [[0.3 + 0.01 * t, 0.6, 0.8] for t in range(37)]
    options = {"method": method, "steps": 2, "seed": 5, "trajectory": track, "placement": "model"}
    folders = [tmp_path / "a", tmp_path / "b"]
    meta = compose_to_file(folders, tmp_path / "street.mp4", tmp_path / "streamed.mp4",
                           layers_out=tmp_path / "streamed_layers", chunk=chunk, **options)
    kept = sm.compose(fg=[sm.Layers.load(f) for f in folders], background=sm.read_video(tmp_path / "street.mp4"),
                      **options)
    kept.save(tmp_path / "kept.mp4")
    streamed, in_memory = sm.read_video(tmp_path / "streamed.mp4"), sm.read_video(tmp_path / "kept.mp4")
    assert streamed.frames.shape == (37, 80, 120, 3) and streamed.fps == in_memory.fps
    assert np.array_equal(streamed.frames, in_memory.frames)
    assert meta["frames"] == 37 and meta.get("mirrored") == kept.meta.get("mirrored")
    layers = sm.Layers.load(tmp_path / "streamed_layers")
    assert np.abs(layers.alpha - kept.alpha).max() <= 0.5 / 255 + 1e-6  # (the matte file is quantised)
