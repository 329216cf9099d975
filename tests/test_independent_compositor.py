"""benchmarks/independent_compositor.py: exact masks, the same bytes from the same seed, and its command line."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import demo_folders

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "independent_compositor.py"
SIZE = (48, 40)


def load_script():
    spec = importlib.util.spec_from_file_location("independent_compositor", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compositor = load_script()


def read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def every_file(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(bg folder, fg folder, output) of 6 samples in every mode, from real demo photos and cut-outs."""
    root = tmp_path_factory.mktemp("independent")
    bg_dir, fg_dir = demo_folders(root, n_bg=2, n_fg=3)
    compositor.make(bg_dir, fg_dir, root / "out", SIZE, 6, 0, compositor.MODES)
    return bg_dir, fg_dir, root / "out"


@pytest.mark.parametrize("mode", compositor.MODES)
def test_each_mask_is_the_placed_sprites_alpha_at_least_128(made, mode):
    bg_dir, fg_dir, out = made
    manifest = json.loads((out / mode / "manifest.json").read_text())
    assert manifest["size"] == list(SIZE) and len(manifest["samples"]) == 6
    fgs = compositor.list_foregrounds(fg_dir)
    for i, sample in enumerate(manifest["samples"]):
        choice = compositor.draw(np.random.default_rng([0, i]), 2, len(fgs))
        sprite = compositor.shaped_sprite(compositor.load_foreground(fgs[choice["fg"]]), choice, SIZE, "rotated" in mode)
        x, y, w, h = sample["box"]
        assert sprite.shape[:2] == (h, w)
        expected = np.zeros(SIZE[::-1], np.uint8)
        expected[y : y + h, x : x + w] = np.where(sprite[..., 3] >= 128, 255, 0)
        mask = read(out / mode / "mask" / sample["name"])
        assert np.array_equal(mask, expected) and sample["mask_area"] == np.count_nonzero(mask)
        assert read(out / mode / "composite" / sample["name"]).shape == (SIZE[1], SIZE[0], 3)


def test_an_opaque_square_is_masked_as_exactly_its_box_and_changes_nothing_outside_it(tmp_path):
    bg_dir, _ = demo_folders(tmp_path, n_bg=1, n_fg=0)
    fg_dir = tmp_path / "square"
    fg_dir.mkdir()
    Image.fromarray(np.full((30, 30, 4), (200, 40, 90, 255), np.uint8)).save(fg_dir / "square.png")
    compositor.make(bg_dir, fg_dir, tmp_path / "out", SIZE, 4, 3, ("hard", "relit", "feathered+relit+rotated"))
    for mode in ("hard", "relit"):
        for sample in json.loads((tmp_path / "out" / mode / "manifest.json").read_text())["samples"]:
            x, y, w, h = sample["box"]
            box = np.zeros(SIZE[::-1], bool)
            box[y : y + h, x : x + w] = True
            folder = tmp_path / "out" / mode
            assert np.array_equal(read(folder / "mask" / sample["name"]) == 255, box)
            assert np.array_equal(read(folder / "composite" / sample["name"])[~box], read(folder / "bg" / sample["name"])[~box])
            if mode == "hard":
                assert (read(folder / "composite" / sample["name"])[box] == (200, 40, 90)).all()
    for sample in json.loads((tmp_path / "out" / "feathered+relit+rotated" / "manifest.json").read_text())["samples"]:
        side = sample["box"][2:]  # the rotated square keeps its area, within the edge's rounding
        area = round(compositor.SIDE_OF_FRAME[0] * min(SIZE))
        assert sample["mask_area"] >= 0.85 * area**2 and sample["mask_area"] <= side[0] * side[1]


def test_the_same_seed_writes_the_same_bytes_and_another_seed_does_not(made, tmp_path):
    bg_dir, fg_dir, out = made
    compositor.make(bg_dir, fg_dir, tmp_path / "again", SIZE, 6, 0, compositor.MODES)
    assert every_file(tmp_path / "again") == every_file(out)
    compositor.make(bg_dir, fg_dir, tmp_path / "other", SIZE, 6, 1, ("hard",))
    assert every_file(tmp_path / "other" / "hard") != every_file(out / "hard")


def test_it_shares_no_code_with_fgbg():
    tree = ast.parse(SCRIPT.read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0] in ("fgbg", "tests", "benchmarks")}


def test_it_runs_as_a_script_with_help():
    shown = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "feathered+relit+rotated" in shown.stdout and "--size" in shown.stdout


@pytest.mark.parametrize("bad, named", [(["--size", "0x40"], "--size"), (["--size", "64x"], "--size"), (["--modes", "hard,blur"], "--modes"),
                                        (["--fg", "none"], "--fg"), (["--count", "0"], "--count")])  # fmt: skip
def test_bad_input_is_one_line_naming_the_flag_exit_2_nothing_written(tmp_path, capsys, bad, named):
    bg_dir, fg_dir = demo_folders(tmp_path, n_bg=1, n_fg=1)
    args = ["--bg", str(bg_dir), "--fg", str(fg_dir), "--out", str(tmp_path / "out"), *bad]
    with pytest.raises(SystemExit) as exited:
        compositor.main([a.replace("none", str(tmp_path / "none")) for a in args])
    assert exited.value.code == 2 and named in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()
