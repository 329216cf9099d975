"""One writer at a time: an OS file lock on ``STORE/.lock``, held for the life of a verb.

``fcntl.flock`` locks are released by the kernel when the holder dies (even by SIGKILL),
so a crash never leaves a store locked. The lock file keeps who holds it (pid, verb,
start time) so a refused writer can say so in one line.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fgbg.errors import StoreBusy

LOCK_FILE = ".lock"  # at a folder's root; never deleted: another writer may be waiting on it


@contextmanager
def store_lock(folder: Path, verb: str) -> Iterator[None]:
    """Hold the write lock of ``folder`` (created if missing) for the ``with`` block.

    Raises:
        StoreBusy: another process holds it; the message names its pid, verb and start time.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(folder, fd) from None
        holder = {"pid": os.getpid(), "verb": verb, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def check_free(folder: Path) -> None:
    """Raise :class:`StoreBusy` now if another process holds ``folder``'s lock; creates nothing.

    A cheap early refusal before slow preparation; only :func:`store_lock` is authoritative.
    """
    try:
        fd = os.open(Path(folder) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return  # no lock file (or no folder): nobody holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _busy(folder, fd) from None
    finally:
        os.close(fd)


def _busy(folder: Path, fd: int) -> StoreBusy:
    return StoreBusy(f"store {folder} is being written by {_holder(fd)}; wait for it to finish, or stop it")


def _holder(fd: int) -> str:
    try:
        h = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {h['pid']} (fgbg {h['verb']}, started at {h['started']})"
    except (ValueError, KeyError):
        return "another process"
