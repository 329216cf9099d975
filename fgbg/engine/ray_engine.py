"""Run one function per shard as Ray tasks, on a cluster or a local Ray instance, with progress.

The same contract as :func:`fgbg.engine.local.map_shards` (results in completion order, the
same errors), on Ray's scheduling, transport and retries instead of home-made ones:

- a payload every task needs goes into the object store once (``ray.put``); tasks get a
  reference to it, not a copy, and each worker process fetches it on its first task only;
- a task whose worker process dies (a signal, the OOM killer, a lost node) is retried by
  Ray, and so is one that raised an ``OSError`` (a network file system hiccup), up to
  :data:`MAX_RETRIES` times; work functions commit their files by atomic rename, so a retried
  shard is never half-written or doubled;
- at most a bounded number of tasks are submitted at a time (2 per CPU of the cluster, or
  ``workers``), so a plan of a million shards costs the driver no memory;
- Ctrl-C (or any error) cancels the outstanding tasks; what was yielded stays yielded.

``address``: "auto" = ``ray.init()``'s own rule (RAY_ADDRESS, else the latest cluster started
on this machine, else a new local instance); "local" = always a new local instance; anything
else is a cluster address (``HOST:6379``, ``ray://HOST:10001``). A process that has already
called ``ray.init`` keeps its connection.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import ray
from ray.exceptions import RayError, RayTaskError

from fgbg.engine.local import task_error, with_progress
from fgbg.errors import UserError, WorkerFailed
from fgbg.progress import progress as progress_reporter

MAX_RETRIES = 3  # tries after the first, for a dead worker or an OSError
TASKS_PER_CPU = 2  # submitted ahead, so a worker never waits for the driver
CONNECT_SECONDS = 5.0  # for the head node to answer at --ray-address HOST:PORT
STOP_WAIT_SECONDS = 600.0  # on Ctrl-C or an error, for the tasks in flight (a shard each) to finish


def connect(address: str = "auto") -> None:
    """Join the cluster at ``address`` (see the module docstring), once per process.

    Raises:
        UserError: no cluster answers at ``address``.
    """
    if ray.is_initialized():
        return
    refuse_unreachable(address)
    try:
        with ctrl_c_not_inherited():
            ray.init(address=None if address == "auto" else address, logging_level=logging.WARNING,
                     include_dashboard=False)  # fmt: skip
    except ConnectionError as e:
        lines = str(e).strip().splitlines() or [type(e).__name__]
        raise UserError(f"--ray-address {address}: no Ray cluster there ({lines[0]}); start one with `ray start --head`, or use --ray-address auto") from None


@contextlib.contextmanager
def ctrl_c_not_inherited():
    """SIGINT ignored while ``ray.init`` starts a local instance: its processes (GCS, raylet) inherit
    that, so a terminal's Ctrl-C, sent to the whole foreground group, reaches only the driver, which
    cancels its tasks and exits 130, instead of killing the instance under it (Ray then aborts)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def refuse_unreachable(address: str) -> None:
    """A plain ``HOST:PORT`` nothing answers at fails in one line at once (Ray itself would retry for minutes).

    Raises:
        UserError: the connection is refused or times out.
    """
    host, _, port = address.rpartition(":")
    if address in ("auto", "local") or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as e:
        raise UserError(f"--ray-address {address}: nothing answers there ({e.strerror or e}); is `ray start --head` running on {host}?") from None


def cluster_cpus() -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


# ---------------------------------------------------------------- the worker side

_payload: tuple[str, Any] | None = None  # this worker process's shared payload: (object id, value)


def _fetched(box: list) -> Any:
    """The payload behind ``box = [ObjectRef]``: fetched from the object store on this process's first task."""
    global _payload
    ref = box[0]
    if _payload is None or _payload[0] != ref.hex():
        _payload = (ref.hex(), ray.get(ref))
    return _payload[1]


