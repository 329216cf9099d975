"""What fgbg may delete or replace: only what it wrote, recognised by a file it leaves there.

Every verb that deletes or overwrites (``--overwrite`` of generate, export and depth-maps; the
rewrites of card, cutout and rooms) asks here first. What fgbg did not write is refused in one
line naming it (exit 2) before anything is touched: a user's folder given as ``--out`` by mistake
keeps every file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable

from fgbg.errors import UserError
from fgbg.store.layout import CARD_MARK


FGBG_VERSION = "fgbg_version"  # in every record fgbg writes (dataset.json, stats.json, rooms.json, its marks)


class NotOurs(UserError):
    """A folder or file that fgbg would delete or overwrite holds what fgbg did not write."""


def is_empty_or_absent(folder: Path) -> bool:
    return not folder.exists() or (folder.is_dir() and next(folder.iterdir(), None) is None)


def has_mark(folder: Path, marks: Iterable[str]) -> bool:
    """``folder`` holds one of ``marks``: the files fgbg leaves in what it writes (an export's marker, a store's dataset.json)."""
    return any((folder / mark).exists() for mark in marks)


def is_fgbg_json(path: Path) -> bool:
    """``path`` is a JSON object fgbg wrote: it has :data:`FGBG_VERSION`."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(record, dict) and FGBG_VERSION in record


def check_ours(folder: Path, ours: bool, what: str, flag: str = "--out") -> None:
    """Refuse to delete or overwrite in ``folder`` unless it is absent, empty, or ``ours``.

    Raises:
        NotOurs: one line naming the folder, what fgbg looked for, and what to do.
    """
    folder = Path(folder)
    if ours or is_empty_or_absent(folder):
        return
    raise NotOurs(f"{flag} {folder}: not {what}, and fgbg deletes or replaces only what it wrote; give a new or empty folder")


def is_card(path: Path) -> bool:
    """``path`` is a dataset card `fgbg card` wrote (it ends with :data:`~fgbg.store.layout.CARD_MARK`)."""
    return path.is_file() and CARD_MARK in path.read_text(errors="replace")


def theirs_among(paths: Iterable[Path], is_ours: Callable[[Path], bool]) -> list[Path]:
    """The files of ``paths`` that exist and that ``is_ours`` does not recognise."""
    return [p for p in paths if p.exists() and not is_ours(p)]


def check_files_ours(foreign: list[Path], what: str, flag: str = "") -> None:
    """Refuse when fgbg would overwrite or delete ``foreign`` files (ones it did not write), naming the
    first few (after ``flag``, the option that asked for it, if any).

    Raises:
        NotOurs: one line; nothing has been written.
    """
    if foreign:
        names = ", ".join(str(p) for p in foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        them = "it" if len(foreign) == 1 else "them"
        raise NotOurs(f"{flag + ': ' if flag else ''}{names}: not written by {what}, and fgbg replaces only what it wrote;"
                      f" move {them} away, or give another folder")  # fmt: skip
