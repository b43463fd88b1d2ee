"""Per-frame work on several cores, in threads: OpenCV, SciPy's ndimage and NumPy release the GIL in their loops.

The Split stage does most of its work frame by frame (optical flow, warps, masks), each frame independent of the
others; `frame_map` runs such a function over the frames on `thread_count()` threads and returns the results in
order, so the output is the same whatever the number of threads.

`SPLITMERGE_THREADS` sets the number (default: the cores this process may use, at most `MAX_THREADS`); a build's
worker processes set it to 1 (one process per core already). OpenCV's own threads are kept to one per worker
thread while a map runs, so two threads on two cores do not become four.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

import cv2

from .errors import OptionError

MAX_THREADS = 8
ENVIRONMENT = "SPLITMERGE_THREADS"

Item = TypeVar("Item")
Result = TypeVar("Result")

_pools: dict[int, ThreadPoolExecutor] = {}
_lock = threading.Lock()
_local = threading.local()


def thread_count() -> int:
    """Threads per map: `SPLITMERGE_THREADS` if set (a whole number >= 1), else the usable cores (<= 8)."""
    value = os.environ.get(ENVIRONMENT, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise OptionError(f"{ENVIRONMENT}={value!r}: expected a whole number of threads >= 1")
        return int(value)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_THREADS))


def _pool(threads: int) -> ThreadPoolExecutor:
    with _lock:
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="splitmerge-frames")
        return _pools[threads]


@contextlib.contextmanager
def _opencv_threads(count: int):
    previous = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def in_worker() -> bool:
    """True inside a `frame_map` worker thread (nested maps then run inline)."""
    return getattr(_local, "active", False)


def _run(function, item):
    _local.active = True
    try:
        return function(item)
    finally:
        _local.active = False


def frame_map(function: Callable[[Item], Result], items: Iterable[Item]) -> list[Result]:
    """[function(item) for item in items], on `thread_count()` threads; results in the items' order.

    `function` must not depend on the order it is called in (each frame on its own). A map started from inside
    another map's function runs inline. An exception in any call is raised here (the first in item order)."""
    items = list(items)
    threads = min(thread_count(), len(items))
    if threads <= 1 or in_worker():
        return [function(item) for item in items]
    with _opencv_threads(1):
        return list(_pool(threads).map(lambda item: _run(function, item), items))


def local_cache(key, make: Callable[[], Result]) -> Result:
    """A per-thread object (an OpenCV flow engine is not safe to share between threads): made once per thread and
    `key`."""
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    if key not in cache:
        cache[key] = make()
    return cache[key]
