"""Where a sweep's tasks run: a local process pool (the default) or Ray (one machine or a cluster).

Both have one method, ``map(fn, tasks)``: an iterator over ``fn(task)`` results *as they
complete* (not in task order), with at most ``in_flight`` tasks submitted at a time, so a
sweep of thousands of runs neither floods the workers nor holds every result future. A
task carries its own seed, so where or in which order it runs changes nothing in its result.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterable, Iterator, Optional


class LocalPool:
    """``workers`` processes on this machine (spawned: no state inherited from the coordinator)."""

    name = "local"

    def __init__(self, workers: Optional[int] = None, in_flight: Optional[int] = None):
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.in_flight = in_flight or 2 * self.workers

    def map(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        tasks = iter(tasks)
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(self.workers, mp_context=ctx) as pool:  # a worker imports fn's module once
            pending = set()
            try:
                for t in tasks:
                    pending.add(pool.submit(fn, t))
                    if len(pending) >= self.in_flight:
                        break
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        yield fut.result()
                        nxt = next(tasks, None)
                        if nxt is not None:
                            pending.add(pool.submit(fn, nxt))
            finally:
                for fut in pending:
                    fut.cancel()


class RayBackend:
    """Ray core tasks: ``ray.init(address)`` joins a cluster (``auto``, or ``ray://host:10001``); no address
    starts a local Ray with ``workers`` CPUs. Each task is one Ray task (one CPU); results are taken as
    they complete (``ray.wait``), with at most ``in_flight`` outstanding."""

    name = "ray"

    def __init__(self, address: Optional[str] = None, workers: Optional[int] = None, in_flight: Optional[int] = None):
        try:
            import ray  # an optional dependency: `pip install 'desim[ray]'`
        except ImportError:
            raise RuntimeError("the ray backend needs Ray: pip install 'ray>=2.9' (or desim[ray])") from None
        self.ray = ray
        self.address = address
        self.workers = workers
        self._started = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if address:
                ray.init(address=address, **kw)
            else:
                ray.init(num_cpus=max(1, workers or os.cpu_count() or 1), **kw)
            self._started = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.in_flight = in_flight or 2 * max(1, min(cpus, workers or cpus))

    def map(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        ray = self.ray
        remote = ray.remote(num_cpus=1, max_retries=0)(fn)
        tasks = iter(tasks)
        pending: list = []
        try:
            for t in tasks:
                pending.append(remote.remote(t))
                if len(pending) >= self.in_flight:
                    break
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    yield ray.get(ref)
                    nxt = next(tasks, None)
                    if nxt is not None:
                        pending.append(remote.remote(nxt))
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()
            self._started = False


def backend(name: str, *, workers: Optional[int] = None, address: Optional[str] = None):
    """A backend by name: ``local`` (a process pool) or ``ray``."""
    if name == "local":
        if address:
            raise ValueError("--address is for the ray backend")
        return LocalPool(workers)
    if name == "ray":
        return RayBackend(address, workers)
    raise ValueError(f"unknown backend {name!r} (expected local or ray)")