def run_task(fn: Callable, box: list | None, task: Any) -> Any:
    """A Ray task: ``fn(task)``, or ``fn(payload, task)`` (the ref in a list, so Ray does not fetch it for every task)."""
    return fn(task) if box is None else fn(_fetched(box), task)


# ---------------------------------------------------------------- the driver side


def map_shards(
    fn: Callable,
    tasks: Iterable,
    weights: Iterable[int] | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    *,
    shared: Any = None,
    address: str = "auto",
    unit: str = "sample",
    desc: str | None = None,
    done: int = 0,
    describe: Callable[[Any], str] = repr,
) -> Iterator:
    """Yield ``fn(task)`` (``fn(shared, task)`` with a payload) for every task, as Ray tasks finish.

    Arguments as :func:`fgbg.engine.map_shards`; ``workers`` = tasks at once (None: 2 per CPU
    of the cluster, so the next task is queued on every worker).

    Raises (at once): UserError when no cluster answers at ``address``.
    """
    tasks = list(tasks)
    weights = [1] * len(tasks) if weights is None else list(weights)
    connect(address)
    window = workers if workers else TASKS_PER_CPU * cluster_cpus()
    box = None if shared is None else [ray.put(shared)]
    remote = ray.remote(run_task).options(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=[OSError])
    submit = partial(remote.remote, fn, box)
    results = _as_finished(submit, tasks, window, describe)
    bar = partial(progress_reporter, sum(weights) + done, desc or "", unit, done, progress)
    return with_progress(results, weights, bar, desc or "")


def _as_finished(submit: Callable, tasks: list, window: int, describe: Callable) -> Iterator[tuple[int, Any]]:
    """``(index, result)`` as tasks finish, at most ``window`` submitted; on an early exit (Ctrl-C, a failed task)
    nothing more is submitted and the tasks in flight are left to finish, unrecorded: a rerun redoes their shards.
    Cancelling them instead meets a race in Ray 2.60 ("Tried to complete task that was not pending") that aborts
    the driver with Ray's stack trace about one run in four; a second Ctrl-C stops the wait."""
    todo = iter(enumerate(tasks))
    pending: dict[ray.ObjectRef, int] = {}

    def top_up() -> None:
        for index, task in itertools.islice(todo, window - len(pending)):
            pending[submit(task)] = index

    try:
        top_up()
        while pending:
            [ready], _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ready)
            result = _result(ready, describe(tasks[index]))
            top_up()  # before yielding: the cluster goes on while the caller commits
            yield index, result
    finally:
        if pending:  # a task ends with its shard whole or not written; the driver exits with none in flight
            ray.wait(list(pending), num_returns=len(pending), timeout=STOP_WAIT_SECONDS)


def _result(ref: ray.ObjectRef, what: str) -> Any:
    """The task's result, or the error the local engine would raise for it.

    Raises:
        UserError: the task raised one (as it was).
        WorkerFailed: another exception, or the task's worker died more than MAX_RETRIES times.
    """
    try:
        return ray.get(ref)
    except RayTaskError as e:
        cause = e.cause if isinstance(e.cause, BaseException) else e
        raise task_error(what, cause, str(e)) from None
    except RayError as e:
        lines = str(e).strip().splitlines() or [""]
        raise WorkerFailed(
            f"{what} failed on Ray after {MAX_RETRIES + 1} tries: {type(e).__name__}: {lines[0]}"
            " (a worker died: out of memory? see `ray status` and the Ray logs)"
        ) from None



# ---------------------------------------------------------------- depth networks on actors (GPU workers)


_round_robin = itertools.count(os.getpid())  # this process's next depth actor: processes start on different ones


