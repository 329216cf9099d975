"""The plan: every sample a config asks for, its key, and the shards that group them.

The plan is a pure function of (number of bgs, number of fgs, config). Samples are
ordered by (bg, fg, flip, k); sample ``i`` is computed on demand, so a 400k-sample plan
costs no memory.
"""

from __future__ import annotations

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

    @classmethod
    def from_config(cls, n_bg: int, n_fg: int, config: GenerateConfig) -> "Plan":
        return cls(
            n_bg=n_bg,
            n_fg=n_fg,
            flips=2 if config.flip else 1,
            placements=config.placements,
            shard_size=config.shard_size,
            one_shard_per_bg=config.format != "wds",
        )

    def __len__(self) -> int:
        return self.n_bg * self.per_bg

    @property
    def per_bg(self) -> int:
        return self.n_fg * self.flips * self.placements

    def key(self, bg: int, fg: int, flip: int, k: int) -> str:
        """``b{bg}_f{fg}_{flip}_{k}``, zero-padded (at least b000_f000_0_00), no dots."""
        wb, wf = index_width(self.n_bg, 3), index_width(self.n_fg, 3)
        wk = index_width(self.placements, 2)
        return f"b{bg:0{wb}d}_f{fg:0{wf}d}_{flip}_{k:0{wk}d}"

    def __getitem__(self, i: int) -> SampleRef:
        if not 0 <= i < len(self):
            raise IndexError(i)
        rest, k = divmod(i, self.placements)
        rest, flip = divmod(rest, self.flips)
        bg, fg = divmod(rest, self.n_fg)
        return SampleRef(bg, fg, flip, k, self.key(bg, fg, flip, k))

    def samples(self, shard: Shard) -> Iterator[SampleRef]:
        return (self[i] for i in range(shard.start, shard.stop))

    def shards(self) -> list[Shard]:
        """Fixed-size chunks (wds), or one shard per bg (folder, zip)."""
        step = self.per_bg if self.one_shard_per_bg else self.shard_size
        return [Shard(j, start, min(start + step, len(self))) for j, start in enumerate(range(0, len(self), step))]
