"""The config of a training run (:class:`TrainConfig`), in a module of its own below everything that
uses it: :mod:`~fgbg.learn.budget`, :mod:`~fgbg.learn.resume` and :mod:`~fgbg.learn.train` all read it,
and none of them is imported here (no torch either: the CLI checks a config before it loads torch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fgbg.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    size: int = 96  # training side in pixels; samples are resized to it on load (a non-square store's letterboxed: longer side S, padded)
    epochs: int | None = 20  # schedule length; None with max_minutes: as many as fit the budget
    max_minutes: float | None = None  # wall-clock budget; training stops when it is spent
    batch: int = 32
    lr: float = 3e-3  # peak learning rate of the one-cycle schedule
    weight_decay: float = 1e-4
    val: str = "bg"  # hold out backgrounds ("bg"), foregrounds ("fg") or samples ("random")
    val_fraction: float = 0.2
    augment: bool = True  # paired colour jitter and flips on the training split
    bg_aug: str = "real"  # the bg input perturbed apart from the composite, as a second photograph (fgbg.learn.perturb); none: as stored
    seed: int = 0
    workers: int | None = None  # DataLoader processes per training process (0: in it); None: default_loader_workers()
    threads: int | None = None  # torch threads; None: the cores per training process
    log_images: int = 8  # rows of the per-epoch image grid
    val_samples: int = 2000  # validation during training: a fixed, seeded subset of the held-out split (0: all of it)
    # where to train (not part of what the run is: a resume takes its own, see fgbg.learn.resume)
    accelerator: str = "auto"  # auto (a GPU if any), cpu or gpu
    devices: str | None = None  # None/"auto": every visible GPU (one process on the CPU); a count "8" or GPU indices "0,2"
    num_nodes: int | None = None  # machines; None: 1, or what torchrun / SLURM say
    strategy: str = "auto"  # auto (ddp for more than one process) or ddp
    precision: str | None = None  # None: bf16-mixed on a GPU that has it (else 16-mixed), 32 on the CPU
    compile: bool = False  # torch.compile the network

    def __post_init__(self) -> None:
        if self.epochs is None and self.max_minutes is None:
            raise ConfigError("give --epochs, --max-minutes or both")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {self.epochs}")
        if self.max_minutes is not None and not 0 < self.max_minutes < math.inf:
            raise ConfigError(f"--max-minutes must be a positive number of minutes, got {self.max_minutes}")
        if self.size < 16 or self.batch < 1:
            raise ConfigError(f"--size must be at least 16 and --batch at least 1, got {self.size} and {self.batch}")
        if not 0 < self.lr < math.inf:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"--val-fraction must be between 0 and 1, got {self.val_fraction}")
        if self.bg_aug not in ("real", "none"):
            raise ConfigError(f"--bg-aug must be real or none, got {self.bg_aug!r}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be 0 or more, got {self.seed}")
        if self.val_samples < 0:
            raise ConfigError(f"--val-samples must be 0 (the whole held-out split) or more, got {self.val_samples}")
        if self.num_nodes is not None and self.num_nodes < 1:
            raise ConfigError(f"--num-nodes must be at least 1, got {self.num_nodes}")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"--workers must be 0 (load in the training process) or more, got {self.workers}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")