class DepthActor:
    """One depth network, loaded once, on the actor's GPU (Ray sets CUDA_VISIBLE_DEVICES) or its CPU.

    :meth:`label` does what the local engine does for one batch, network input to map,
    so the maps are the local engine's on the same kind of device. ``device`` is the actor's
    own (see :func:`actor_placement`): ``cuda:0`` is the GPU Ray gave it.
    """

    def __init__(self, model: str, preset: str | None, device: str) -> None:
        from fgbg.depth.estimator import load_estimator
        from fgbg.engine.devices import DeviceError

        self.net, self.error, self.notes = None, None, []
        try:  # one thread: the bits of a CPU batch do not depend on cores
            self.net = load_estimator(model, preset, 1, device, self.notes.append)
        except DeviceError:  # Ray gave the actor a GPU (CUDA_VISIBLE_DEVICES) that torch cannot use
            self.error = DeviceError(
                f"a depth actor on {socket.gethostname()} holds a Ray GPU but torch sees none there (a CPU-only torch?);"
                " install a CUDA build of torch on the GPU nodes, or use --gpus-per-worker 0 (CPU actors)"
            )
        except UserError as e:  # raised by describe(): Ray reports an error in __init__ without its type
            self.error = e

    def describe(self) -> dict:
        """The network's description as this actor runs it: ``compute`` = device kind, GPU name, precision, providers.

        Raises:
            UserError: the actor could not load the network (EstimatorError, DeviceError), as it was.
        """
        if self.error is not None:
            raise self.error
        return self.net.description

    def device_notes(self) -> list[str]:
        """The one-line notes of loading the network here (e.g. no CUDA provider for ONNX: on the CPU)."""
        return self.notes

    def label(self, images: np.ndarray) -> list[np.ndarray]:
        """uint8 images (B, H, W, 3) -> float32 maps (H, W), one per image, unscaled."""
        from fgbg.depth.estimator import infer_batch

        raw = infer_batch(self.net, [self.net.to_input(image) for image in images])
        return [self.net.to_map(r, image.shape[:2]) for r, image in zip(raw, images)]


