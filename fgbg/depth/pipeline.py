"""Labelling as a pipeline: CPU threads prepare and finish items while the network runs batched.

    items --prepare--> batches of `batch` --infer--> finish --> out, in input order

``prepare`` (decode or compose, the network's input) and ``finish`` (resize back, scale,
PNG encoding) are per item; ``infer`` takes a batch. Three ways to run them:

- ``threads=0``: all in the calling thread, batch after batch (a worker process of many,
  each with one core).
- ``threads=N`` (a GPU): ``infer`` runs in the calling thread, one batch at a time, so one
  network serves the process (one per GPU); N CPU threads prepare the batches after the
  one on the device and finish the ones before it.
- ``threads=N, parallel_batches=True`` (the CPU): N threads each run whole batches
  (prepare, infer, finish), N batches at once, with a single-threaded network apiece:
  ONNX Runtime and torch give the same bits for a batch however many cores there are,
  which an intra-op-threaded call does not.

numpy, PIL, zlib, ONNX Runtime and torch release the GIL in their heavy parts, so the
threads overlap for real. At most ``max_in_flight`` items are started and not yet handed
out (memory stays bounded whatever the input's length), and results come out in input
order: what is written depends neither on the batch size nor on the threads.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

T = TypeVar("T")  # an item: a sample's reference, an image path
P = TypeVar("P")  # a prepared item (its network input and whatever finish needs)
Q = TypeVar("Q")  # the network's output for one item
R = TypeVar("R")  # a finished item

BATCHES_AHEAD = 2  # batches prepared ahead of the network, besides the one it runs and the ones finishing


def pipeline_threads(on_gpu: bool, cpu_threads: int) -> dict:
    """How a network's labelling uses the cores: ``pipeline(**pipeline_threads(...))``.

    On a GPU, one process drives the network and the other cores feed it; on the CPU,
    ``cpu_threads`` batches at once (1: all in the calling thread, as in each of one worker
    process per core).
    """
    if on_gpu:
        return {"threads": max(1, (os.cpu_count() or 1) - 1)}
    return {"threads": cpu_threads if cpu_threads > 1 else 0, "parallel_batches": True}


def default_in_flight(batch: int, threads: int, parallel_batches: bool = False) -> int:
    """Items started and not yet handed out: on the CPU a batch per thread and one more; feeding a
    GPU, the batch on the device, two more prepared, and the finishing ones."""
    if parallel_batches:
        return (threads + 1) * batch
    return (BATCHES_AHEAD + 2) * batch + threads


def pipeline(
    items: Iterable[T],
    prepare: Callable[[T], P],
    infer: Callable[[list[P]], Sequence[Q]],
    finish: Callable[[T, P, Q], R],
    batch: int,
    threads: int = 0,
    max_in_flight: int | None = None,
    parallel_batches: bool = False,
) -> Iterator[R]:
    """Yield ``finish(item, prepare(item), out)`` for every item, in the order of ``items``.

    ``infer`` gets a list of up to ``batch`` prepared items (fewer only at the end) and
    returns one output per item, in order. An exception in any stage reaches the caller,
    and the pending work is dropped.

    Args:
        batch: items per ``infer`` call, at least 1.
        threads: CPU threads; 0 = all in the calling thread.
        max_in_flight: items started and not yet yielded, at most; at least ``batch``
            (default :func:`default_in_flight`).
        parallel_batches: the threads run whole batches, ``infer`` included (it must be
            thread-safe), rather than feeding ``infer`` in the calling thread.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    if threads == 0:
        yield from _in_this_thread(iter(items), prepare, infer, finish, batch)
        return
    bound = max(batch, max_in_flight or default_in_flight(batch, threads, parallel_batches))
    pool = ThreadPoolExecutor(threads, thread_name_prefix="fgbg-pipeline")
    try:
        if parallel_batches:
            yield from _batches_on_threads(iter(items), prepare, infer, finish, batch, pool, max(1, bound // batch))
        else:
            yield from _threads_feed_this_one(iter(items), prepare, infer, finish, batch, pool, bound)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _in_this_thread(items: Iterator[T], prepare, infer, finish, batch: int) -> Iterator[R]:
    while chunk := list(islice(items, batch)):
        yield from _whole_batch(chunk, prepare, infer, finish)


def _whole_batch(chunk: list[T], prepare, infer, finish) -> list[R]:
    prepared = [prepare(item) for item in chunk]
    return [finish(item, p, q) for item, p, q in zip(chunk, prepared, infer(prepared), strict=True)]


def _batches_on_threads(items: Iterator[T], prepare, infer, finish, batch: int, pool, most: int) -> Iterator[R]:
    running: deque[Future] = deque()  # whole batches, in input order; at most `most` of them
    while True:
        while len(running) < most and (chunk := list(islice(items, batch))):
            running.append(pool.submit(_whole_batch, chunk, prepare, infer, finish))
        if not running:
            return
        yield from running.popleft().result()


def _threads_feed_this_one(items: Iterator[T], prepare, infer, finish, batch: int, pool, bound: int) -> Iterator[R]:
    preparing: deque[tuple[T, Future]] = deque()  # not yet through the network, in input order
    finishing: deque[Future] = deque()  # through it (all before the preparing ones), in input order
    exhausted = False
    while True:
        while not exhausted and len(preparing) + len(finishing) < bound:
            item = next(items, _END)
            if item is _END:
                exhausted = True
            else:
                preparing.append((item, pool.submit(prepare, item)))
        if finishing and finishing[0].done():
            yield finishing.popleft().result()  # then top up again: one in, one out
        elif len(preparing) >= batch or (exhausted and preparing):
            chunk = [preparing.popleft() for _ in range(min(batch, len(preparing)))]
            prepared = [future.result() for _, future in chunk]
            outputs = infer(prepared)  # the threads keep preparing and finishing meanwhile
            for (item, _), p, q in zip(chunk, prepared, outputs, strict=True):
                finishing.append(pool.submit(finish, item, p, q))
        elif finishing:
            yield finishing.popleft().result()  # the bound is reached: wait for the oldest
        else:
            return


_END = object()
