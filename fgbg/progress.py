"""Progress for long work: a bar on a terminal, a sparse line in a log.

On a terminal (stderr is a tty) a tqdm bar is drawn; when stderr goes to a file or a pipe,
one line is printed every ~10% or 30 s with the count, rate and ETA, so a log stays
readable. ``enabled=None`` chooses by the terminal; True forces the bar (``--progress``),
False silences it (``--no-progress``).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

LOG_EVERY_FRACTION = 0.1
LOG_EVERY_SECONDS = 30.0


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


class LogProgress:
    """The tqdm subset fgbg uses (``update``, ``close``, context manager), as sparse log lines."""

    def __init__(self, total: int, desc: str, unit: str, initial: int = 0, stream: TextIO | None = None) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.stream = stream or sys.stderr
        self.start_n, self.start = initial, time.monotonic()
        self.last_n, self.last_t = initial, self.start

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        step = max(1, round(self.total * LOG_EVERY_FRACTION))
        if self.n >= self.total or self.n - self.last_n >= step or now - self.last_t >= LOG_EVERY_SECONDS:
            self._line(now)

    def _line(self, now: float) -> None:
        self.last_n, self.last_t = self.n, now
        done = self.n - self.start_n
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 and done > 0 else 0.0
        eta = f", ETA {_clock((self.total - self.n) / rate)}" if rate > 0 and self.n < self.total else ""
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        print(f"{self.desc}: {self.n}/{self.total} {self.unit}s{pct}, {rate:.1f} {self.unit}s/s, {_clock(elapsed)} elapsed{eta}",
              file=self.stream, flush=True)  # fmt: skip

    def close(self) -> None:
        pass

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class _Off:
    n = 0

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "_Off":
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress(total: int, desc: str = "", unit: str = "sample", initial: int = 0, enabled: bool | None = None):
    """A progress reporter for ``total`` units: tqdm on a terminal, log lines elsewhere, nothing if disabled.

    ``enabled``: None = a bar on a terminal and sparse lines otherwise; True = a bar
    always; False = silent.
    """
    if enabled is False:
        return _Off()
    if enabled or is_terminal():
        return tqdm(total=total, initial=initial, unit=unit, desc=desc or None, smoothing=0.1)
    return LogProgress(total, desc or "progress", unit, initial)
