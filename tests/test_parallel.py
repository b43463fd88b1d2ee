"""Per-frame threads (`splitmerge.parallel`): results in order, the same whatever the thread count."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import splitmerge as sm
from splitmerge.decompose.pipeline import split
from splitmerge.errors import OptionError
from splitmerge.parallel import ENVIRONMENT, frame_map, in_worker, local_cache, thread_count

from conftest import moving_subject_clip


def test_frame_map_keeps_the_order_and_uses_several_threads(monkeypatch):
    monkeypatch.setenv(ENVIRONMENT, "3")
    names = set()

    def square(value):
        names.add(threading.current_thread().name)
        return value * value

    assert frame_map(square, range(50)) == [value * value for value in range(50)]
    assert all(name.startswith("splitmerge-frames") for name in names)


def test_one_thread_runs_inline_and_nested_maps_run_inline(monkeypatch):
    monkeypatch.setenv(ENVIRONMENT, "1")
    assert frame_map(lambda _: threading.current_thread() is threading.main_thread(), range(4)) == [True] * 4
    monkeypatch.setenv(ENVIRONMENT, "2")
    inner = frame_map(lambda value: (in_worker(), frame_map(lambda x: x + 1, range(value))), range(3))
    assert [flag for flag, _ in inner] == [True] * 3
    assert [values for _, values in inner] == [[], [1], [1, 2]]
    assert not in_worker()


def test_an_error_in_a_frame_reaches_the_caller(monkeypatch):
    monkeypatch.setenv(ENVIRONMENT, "2")

    def fail_on_three(value):
        if value == 3:
            raise ValueError("frame 3")
        return value

    with pytest.raises(ValueError, match="frame 3"):
        frame_map(fail_on_three, range(8))


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_thread_count_is_an_option_error(monkeypatch, value):
    monkeypatch.setenv(ENVIRONMENT, value)
    with pytest.raises(OptionError, match=ENVIRONMENT):
        thread_count()


def test_local_cache_makes_one_object_per_thread_and_key(monkeypatch):
    monkeypatch.setenv(ENVIRONMENT, "2")
    made = frame_map(lambda _: id(local_cache(("test", 1), object)), range(20))
    assert 1 <= len(set(made)) <= 2
    assert local_cache(("test", 1), object) is local_cache(("test", 1), object)


def test_split_is_the_same_on_one_thread_and_on_four(monkeypatch):
    frames, _, _ = moving_subject_clip(count=20, camera="pan")
    results = []
    for threads in ("1", "4"):
        monkeypatch.setenv(ENVIRONMENT, threads)
        layers = split(sm.Video(frames, 25), caption="a test")
        results.append((layers.alpha, layers.background, layers.effects))
    for single, several in zip(*results, strict=True):
        assert np.array_equal(single, several)
