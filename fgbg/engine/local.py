"""Run one function per shard on spawned worker processes, with a progress bar.

Workers are spawned (not forked) and each opens its own files: nothing but the task
tuple and the (small) result crosses the process boundary. ``generate``, ``stats`` and
``verify`` all use it.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Callable, Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def map_shards(
    fn: Callable[[T], R],
    tasks: Iterable[T],
    weights: Iterable[int] | None = None,
    workers: int | None = None,
    progress: bool = False,
    unit: str = "sample",
    desc: str | None = None,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    done: int = 0,
) -> Iterator[R]:
    """Yield ``fn(task)`` for every task, in completion order.

    Args:
        fn: a module-level function (it is pickled by name for the workers).
        tasks: picklable arguments, one per shard.
        weights: progress-bar increment per task (e.g. samples in the shard); 1 each if None.
        workers: processes; ``None`` = CPU count, ``<= 1`` (or a single task) = this process.
        progress: show a tqdm bar on stderr.
        initializer: called with ``initargs`` once in every worker (or here) before any task,
            e.g. to open the worker's own files.
        done: work already done before this call (a resumed run), shown on the bar.
    """
    tasks = list(tasks)
    weights = [1] * len(tasks) if weights is None else list(weights)
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=sum(weights) + done, initial=done, unit=unit, desc=desc, disable=not progress, smoothing=0.1)
    with bar:
        if workers <= 1 or len(tasks) <= 1:
            if initializer is not None:
                initializer(*initargs)
            for task, weight in zip(tasks, weights):
                yield fn(task)
                bar.update(weight)
            return
        ctx = multiprocessing.get_context("spawn")
        indexed = list(enumerate(tasks))
        with ctx.Pool(min(workers, len(tasks)), initializer=initializer, initargs=initargs) as pool:
            for i, result in pool.imap_unordered(_Indexed(fn), indexed):
                yield result
                bar.update(weights[i])


class _Indexed:
    """``fn`` wrapped to return the task's position with its result (picklable)."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def __call__(self, item: tuple[int, object]) -> tuple[int, object]:
        i, task = item
        return i, self.fn(task)
