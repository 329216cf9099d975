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


def demo_folders(root: Path, n_bg: int = 3, n_fg: int = 3) -> tuple[Path, Path]:
    """(ROOT/bg with n_bg real photos, ROOT/fg with n_fg real RGBA cut-outs) from the demo assets."""
    bg_src, fg_src = demo_assets()
    return copy_images(bg_src, root / "bg", n_bg, "*.jpg"), copy_images(fg_src, root / "fg", n_fg, "*.png")


def make_store(folders: tuple[Path, Path], out: Path, **config) -> Path:
    """A store at ``out`` from ``folders``: the SMALL config with ``config``'s changes, made in this process."""
    from fgbg.make.generate import generate

    generate(*folders, out, GenerateConfig(**{**SMALL, **config}), workers=0, progress=False)
    return out


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """(bg folder with 3 real photos, fg folder with 3 real RGBA cut-outs)."""
    return demo_folders(tmp_path)


@pytest.fixture
def small_config() -> GenerateConfig:
    return GenerateConfig(**SMALL)


@pytest.fixture(scope="session", autouse=True)
def cpu_unless_marked_cuda():
    """Tests run on the CPU, in this process and in the CLI processes they start, also where a GPU is
    visible (every verb defaults to ``auto``): FGBG_CPU_ONLY=1 hides it from fgbg for the whole session;
    :func:`gpu_for_cuda_tests` lifts it for the tests marked ``cuda``."""
    from fgbg.engine.devices import CPU_ONLY_ENV

    with pytest.MonkeyPatch.context() as m:
        m.setenv(CPU_ONLY_ENV, "1")
        yield


@pytest.fixture(autouse=True)
def gpu_for_cuda_tests(request, monkeypatch):
    """A test marked ``cuda`` sees the GPU (and so do the processes it starts)."""
    from fgbg.engine.devices import CPU_ONLY_ENV

    if "cuda" in request.keywords:
        monkeypatch.delenv(CPU_ONLY_ENV, raising=False)


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked ``cuda`` are skipped, with the reason, where no CUDA GPU is visible (asked before
    :func:`cpu_unless_marked_cuda` hides it)."""
    from fgbg.engine.devices import cuda_device_count

    if any("cuda" in item.keywords for item in items) and cuda_device_count() == 0:
        skip = pytest.mark.skip(reason="needs a CUDA GPU; none is visible here (run on a GPU machine)")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)
