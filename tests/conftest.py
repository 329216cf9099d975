"""Shared fixtures: small folders of real images (a few of the bundled demo assets)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fgbg.config import GenerateConfig
from fgbg.demo import demo_assets

# Small but real: 64 px outputs keep every store in the tests under a second.
SMALL = dict(size=64, fg_size=32, placements=2, shard_size=7)


def copy_images(src: Path, dst: Path, n: int, pattern: str = "*.png") -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.glob(pattern))[:n]:
        shutil.copy(path, dst / path.name)
    return dst


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """(bg folder with 3 real photos, fg folder with 3 real RGBA cut-outs)."""
    bg_src, fg_src = demo_assets()
    bg = copy_images(bg_src, tmp_path / "bg", 3, "*.jpg")
    fg = copy_images(fg_src, tmp_path / "fg", 3, "*.png")
    return bg, fg


@pytest.fixture
def small_config() -> GenerateConfig:
    return GenerateConfig(**SMALL)
