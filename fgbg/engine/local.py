"""Run one function per shard on spawned worker processes, with progress.

Workers are spawned (not forked) and each opens its own files: nothing but the task
tuple and the (small) result crosses the process boundary. ``generate``, ``stats`` and
``verify`` all use it.

A run never hangs and never half-fails: an exception in a worker (in the initializer or a
task) or a worker that dies (a signal, the OOM killer, ``os._exit``) stops every worker
and reaches the caller within seconds as one :class:`~fgbg.errors.UserError` line naming
the task; results yielded before stay yielded (the caller has committed them, so a rerun
resumes). Workers ignore Ctrl-C (only the parent handles it) and die with the parent.

The pool is a few spawned processes with one pipe each, one task in flight per worker,
rather than ``multiprocessing.Pool`` (restarts a worker whose initializer fails, forever,
and hangs when one is killed) or ``concurrent.futures.ProcessPoolExecutor`` (turns a
death into a ``BrokenProcessPool`` that names neither the worker's exit code nor its
task, and, before Python 3.14, cannot terminate its workers).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import wait
from typing import Any, Callable, Iterable, Iterator, TypeVar

from fgbg.errors import UserError, WorkerFailed
from fgbg.progress import progress as progress_reporter

T = TypeVar("T")
R = TypeVar("R")

STOP_GRACE_SECONDS = 5.0  # a stopped worker that has not exited by then is killed
PARENT_POLL_SECONDS = 1.0  # the orphan watchdog's period, where the OS cannot kill orphans itself
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
DEBUG_ENV = "FGBG_DEBUG"  # set to 1 to print a failed worker's traceback


def worker_count(workers: int | None, tasks: int) -> int:
    """Processes to start for ``tasks`` tasks: None = CPU count, 0 = none (run here), never more than tasks.

    Raises:
        UserError: ``workers`` is negative.
    """
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 0:
        raise UserError(f"--workers must be 0 or more (0 runs in this process), got {workers}")
    return min(workers, tasks)


def map_shards(
    fn: Callable[[T], R],
    tasks: Iterable[T],
    weights: Iterable[int] | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    unit: str = "sample",
    desc: str | None = None,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    done: int = 0,
    describe: Callable[[T], str] = repr,
) -> Iterator[R]:
    """Yield ``fn(task)`` for every task, in completion order.

    Args:
        fn: a module-level function (it is pickled by name for the workers).
        tasks: picklable arguments, one per shard.
        weights: progress increment per task (e.g. samples in the shard); 1 each if None.
        workers: processes; None = CPU count, 0 = this process (no workers), N = N
            spawned processes (never more than tasks). The results are the same for any count.
        progress: None = a bar on a terminal, sparse log lines otherwise; True = a bar; False = silent.
        initializer: called with ``initargs`` once in every worker (or here) before its
            first task, e.g. to open the worker's own files; a failure is that task's.
        done: work already done before this call (a resumed run), shown in the progress.
        describe: names a task in error messages, e.g. ``"shard-000003"``.

    Raises (when iterated):
        UserError: the one a task or the initializer raised, as it was.
        WorkerFailed: any other exception in a task or the initializer ("TASK failed:
            ExcType: message"), or a worker process that died (its exit code or signal,
            and its task).
        KeyboardInterrupt: after the workers are stopped.
    Raises (at once): UserError for a negative ``workers``.
    """
    tasks = list(tasks)
    weights = [1] * len(tasks) if weights is None else list(weights)
    n = worker_count(workers, len(tasks))
    job = _Job(fn, initializer, initargs)
    results = _in_process(job, tasks, describe) if n == 0 else _in_workers(job, tasks, n, describe)
    bar = partial(progress_reporter, sum(weights) + done, desc or "", unit, done, progress)
    return with_progress(results, weights, bar, desc or "")


def with_progress(results: Iterator[tuple[int, Any]], weights: list[int], make_bar: Callable, desc: str = "") -> Iterator[Any]:
    """Yield the results of ``(task index, result)`` pairs, counting each task's weight on the
    bar ``make_bar()`` makes (it starts with the first ``next``), and the shards done in its
    label (``desc``, e.g. "generate (3/41 shards)"); both engines use it."""
    try:
        with make_bar() as bar:
            for finished, (index, result) in enumerate(results, 1):
                yield result
                if desc:
                    label(bar, f"{desc} ({finished}/{len(weights)} shards)")
                bar.update(weights[index])
    finally:
        results.close()  # stops the workers at once if the caller stops early


def label(bar: Any, text: str) -> None:
    """Set the label of a tqdm bar or of a log-line progress, shown with its next update."""
    if hasattr(bar, "set_description_str"):
        bar.set_description_str(text, refresh=False)
    else:
        bar.desc = text


# ---------------------------------------------------------------- a payload shared by every task

_shared: Any = None  # this worker's payload, kept by ``keep_shared`` (the initializer) before its first task


def keep_shared(payload: Any) -> None:
    """Initializer: keep the payload every task of this worker gets (sent once per worker)."""
    global _shared
    _shared = payload


def call_with_shared(fn: Callable[[Any, T], R], task: T) -> R:
    """``fn(payload, task)``: how a work function that takes a shared payload runs on this engine."""
    return fn(_shared, task)


# ---------------------------------------------------------------- the job, as a worker runs it


@dataclass(frozen=True)
class _Job:
    fn: Callable
    initializer: Callable[..., None] | None
    initargs: tuple


class _Runner:
    """``job.fn`` with the initializer run once, lazily, before the first task (so its failure is that task's)."""

    def __init__(self, job: _Job) -> None:
        self.job, self.ready = job, job.initializer is None

    def __call__(self, task: Any) -> Any:
        if not self.ready:
            self.job.initializer(*self.job.initargs)
            self.ready = True
        return self.job.fn(task)


@dataclass
class _Failure:
    """What a worker sends back when its task raised: picklable whatever the exception was."""

    cause: str  # "ExcType: first line of the message"
    traceback: str
    error: UserError | None  # the UserError itself, to re-raise as it was


def _cause(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _failure(e: BaseException) -> _Failure:
    error = None
    if isinstance(e, UserError):
        try:
            error = pickle.loads(pickle.dumps(e))
        except Exception:  # a subclass whose arguments do not survive pickling: keep its words
            error = UserError(str(e))
            error.exit_code = e.exit_code
    return _Failure(_cause(e), "".join(traceback.format_exception(e)), error)


class RemoteTraceback(Exception):
    """A worker's traceback as text, attached as ``__cause__`` of the error the caller gets."""

    def __str__(self) -> str:
        return self.args[0]


def task_error(what: str, e: BaseException, traceback_text: str | None = None) -> UserError:
    """The error the caller gets when task ``what`` raised ``e`` (either engine): ``e`` itself for a
    UserError, else WorkerFailed naming the task and the cause; ``traceback_text`` is printed with
    FGBG_DEBUG=1 (default: ``e``'s own traceback)."""
    failure = _failure(e)
    if traceback_text is not None:
        failure.traceback = traceback_text
    return _task_failed(what, failure)


def _task_failed(what: str, failure: _Failure) -> UserError:
    """The error the caller gets: the task's own UserError, else WorkerFailed naming the task and cause."""
    if os.environ.get(DEBUG_ENV):
        print(f"{what}: traceback:\n{failure.traceback}", file=sys.stderr, end="")
    if failure.error is not None:
        return failure.error
    return WorkerFailed(f"{what} failed: {failure.cause} (set {DEBUG_ENV}=1 to see the traceback)")


def _in_process(job: _Job, tasks: list, describe: Callable) -> Iterator[tuple[int, Any]]:
    """``workers=0``: every task here, failing with the same errors as in workers."""
    run = _Runner(job)
    for index, task in enumerate(tasks):
        try:
            result = run(task)
        except UserError:
            raise
        except Exception as e:
            raise _task_failed(describe(task), _failure(e)) from e
        yield index, result


# ---------------------------------------------------------------- worker side


def _worker_main(conn, parent_pid: int) -> None:
    """A worker's life: receive the job, then ``(index, task)``, reply ``("ok" | "failed", index, payload)``; None ends it."""
    _ignore_sigint()
    _die_with_parent(parent_pid)
    try:
        run = _Runner(conn.recv())
    except (EOFError, OSError):
        return  # the parent is gone
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if message is None:
            return
        index, task = message
        try:
            reply = ("ok", index, run(task))
        except BaseException as e:
            reply = ("failed", index, _failure(e))
        if not _send(conn, reply):
            return


def _send(conn, reply: tuple) -> bool:
    """Send a reply (or, if it does not pickle, why); False if the parent is gone."""
    try:
        conn.send(reply)
    except OSError:
        return False
    except Exception as e:  # pickling failed before anything was written
        return _send(conn, ("failed", reply[1], _failure(e)))
    return True


def _ignore_sigint() -> None:
    """Ctrl-C is the parent's: ignore it, then unblock it (the parent started us with it blocked)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _die_with_parent(parent_pid: int) -> None:
    """Exit quietly when the parent dies: the kernel's SIGKILL on Linux, else a watchdog thread."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0:
                if os.getppid() != parent_pid:  # it died before the prctl took effect
                    os._exit(0)
                return
        except (OSError, AttributeError):
            pass
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(0)


# ---------------------------------------------------------------- parent side


@contextmanager
def _sigint_blocked():
    """SIGINT blocked while workers start: they inherit the block (no KeyboardInterrupt while they
    import); a Ctrl-C meanwhile is delivered here as soon as the block is lifted."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _Worker:
    """One spawned process and the pipe to it; ``index`` is the task it is running, if any."""

    def __init__(self, ctx, job: _Job) -> None:
        self.conn, child_end = ctx.Pipe()
        # The kernel's parent-death signal follows the thread that starts the process: start
        # workers from the thread that iterates (a generator does).
        self.process = ctx.Process(target=_worker_main, args=(child_end, os.getpid()), daemon=True)
        self.process.start()
        child_end.close()
        self.job, self.index = job, None

    def send_job(self) -> None:
        """Send the job (its payload may be megabytes) down the pipe, not as the Process's arguments:
        multiprocessing writes those while it still holds the child's end open itself, so a child that
        dies while starting (an import error, the OOM killer) would block that write for ever. Here
        its death is a broken pipe, and its sentinel reports it."""
        try:
            self.conn.send(self.job)
        except OSError:
            pass

    def give(self, todo: deque) -> None:
        """Send the next task, if any."""
        if not todo:
            return
        self.index, task = todo.popleft()
        try:
            self.conn.send((self.index, task))
        except OSError:
            pass  # it has died: its sentinel says so, and ``reply`` reports it

    def reply(self, ready: list) -> tuple | None:
        """``("ok" | "failed", index, payload)`` for the running task, or None while it runs.

        Raises:
            WorkerFailed: the process died (or its reply cannot be read).
        """
        if self.conn.poll():  # a reply, or end-of-file if the process is gone
            try:
                return self.conn.recv()
            except (EOFError, OSError):
                pass  # it died, perhaps mid-reply
        elif self.process.sentinel not in ready:
            return None
        self.process.join(STOP_GRACE_SECONDS)
        raise _DiedWhileRunning(self.process.pid, self.process.exitcode, self.index)


class _DiedWhileRunning(Exception):
    def __init__(self, pid: int, exitcode: int | None, index: int) -> None:
        self.pid, self.exitcode, self.index = pid, exitcode, index


def exit_description(exitcode: int | None) -> str:
    """A process's end in words: 'was killed by signal SIGKILL (out of memory?)', 'exited with code 3'."""
    if exitcode is None:
        return "stopped answering"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"{-exitcode}"
        hint = " (out of memory? fewer --workers use less)" if -exitcode == signal.SIGKILL else ""
        return f"was killed by signal {name}{hint}"
    return f"exited with code {exitcode}"


def _in_workers(job: _Job, tasks: list, n: int, describe: Callable) -> Iterator[tuple[int, Any]]:
    """Tasks on ``n`` spawned processes, one in flight each; any failure stops them all."""
    ctx = multiprocessing.get_context("spawn")
    todo = deque(enumerate(tasks))
    pool: list[_Worker] = []
    finished = False
    try:
        with _sigint_blocked():
            pool += [_Worker(ctx, job) for _ in range(n)]
        for worker in pool:  # after every start: the workers boot in parallel while each job is sent
            worker.send_job()
            worker.give(todo)
        while busy := [w for w in pool if w.index is not None]:
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for worker in busy:
                try:
                    reply = worker.reply(ready)
                except _DiedWhileRunning as d:
                    raise WorkerFailed(
                        f"worker pid {d.pid} {exit_description(d.exitcode)} while running {describe(tasks[d.index])}"
                    ) from None
                if reply is None:
                    continue
                kind, index, payload = reply
                if kind == "failed":
                    raise _task_failed(describe(tasks[index]), payload) from RemoteTraceback(payload.traceback)
                worker.index = None
                worker.give(todo)  # before yielding: the worker goes on while the caller commits
                yield index, payload
        finished = True
    finally:
        _stop(pool, finished)


def _stop(pool: list[_Worker], finished: bool) -> None:
    """Tell idle workers to exit (all done) or terminate them (a failure, Ctrl-C); kill stragglers."""
    for worker in pool:
        if finished:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        else:
            worker.process.terminate()  # SIGTERM: the default action, no traceback
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for worker in pool:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.exitcode is None:
            worker.process.kill()
            worker.process.join(STOP_GRACE_SECONDS)
        worker.conn.close()
