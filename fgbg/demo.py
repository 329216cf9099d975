"""``fgbg demo``: the whole job on the small asset set shipped inside the package.

Each step of the product adds one call here, so the demo always shows all of it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Callable

from fgbg.config import GenerateConfig
from fgbg.generate import generate


def demo_assets() -> tuple[Path, Path]:
    """(bg folder, fg folder) of the bundled demo images."""
    root = Path(str(resources.files("fgbg") / "demo_assets"))
    return root / "bg", root / "fg"


def run_demo(
    out: Path,
    workers: int | None = None,
    config: GenerateConfig | None = None,
    log: Callable[[str], None] = print,
) -> None:
    """Generate a store at ``out`` from the bundled assets (default config unless given)."""
    bg_dir, fg_dir = demo_assets()
    config = config or GenerateConfig()
    log(f"demo: generating from {bg_dir} and {fg_dir}")
    summary = generate(bg_dir, fg_dir, out, config, workers=workers, warn=log)
    log(f"store: {summary}")
    log(f"read it with: webdataset.WebDataset('{out}/shards/shard-{{000000..{summary.shards - 1:06d}}}.tar')")
