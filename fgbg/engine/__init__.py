"""Where work fans out: one pure function per shard mapped over shard tasks, results as they finish.

Two engines give the same results and the same errors:

- ``local`` (the default): spawned processes on this machine (:mod:`fgbg.engine.local`);
- ``ray``: Ray tasks on a cluster, or on a local Ray instance (:mod:`fgbg.engine.ray_engine`).

A work function gets everything it needs as arguments: ``fn(task)``, or ``fn(shared, task)``
when a ``shared`` payload is given (e.g. a store's prepared assets as encoded bytes). The
local engine hands the payload to each worker once, through its initializer; Ray puts it in
its object store once and every worker process fetches it once. Outputs that go to files
(shards) are written by the workers under the store path, which, on a cluster, must be on a
file system every node sees; results (records, histograms) come back to the caller.

A depth network on Ray runs in actors that hold it once (on GPUs where there are some):
``fgbg.engine.ray_engine.depth_actors``; the shard tasks send it their batches.
"""

from __future__ import annotations

import socket
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from fgbg.engine import local
from fgbg.errors import UserError

ENGINES = ("local", "ray")
DEFAULT_RAY_ADDRESS = "auto"  # RAY_ADDRESS, else a running local cluster, else a new local instance


def check_engine(engine: str, workers: int | None = None) -> None:
    """Refuse an unknown engine, a negative worker count, or ``workers=0`` (this process) with Ray.

    Raises:
        UserError: one line naming the flag.
    """
    if engine not in ENGINES:
        raise UserError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    local.worker_count(workers, 1)
    if engine == "ray" and workers == 0:
        raise UserError("--workers 0 works in this process; with --engine ray give a number of tasks at once, or leave it out (all of the cluster's CPUs)")


def map_shards(
    fn: Callable,
    tasks: Iterable,
    weights: Iterable[int] | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    *,
    shared: Any = None,
    engine: str = "local",
    ray_address: str = DEFAULT_RAY_ADDRESS,
    unit: str = "sample",
    desc: str | None = None,
    done: int = 0,
    describe: Callable[[Any], str] = repr,
) -> Iterator:
    """Yield ``fn(task)`` (or ``fn(shared, task)``) for every task, in completion order.

    Args:
        fn: a module-level function, importable by the workers (Ray nodes need fgbg installed).
        tasks: picklable arguments, one per shard.
        weights: progress increment per task (e.g. samples in the shard); 1 each if None.
        workers: local: processes (None = CPU count, 0 = this process); ray: tasks at
            once (None = all of the cluster's CPUs).
        progress: None = a bar on a terminal, sparse log lines otherwise; False = silent.
        shared: a payload every task needs (None: ``fn`` takes the task alone); sent
            once per worker process, not once per task.
        engine: "local" or "ray".
        ray_address: with Ray: "auto" (RAY_ADDRESS, else a running local cluster, else
            a new local instance), "local" (always a new one), or a cluster address.
        done: work done before this call (a resumed run), shown in the progress.
        describe: names a task in error messages, e.g. ``"shard-000003"``.

    Raises (when iterated): as :func:`fgbg.engine.local.map_shards`, for either engine:
        UserError as the task raised it; WorkerFailed naming the task (any other
        exception, or a worker that died, on Ray after its retries); KeyboardInterrupt
        after the outstanding tasks are stopped.
    """
    check_engine(engine, workers)
    if engine == "ray":
        from fgbg.engine import ray_engine

        return ray_engine.map_shards(fn, tasks, weights, workers, progress, shared=shared, address=ray_address,
                                     unit=unit, desc=desc, done=done, describe=describe)  # fmt: skip
    if shared is None:
        return local.map_shards(fn, tasks, weights, workers, progress, unit=unit, desc=desc, done=done, describe=describe)
    return local.map_shards(
        partial(local.call_with_shared, fn), tasks, weights, workers, progress, unit=unit, desc=desc,
        initializer=local.keep_shared, initargs=(shared,), done=done, describe=describe,
    )  # fmt: skip



def visible_store(store: str, marker: str) -> Path:
    """The store folder as this worker sees it, checked by a file the driver wrote in it.

    Raises:
        UserError: ``store/marker`` is not there: on a cluster, a node without the shared
            file system (one line, naming the node).
    """
    path = Path(store)
    if not (path / marker).exists():
        raise UserError(
            f"{store}: not visible on node {socket.gethostname()} (no {marker} there); with --engine ray"
            " the store must be on a file system every node sees (NFS, a mounted bucket ...)"
        )
    return path
