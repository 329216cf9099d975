"""The one-line user errors: problems a user can fix, raised where the problem is known.

The CLI prints ``str(error)`` (one line, or one line per bad file) and exits with
``error.exit_code``; anything that is not a :class:`UserError` is a bug and keeps its
traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: what is wrong, with which file or flag, and what to do."""

    exit_code = 2


class ConfigError(UserError, ValueError):
    """A flag or config value out of range, checked before any work; names the flag.

    Also a ValueError, so code that validates a recorded config (a store's dataset.json)
    and catches ValueError keeps working.
    """


class StoreBusy(UserError):
    """Another process holds the store's write lock."""


class NotFound(UserError, FileNotFoundError):
    """A file or store the user named does not exist (still a FileNotFoundError for callers that catch that)."""


class CorruptStore(UserError):
    """A store's file is missing, truncated or does not decode: names the file; `fgbg verify` lists all."""


class WorkerFailed(UserError):
    """A worker process raised or died: names the task (e.g. the shard) and the cause, in one line.

    Exit code 1, not 2: the run failed (a lost file, the OOM killer, a bug), the command was
    not wrong; the store stays resumable.
    """

    exit_code = 1
