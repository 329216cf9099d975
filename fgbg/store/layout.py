"""Names and paths inside a store, and durable atomic file writes.

Every write that a store keeps goes through :func:`atomic_file` (or :func:`commit` for a
folder): written under a name unique to the writing process (``NAME.<pid>.tmp``), fsynced,
renamed into place, and the rename made durable by an fsync of the directory. Each of
those steps calls :func:`crash_point`, the seam the crash test uses to SIGKILL a run there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from fgbg.config import GenerateConfig
from fgbg.errors import CorruptStore, NotFound
from fgbg.store.lock import check_free

# member suffix -> (folder for the folder/zip formats, file extension there), in a sample's order
MEMBERS: dict[str, tuple[str, str]] = {
    "fg_bg.jpg": ("fg_bg", ".jpg"),
    "mask.png": ("mask", ".png"),
    "depth.png": ("depth", ".png"),
    "instances.png": ("instances", ".png"),  # stores with several objects per composite only
    "json": ("annotation", ".json"),
}
INSTANCES = "instances.png"
DATASET_JSON = "dataset.json"
MANIFEST = "manifest.jsonl"
SHARDS_DIR = "shards"
ASSETS_DIR = "assets"
WORK_DIR = ".work"  # in-progress state; removed when the store is complete
TMP_SUFFIX = ".tmp"  # every temporary name ends so: NAME.<pid>.tmp
DERIVED = ("stats.json", ".stats_cache", "README.md", "previews")  # at the root, from `fgbg stats` and `fgbg card`
CARD_MARK = "<!-- written by `fgbg card`, which rewrites this file: edit its --attribution file instead -->"  # the card's last line

# The crash test's seam (tests/test_crash.py): with FGBG_CRASH_STEPS=FILE every durable-write
# step appends one byte to FILE, "p" in the main process and "w" in a worker (all processes of
# a run share FILE, so the count is global); with FGBG_CRASH_AT=N as well, the step that makes
# FILE N bytes long SIGKILLs its process group: the run and its workers (FGBG_CRASH_SIGNAL=SIGSTOP
# pauses them there instead, for tests that need a writer caught in the middle).
CRASH_STEPS_ENV, CRASH_AT_ENV, CRASH_SIGNAL_ENV = "FGBG_CRASH_STEPS", "FGBG_CRASH_AT", "FGBG_CRASH_SIGNAL"
_crash_seam: tuple | None = None  # (pid, fd of FILE, mark, N, signal), read once per process


def crash_point() -> None:
    """A step of a durable write: counted, and the run killed here, when the crash test asks."""
    global _crash_seam
    if _crash_seam is None or _crash_seam[0] != os.getpid():
        _crash_seam = _read_crash_seam()
    _, fd, mark, at, sig = _crash_seam
    if fd is None:
        return
    os.write(fd, mark)
    if os.lseek(fd, 0, os.SEEK_CUR) == at:  # O_APPEND: this write's end, whoever else appends
        os.killpg(os.getpgid(0), sig)


def _read_crash_seam() -> tuple:
    steps, at = os.environ.get(CRASH_STEPS_ENV), os.environ.get(CRASH_AT_ENV)
    if not steps:
        return os.getpid(), None, b"", 0, None
    import multiprocessing  # only here: the seam is off in real runs

    mark = b"w" if multiprocessing.parent_process() is not None else b"p"
    sig = signal.Signals[os.environ.get(CRASH_SIGNAL_ENV, "SIGKILL")]
    return os.getpid(), os.open(steps, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644), mark, int(at or 0), sig


def temporary(final: Path, purpose: str = "") -> Path:
    """``final``'s temporary name, unique to this process: NAME[.purpose].<pid>.tmp beside it."""
    final = Path(final)
    return final.with_name(f"{final.name}{'.' + purpose if purpose else ''}.{os.getpid()}{TMP_SUFFIX}")


def fsync_dir(folder: Path) -> None:
    """Make a rename (or a new file) in ``folder`` durable: without it a power cut can undo it."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(folder: Path) -> None:
    """``mkdir -p folder``, each new folder made durable in its parent."""
    folder = Path(folder)
    if folder.is_dir():
        return
    make_dirs(folder.parent)
    folder.mkdir(exist_ok=True)
    fsync_dir(folder.parent)


def commit(tmp: Path, final: Path) -> None:
    """Rename a complete, already fsynced ``tmp`` (file or folder) onto ``final``, durably."""
    crash_point()
    os.replace(tmp, final)
    fsync_dir(Path(final).parent)
    crash_point()


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through: on success fsynced and committed, on error removed.

    Readers (and a rerun after a crash) see the old file or the whole new one, never a part.
    """
    tmp = temporary(path)
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            crash_point()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    commit(tmp, Path(path))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (see :func:`atomic_file`)."""
    with atomic_file(path) as f:
        f.write(data)


def remove(path: Path) -> None:
    """Delete a file or a folder, durably; a folder is first renamed to a temporary name, so a
    kill mid-delete leaves a temporary (removed by the next writer) and not half a folder."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        doomed = temporary(path, "deleted")  # not the name a new version of it is written under
        os.replace(path, doomed)
        fsync_dir(path.parent)
        crash_point()
        shutil.rmtree(doomed)
    elif path.exists() or path.is_symlink():
        path.unlink()
        fsync_dir(path.parent)
        crash_point()


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())


def store_members(config: dict) -> tuple[str, ...]:
    """The member suffixes of a store made with ``config`` (a GenerateConfig's dict), in MEMBERS order:
    instance ids only where samples are annotated object by object (:attr:`GenerateConfig.several`)."""
    several = GenerateConfig.from_dict(config).several
    return tuple(s for s in MEMBERS if several or s != INSTANCES)


def asset_paths(store: Path, kind: str, n: int) -> list[Path]:
    """assets/KIND/b000.jpg ... or f000.png ... (d000.png: --distractors): the prepared inputs by index."""
    prefix, ext = {"bg": ("b", ".jpg"), "bg_depth": ("b", ".png"), "fg": ("f", ".png"), "fg_mask": ("f", ".png"), "distractor": ("d", ".png")}[kind]
    width = max(3, len(str(max(n - 1, 0))))
    return [Path(store) / ASSETS_DIR / kind / f"{prefix}{i:0{width}d}{ext}" for i in range(n)]


def read_dataset_json(store: Path) -> dict:
    """The store's dataset.json.

    Raises:
        StoreBusy: no dataset.json yet and a writer holds the store's lock (a running generate), named.
        NotFound: no such store, or one still being made (``.work/`` and no dataset.json).
        CorruptStore: dataset.json is not valid JSON.
    """
    store = Path(store)
    path = store / DATASET_JSON
    if not path.exists():
        check_free(store)  # generate writes dataset.json last: while it runs, say who writes, not "unfinished"
        if (store / WORK_DIR).is_dir():
            raise NotFound(f"{store}: an unfinished store (no {DATASET_JSON} yet); rerun the `fgbg generate` command that made it")
        raise NotFound(f"{path}: not found; is {store} an fgbg store? make one with `fgbg generate`")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptStore(f"{path}: not valid JSON ({e}); rerun the `fgbg generate` command that made the store") from None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def digest_members(members) -> str:
    """sha256 over (name, bytes) pairs in order: the checksum of a folder-format shard."""
    h = hashlib.sha256()
    for name, data in members:
        h.update(name.encode() + b"\0" + len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def bg_group(key: str) -> str:
    """The bg part of a key, ``b000`` of ``b000_f001_0_03``: the folder/zip group name."""
    return key.split("_", 1)[0]
