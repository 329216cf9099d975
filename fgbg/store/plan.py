"""The plan: every sample a config asks for, its key, and the shards that group them.

The plan is a pure function of (number of bgs, number of fgs, config). Samples are
ordered by (bg, fg, flip, k[, blend mode]); sample ``i`` is computed on demand, so a 400k-sample
plan costs no memory. With ``--blend-each`` every layout is planned once per blend mode: the
siblings' keys end in ``_MODE`` and share the rest (their layout key, which seeds their draws).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, NamedTuple

from fgbg.config import GenerateConfig


class SampleRef(NamedTuple):
    """One planned sample: which bg, which fg, flipped or not, k-th placement."""

    bg: int
    fg: int
    flip: int
    k: int
    key: str
    mode: str = ""  # the blend mode of a --blend-each sample, else ""

    @property
    def layout_key(self) -> str:
        """The key without its blend mode: what seeds the sample's draws, shared by --blend-each siblings."""
        return self.key[: -len(self.mode) - 1] if self.mode else self.key


@dataclass(frozen=True)
class Shard:
    """Samples [start, stop) of the plan, written and committed together."""

    index: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"shard-{self.index:06d}"

    def __len__(self) -> int:
        return self.stop - self.start


_KEY = re.compile(r"b(\d+)_f(\d+)_(\d+)_(\d+)(?:_([a-z]+))?")


def index_width(n: int, minimum: int) -> int:
    """Digits needed to zero-pad indices 0..n-1, at least ``minimum``."""
    return max(minimum, len(str(max(n - 1, 0))))


@dataclass(frozen=True)
class Plan:
    n_bg: int
    n_fg: int
    flips: int  # 1 (no flip) or 2 (fg and its mirror)
    placements: int
    shard_size: int
    one_shard_per_bg: bool
    modes: tuple[str, ...] = ()  # --blend-each: every layout once per mode; () otherwise

    @classmethod
    def from_config(cls, n_bg: int, n_fg: int, config: GenerateConfig) -> "Plan":
        return cls(
            n_bg=n_bg,
            n_fg=n_fg,
            flips=2 if config.flip else 1,
            placements=config.placements,
            shard_size=config.shard_size,
            one_shard_per_bg=config.format != "wds",
            modes=tuple(config.blend) if config.blend_each else (),
        )

    def __len__(self) -> int:
        return self.n_bg * self.per_bg

    @property
    def per_bg(self) -> int:
        return self.n_fg * self.flips * self.placements * self.variants

    @property
    def variants(self) -> int:
        """Samples per layout: one per --blend-each mode, else 1."""
        return max(1, len(self.modes))

    def key(self, bg: int, fg: int, flip: int, k: int, mode: str = "") -> str:
        """``b{bg}_f{fg}_{flip}_{k}[_{mode}]``, zero-padded (at least b000_f000_0_00), no dots."""
        wb, wf = index_width(self.n_bg, 3), index_width(self.n_fg, 3)
        wk = index_width(self.placements, 2)
        return f"b{bg:0{wb}d}_f{fg:0{wf}d}_{flip}_{k:0{wk}d}" + (f"_{mode}" if mode else "")

    def __getitem__(self, i: int) -> SampleRef:
        if not 0 <= i < len(self):
            raise IndexError(i)
        rest, m = divmod(i, self.variants)
        rest, k = divmod(rest, self.placements)
        rest, flip = divmod(rest, self.flips)
        bg, fg = divmod(rest, self.n_fg)
        mode = self.modes[m] if self.modes else ""
        return SampleRef(bg, fg, flip, k, self.key(bg, fg, flip, k, mode), mode)

    def index(self, key: str) -> int | None:
        """The position of ``key`` in the plan, or None where no sample has it."""
        m = _KEY.fullmatch(key)
        if not m:
            return None
        bg, fg, flip, k = map(int, m.groups()[:4])
        mode = m.group(5) or ""
        if not (bg < self.n_bg and fg < self.n_fg and flip < self.flips and k < self.placements):
            return None
        if (mode not in self.modes) if self.modes else mode:
            return None
        i = (((bg * self.n_fg + fg) * self.flips + flip) * self.placements + k) * self.variants
        i += self.modes.index(mode) if self.modes else 0
        return i if self.key(bg, fg, flip, k, mode) == key else None

    def samples(self, shard: Shard) -> Iterator[SampleRef]:
        return (self[i] for i in range(shard.start, shard.stop))

    def shards(self) -> list[Shard]:
        """Fixed-size chunks (wds), or one shard per bg (folder, zip)."""
        step = self.per_bg if self.one_shard_per_bg else self.shard_size
        return [Shard(j, start, min(start + step, len(self))) for j, start in enumerate(range(0, len(self), step))]
