"""Where a build's work runs: in this process, in a pool of local processes, or on Ray.

Each engine maps one picklable, module-level function over a list of JSON-able items and yields
``(item, result)`` as results arrive (any order). The function does its own writing (atomically), so an engine
only schedules; the same items give the same files whichever engine ran them.

Local worker processes die with the process that started them (SIGKILL included: Linux's parent-death signal,
elsewhere a watchdog thread), so a killed build leaves nothing running that could still write. When a worker dies
while running an item (killed, out of memory, crashed), the pool starts again and the items it held are run
again once; an item held by a dying worker twice gets a `WorkerDied` instance as its result instead.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterator

from ..errors import OptionError

ENGINES = ("local", "ray")
STRIKES = 2  # a worker died holding the item this many times: the item fails (WorkerDied), the rest go on
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class WorkerDied(ChildProcessError):
    """A worker process ended while it ran this item (killed, out of memory, crashed): the system failed, not
    the item (an OSError, so a build retries the item on its next run)."""


def _quiet_worker() -> None:
    """Per worker process: one thread per library, so N workers use N cores and not N x cores."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("SPLITMERGE_THREADS", "1")  # splitmerge.parallel
    os.environ.setdefault("GLOG_minloglevel", "2")
    import cv2

    cv2.setNumThreads(1)


def _die_with_parent(parent: int) -> None:
    """End this process as soon as `parent` is gone, however it ended (a killed driver leaves no writers)."""
    # Linux sends the signal when the *thread* that started this process ends: the pool starts its workers from
    # the thread that submits (the build's), which outlives them.
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before the signal was armed
                    os._exit(1)
                return
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="parent-watchdog").start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


_RUNNING: tuple[Any, int] | None = None  # in a pool worker: (the pool's running table, this worker's slot)


def _start_worker(parent: int, running, slots) -> None:
    """Pool initializer: die with the driver, quiet the libraries, take a slot in the running table."""
    global _RUNNING
    _die_with_parent(parent)
    _quiet_worker()
    with slots.get_lock():
        _RUNNING = (running, slots.value)
        slots.value += 1


def _call(function: Callable[[Any], Any], index: int, item: Any) -> Any:
    """Run one item in a pool worker, its index in the running table meanwhile (read when the worker dies)."""
    running, slot = _RUNNING
    running[slot] = index
    try:
        return function(item)
    finally:
        running[slot] = -1


class LocalPool:
    """Fresh (spawned) worker processes that die with this one, and know which items they are running, so that
    when one dies the items it held are known and the pool starts again."""

    def __init__(self, workers: int):
        self.workers = workers
        self._start()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")  # fork + PyAV/OpenCV threads can deadlock
        self.running = context.RawArray("q", [-1] * self.workers)  # no lock: a killed worker may not hold one
        self.executor = concurrent.futures.ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=_start_worker,
            initargs=(os.getpid(), self.running, context.Value("i", 0)))

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    def map(self, function: Callable[[Any], Any], items: list) -> Iterator[tuple[Any, Any]]:
        """Yield (item, result) as they finish; a worker's death restarts the pool (see the module docstring)."""
        strikes = [0] * len(items)
        pending = list(range(len(items)))
        fruitless = 0
        while pending:
            futures = {self.executor.submit(_call, function, index, items[index]): index for index in pending}
            pending = []
            try:
                for future in concurrent.futures.as_completed(futures):
                    yield items[futures[future]], future.result()
                    del futures[future]
                return
            except BrokenProcessPool:
                held = {index for index in self.running if index >= 0}
                fruitless = fruitless + 1 if not held else 0
                if fruitless >= STRIKES:
                    raise WorkerDied("worker processes keep dying outside any item") from None
            self.close()
            self._start()
            for future, index in futures.items():
                if not future.exception():
                    yield items[index], future.result()
                    continue
                strikes[index] += index in held
                if strikes[index] >= STRIKES:
                    yield items[index], WorkerDied(f"a worker process died running it {STRIKES} times "
                                                   "(killed, out of memory, or crashed)")
                else:
                    pending.append(index)


def run_local(function: Callable[[Any], Any], items: list, workers: int) -> Iterator[tuple[Any, Any]]:
    """`workers` == 1: in this process, in order. More: a `LocalPool`."""
    if workers <= 1:
        for item in items:
            yield item, function(item)
        return
    with _local_pool(workers) as pool:
        yield from pool.map(function, items)


_POOL: LocalPool | None = None  # the pool of an open `session`, if any


@contextlib.contextmanager
def _local_pool(workers: int) -> Iterator[LocalPool]:
    """The open session's pool, or a new one for this call."""
    if _POOL is not None:
        yield _POOL
        return
    pool = LocalPool(workers)
    try:
        yield pool
    finally:
        pool.close()


def _ray_row(function: Callable[[Any], Any]) -> Callable[[dict], dict]:
    def apply(row: dict) -> dict:
        _quiet_worker()
        return {"index": row["index"], "result": function(row["item"])}

    return apply


@contextlib.contextmanager
def session(engine: str, workers: int = 1, address: str | None = None) -> Iterator[None]:
    """Keep the engine up for several `run` calls (Ray, or the local pool, starts once, not per call).
    `address`: a running Ray cluster (``ray start --head`` prints it; set ``RAY_AUTH_MODE=disabled`` on head and
    driver), or None for a local Ray with `workers` CPUs."""
    global _POOL
    if engine != "ray":
        if workers <= 1 or _POOL is not None:
            yield
            return
        with _local_pool(workers) as pool:
            _POOL = pool
            try:
                yield
            finally:
                _POOL = None
        return
    try:
        import ray
    except ImportError:
        raise OptionError("engine ray: ray is not installed: pip install 'splitmerge[ray]'") from None
    import logging

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # one INFO line per dataset stage otherwise
    started_here = not ray.is_initialized()
    if started_here:
        options = {"address": address} if address else {"num_cpus": max(workers, 1)}
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, **options)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        yield
    finally:
        if started_here:
            ray.shutdown()


def run_ray(function: Callable[[Any], Any], items: list, workers: int, address: str | None
            ) -> Iterator[tuple[Any, Any]]:
    """Ray Data: one row per item, `function` applied by ``Dataset.map`` on one CPU each. Every node needs
    splitmerge installed and the inputs at the same paths."""
    if not items:
        return
    with session("ray", workers, address):
        import ray

        rows = [{"index": index, "item": item} for index, item in enumerate(items)]
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map(_ray_row(function), num_cpus=1)
        for row in dataset.iter_rows():
            yield items[row["index"]], row["result"]


def run(function: Callable[[Any], Any], items: list, engine: str = "local", workers: int = 1,
        address: str | None = None) -> Iterator[tuple[Any, Any]]:
    """Map `function` over `items` on `engine`; yields (item, result) as they finish."""
    if engine not in ENGINES:
        raise OptionError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if not isinstance(workers, int) or workers < 1:
        raise OptionError(f"workers {workers!r}: must be a positive integer")
    if engine == "ray":
        return run_ray(function, items, workers, address)
    if address:
        raise OptionError("--ray-address needs --engine ray")
    return run_local(function, items, workers)
