"""Where a build's work runs: in this process, in a pool of local processes, or on Ray.

Each engine maps one picklable, module-level function over a list of JSON-able items and yields
``(item, result)`` as results arrive (any order). The function does its own writing (atomically), so an engine
only schedules; the same items give the same files whichever engine ran them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os
from typing import Any, Callable, Iterator

from ..errors import OptionError

ENGINES = ("local", "ray")


def _quiet_worker() -> None:
    """Per worker process: one thread per library, so N workers use N cores and not N x cores."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("GLOG_minloglevel", "2")
    import cv2

    cv2.setNumThreads(1)


def run_local(function: Callable[[Any], Any], items: list, workers: int) -> Iterator[tuple[Any, Any]]:
    """`workers` == 1: in this process, in order. More: a pool of fresh (spawned) processes."""
    if workers <= 1:
        for item in items:
            yield item, function(item)
        return
    with _local_pool(workers) as pool:
        futures = {pool.submit(function, item): item for item in items}
        for future in concurrent.futures.as_completed(futures):
            yield futures[future], future.result()


_POOL: concurrent.futures.ProcessPoolExecutor | None = None  # the pool of an open `session`, if any


@contextlib.contextmanager
def _local_pool(workers: int) -> Iterator[concurrent.futures.ProcessPoolExecutor]:
    """The open session's pool, or a new one for this call."""
    if _POOL is not None:
        yield _POOL
        return
    context = multiprocessing.get_context("spawn")  # fork + PyAV/OpenCV threads can deadlock
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_quiet_worker) as pool:
        yield pool


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
