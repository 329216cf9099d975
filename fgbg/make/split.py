"""The held-out split of a store's samples, without torch: training and the exports share it.

``split_indices(plan, "bg", 0.2, 0)`` is the split ``fgbg train`` uses by default (TrainConfig's
val, val_fraction and seed); ``fgbg export coco|yolo`` writes the same train and val sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np

from fgbg.store.plan import Plan, SampleRef

ValBy = Literal["bg", "fg", "random"]
VAL_BY: tuple[str, ...] = ("bg", "fg", "random")


def entry_column(entries: Sequence[SampleRef], by: str) -> np.ndarray:
    """int64 (N,): the bg or fg index of every entry; from the plan's order when given a Plan."""
    if isinstance(entries, Plan):
        i = np.arange(len(entries), dtype=np.int64)
        return i // entries.per_bg if by == "bg" else i // (entries.flips * entries.placements) % entries.n_fg
    return np.fromiter((getattr(e, by) for e in entries), np.int64, len(entries))


@dataclass(frozen=True)
class Split:
    by: str  # "bg", "fg" or "random"
    fraction: float  # share held out for validation (of backgrounds, foregrounds or samples)
    seed: int
    held_out: list[int]  # bg or fg indices held out (empty for "random")
    train: list[int] = field(repr=False)  # sample indices
    val: list[int] = field(repr=False)

    def record(self) -> dict:
        """What a run records: everything but the index lists (they follow from it)."""
        return {"by": self.by, "fraction": self.fraction, "seed": self.seed, "held_out": list(self.held_out),
                "n_train": len(self.train), "n_val": len(self.val)}  # not asdict: it would copy 400k indices


def split_indices(entries: Sequence[SampleRef], by: str = "bg", fraction: float = 0.2, seed: int = 0) -> Split:
    """Hold out ``fraction`` of the backgrounds (or foregrounds, or samples) for validation.

    ``entries``: the store's plan (``StoreReader(store).plan``) or any sequence of objects with .bg and .fg.

    Raises:
        ValueError: an unknown ``by``, or too few backgrounds/foregrounds to hold one out.
    """
    if by not in VAL_BY:
        raise ValueError(f"--val must be one of {', '.join(VAL_BY)}, got {by!r}")
    if not 0 < fraction < 1:
        raise ValueError(f"the validation fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    if by == "random":
        n = len(entries)
        n_val = max(1, round(fraction * n))
        val = np.sort(rng.choice(n, n_val, replace=False))
        return Split(by, fraction, seed, [], np.setdiff1d(np.arange(n), val).tolist(), val.tolist())
    column = entry_column(entries, by)
    ids = np.unique(column).tolist()
    if len(ids) < 2:
        raise ValueError(f"--val {by} needs at least 2 {by}s in the store, it has {len(ids)}; use --val random")
    n_held = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    held = sorted(int(i) for i in rng.choice(ids, n_held, replace=False))
    is_val = np.isin(column, held)
    return Split(by, fraction, seed, held, np.flatnonzero(~is_val).tolist(), np.flatnonzero(is_val).tolist())
