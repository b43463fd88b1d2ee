"""The ``person`` segmenter (MediaPipe selfie segmentation, weights in the pip package) on a real clip."""

from __future__ import annotations

import numpy as np
import pytest

import splitmerge as sm
from splitmerge.decompose.backends import SplitClip, get_backend

pytest.importorskip("mediapipe")


@pytest.fixture(scope="module")
def carphone():
    return sm.read_video(sm.sample_path("carphone"), max_frames=12)


def test_person_segmenter_finds_the_talking_head_that_motion_misses(carphone):
    clip = SplitClip(carphone.frames, carphone.fps)
    person = get_backend("segmenter", "person").segment(clip)
    assert person.found and person.alpha.shape == carphone.frames.shape[:3]
    assert person.alpha.dtype == np.float32 and 0 <= person.alpha.min() <= person.alpha.max() <= 1
    # carphone (176x144): the man's face is around the middle of the upper half, the bright car window at the
    # top right is not him.
    face = person.alpha[:, 40:70, 70:100]
    window = person.alpha[:, 5:35, 150:176]
    assert face.mean() > 0.95 and window.mean() < 0.05
    assert 0.2 < person.alpha.mean() < 0.6
    soft = (person.alpha > 0) & (person.alpha < 1)
    assert soft.any() and soft.mean() < 0.2          # a soft edge (a few px in a 176x144 frame), not a blob
    assert np.isfinite(person.boxes).all()           # present in every frame
    motion = get_backend("segmenter", "motion").segment(SplitClip(carphone.frames, carphone.fps))
    assert motion.alpha[:, 40:70, 70:100].mean() < 0.5   # why this backend exists


def test_person_segmenter_reports_no_person_with_a_reason():
    frames, _, _ = _scene_without_people()
    result = get_backend("segmenter", "person").segment(SplitClip(frames, 25))
    assert not result.found and result.reason == "no person found" and not result.alpha.any()


def test_split_with_the_person_segmenter(tmp_path, carphone):
    meta = sm.split_to_folder(carphone, tmp_path / "layers", segmenter="person", caption="a man talking")
    layers = sm.Layers.load(tmp_path / "layers")
    assert meta["backends"]["segmenter"]["name"] == "person" and layers.num_frames == 12
    assert layers.meta["filters"]["passed"]


def _scene_without_people():
    from conftest import moving_subject_clip

    return moving_subject_clip(count=6, camera="none")