@dataclass
class ActorEstimator:
    """An estimator whose batches go to the depth actors, round robin (Ray shard tasks render with it,
    the driver labels backgrounds and ``depth-maps`` images with it).

    Preparing and encoding stay with the caller (on its CPU); ``threads`` batches are in
    flight at once, so the actors never wait for one caller's CPU work. ``description`` is
    the actors' own (:meth:`DepthActor.describe`): where the maps were really computed.
    """

    actors: list
    threads: int = 2
    description: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from fgbg.engine.devices import resolve_device

        self.device = resolve_device("cpu")  # where this side runs: the caller's CPU threads

    def to_input(self, image: np.ndarray) -> np.ndarray:
        return image  # the actor makes the network's input

    def infer(self, images: np.ndarray) -> np.ndarray:
        actor = self.actors[next(_round_robin) % len(self.actors)]
        return np.stack(ray.get(actor.label.remote(images)))

    def to_map(self, raw: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        return raw  # the actor made the map, at the image's size

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.infer(images)


def actor_placement(device: str, gpus: float | None, cluster_gpus: float) -> tuple[float, str]:
    """(GPUs per actor, the ``--device`` inside it) for ``--device`` and ``--gpus-per-worker``.

    Ray sets CUDA_VISIBLE_DEVICES per actor, so an actor's GPU is always ``cuda:0`` there:
    ``cuda`` and ``cuda:N`` mean "the actor's GPU". ``gpus`` None: 1 where the cluster has
    GPUs (0 with ``--device cpu``), else 0. ``auto``: the actor's GPU when it has one, else its CPU.

    Raises:
        UserError: a GPU asked for where there is none (``--device cuda`` with CPU actors or a
            cluster without GPUs, ``--gpus-per-worker`` with ``--device cpu``, a negative count).
    """
    from fgbg.engine.devices import parse_device

    kind, _ = parse_device(device)
    if gpus is None:
        gpus = 1.0 if cluster_gpus and kind != "cpu" else 0.0
    if gpus < 0:
        raise UserError(f"--gpus-per-worker must be 0 or more, got {gpus}")
    if gpus and not cluster_gpus:
        raise UserError(f"--gpus-per-worker {gpus:g}: the Ray cluster has no GPUs; give 0 (CPU actors), or add GPU nodes")
    if kind == "cuda" and not gpus:
        where = "the Ray cluster has no GPUs" if not cluster_gpus else "--gpus-per-worker 0 makes CPU actors"
        raise UserError(f"--device {device}: {where}; use --device auto or cpu, or give the actors GPUs")
    if kind == "cpu" and gpus:
        raise UserError(f"--device cpu with --gpus-per-worker {gpus:g}: the actors would hold GPUs they do not use; give one or the other")
    return gpus, "cuda:0" if gpus else "cpu"


def depth_actors(model: str, preset: str | None, device: str, count: int | None, gpus: float | None) -> list:
    """``count`` depth actors, each holding the network once, with ``gpus`` GPUs apiece (fractions share one).

    Defaults: see :func:`actor_placement` for ``gpus``; ``count`` as many as the GPUs allow,
    else a quarter of the cluster's CPUs (the rest compose and encode).
    Restarted by Ray when they die, their calls retried.
    """
    cluster_gpus, cpus = ray.cluster_resources().get("GPU", 0), cluster_cpus()
    gpus, inside = actor_placement(device, gpus, cluster_gpus)
    if count is None:
        count = max(1, int(cluster_gpus / gpus)) if gpus else max(1, cpus // 4)
    if count < 1:
        raise UserError(f"--depth-workers must be at least 1, got {count}")
    if not gpus and count >= cpus:
        raise UserError(f"--depth-workers {count} CPU actors would leave none of the cluster's {cpus} CPUs to compose and encode; give fewer")
    # a GPU actor holds its GPU, not a CPU: the tasks feeding it need those
    actor = ray.remote(DepthActor).options(
        num_cpus=0 if gpus else 1, num_gpus=gpus, max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES
    )  # fmt: skip
    return [actor.remote(model, preset, inside) for _ in range(count)]


def actor_labeller(
    model: str, preset: str | None, device: str, count: int | None, gpus: float | None, threads: int | None = None,
    warn: Callable[[str], None] | None = None,
) -> ActorEstimator:  # fmt: skip
    """Depth actors (see :func:`depth_actors`) behind one estimator that describes where they compute.

    ``threads``: batches in flight at once (None: 2 per actor, for a single caller like ``depth-maps``).
    ``warn`` gets the first actor's device notes, once.

    Raises:
        UserError: as :func:`depth_actors`; an actor cannot load the model (the actor's error, as it
            was: EstimatorError, DeviceError); the actors compute on different devices.
    """
    actors = depth_actors(model, preset, device, count, gpus)
    try:
        descriptions = ray.get([actor.describe.remote() for actor in actors])
    except RayTaskError as e:
        raise task_error("a depth actor", e.cause if isinstance(e.cause, BaseException) else e, str(e)) from None
    if warn is not None:
        for note in ray.get(actors[0].device_notes.remote()):
            warn(f"depth actors: {note}")
    return ActorEstimator(actors, threads or 2 * len(actors), agreed_description(descriptions))


def agreed_description(descriptions: list[dict]) -> dict:
    """The one description all actors give; a store's depth must come from one kind of device.

    Raises:
        UserError: the actors differ (e.g. two GPU models in one cluster: their maps need not be the same bits).
    """
    distinct = {json.dumps(d, sort_keys=True) for d in descriptions}
    if len(distinct) > 1:
        computes = sorted({json.dumps(d.get("compute"), sort_keys=True) for d in descriptions})
        raise UserError(
            f"the depth actors run on different devices ({'; '.join(computes)}): the maps would depend on which actor"
            " made them; use one kind of GPU (a Ray resource label, or --gpus-per-worker 0 for CPU actors)"
        )
    return descriptions[0]
