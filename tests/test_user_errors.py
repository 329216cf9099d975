"""User mistakes as a new user makes them, through the CLI on real demo images.

Each refusal is one line on stderr naming the flag or the file, exit code 2, no traceback,
and nothing written to --out when it is checked before any work. What can go on (broken
symlinks, tiny foregrounds) is one warning line each, and the run carries on.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fgbg import cli
from fgbg.cli import main
from fgbg.store import read_dataset_json

SMALL = ["--size", "64", "--fg-size", "32", "--placements", "2", "--workers", "0", "--no-progress"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``fgbg ARGV``, usage errors (SystemExit) included."""
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def generate(capsys, bg: Path, fg: Path, out: Path, *flags: str) -> tuple[int, str, str]:
    return run(capsys, "generate", "--bg", str(bg), "--fg", str(fg), "--out", str(out), *SMALL, *flags)


def manifest(store: Path) -> list[dict]:
    return [json.loads(line) for line in (store / "manifest.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- numbers, before any work


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--scale", "inf"], "--scale"),
        (["--scale", "nan"], "--scale"),
        (["--scale", "1.0:0.5"], "--scale"),
        (["--scale", "0"], "--scale"),
        (["--seed", "-1"], "--seed"),
        (["--seed", str(2**63)], "--seed"),
        (["--placements", "0"], "--placements"),
        (["--size", "8"], "--size"),
        (["--size", "5000"], "--size"),
        (["--fg-size", "2"], "--fg-size"),
        (["--horizon", "1.5"], "--horizon"),
        (["--jpeg-quality", "0"], "--jpeg-quality"),
        (["--shard-size", "0"], "--shard-size"),
        (["--workers", "-3"], "--workers"),
        (["--workers", "two"], "--workers"),
    ],
)
def test_impossible_numbers_are_one_line_and_nothing_is_written(folders, tmp_path, capsys, flags, named):
    bg, fg = folders
    out = tmp_path / "out"
    code, _, err = generate(capsys, bg, fg, out, *flags)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("fgbg generate: error: ") and named in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    "verb",
    [["generate", "--bg", "b", "--fg", "f", "--out", "o"], ["demo"], ["stats", "s"], ["verify", "s"], ["card", "s"], ["train", "s", "--out", "o"]],
)
def test_negative_workers_is_refused_by_every_verb(tmp_path, capsys, verb, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *verb, "--workers", "-1")
    assert code == 2 and len(err.splitlines()) == 1 and "--workers" in err
    assert f"fgbg {verb[0]}: error:" in err
    assert list(tmp_path.iterdir()) == []


def test_out_naming_an_existing_file_is_one_line(folders, tmp_path, capsys):
    bg, fg = folders
    out = tmp_path / "data.tar"
    out.write_bytes(b"the user's own file")
    code, _, err = generate(capsys, bg, fg, out)
    assert code == 2 and len(err.splitlines()) == 1 and str(out) in err and "--out" in err
    assert out.read_bytes() == b"the user's own file"
    code, _, err = generate(capsys, bg, fg, out / "sub")
    assert code == 2 and len(err.splitlines()) == 1 and str(out) in err


# ---------------------------------------------------------------- bad files


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height RGB pixels, with (almost) no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_decompression_bomb_and_huge_images_are_bad_files(folders, tmp_path, capsys):
    bg, fg = folders
    png_header_only(fg / "bomb.png", 30000, 30000)  # Pillow itself refuses this at open
    png_header_only(fg / "huge.png", 12000, 9000)  # 108 MP: Pillow only warns
    out = tmp_path / "out"
    code, _, err = generate(capsys, bg, fg, out)
    assert code == 2
    for name in ("bomb.png", "huge.png"):
        lines = [line for line in err.splitlines() if name in line]
        assert len(lines) == 1 and "MP" in lines[0] and "downscale" in lines[0], err
    assert "12000x9000" in err
    assert len(err.splitlines()) == 3  # one per bad file, and what to do
    assert not out.exists()


# ---------------------------------------------------------------- warnings, and the run carries on


def test_broken_symlinks_are_skipped_with_one_warning_each(folders, tmp_path, capsys):
    bg, fg = folders
    os.symlink(bg / "missing.jpg", bg / "dangling.jpg")
    os.symlink(bg / "self.jpg", bg / "self.jpg")
    os.symlink(bg, bg / "loop")  # a folder that contains its own link
    out = tmp_path / "out"
    code, _, err = generate(capsys, bg, fg, out)
    assert code == 0, err
    for name, words in (("dangling.jpg", "does not exist"), ("self.jpg", "loop"), ("loop", "loop")):
        lines = [line for line in err.splitlines() if f"{bg / name}:" in line]
        assert len(lines) == 1 and lines[0].startswith("warning: ") and words in lines[0] and "skipped" in lines[0], err
    assert read_dataset_json(out)["counts"]["bg"] == 3


def test_a_tiny_foreground_is_upscaled_with_a_warning(folders, tmp_path, capsys):
    bg, fg = folders
    dot = np.zeros((50, 50, 4), np.uint8)
    dot[20, 30] = (255, 0, 0, 255)  # one opaque pixel: a 1x1 fg once trimmed to its alpha box
    Image.fromarray(dot, "RGBA").save(fg / "dot.png")
    out = tmp_path / "out"
    code, _, err = generate(capsys, bg, fg, out)
    assert code == 0, err
    lines = [line for line in err.splitlines() if "dot.png" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "1x1" in lines[0] and "upscaled 32x" in lines[0]
    assert not any("upscaled" in line for line in err.splitlines() if "dot.png" not in line)  # real cut-outs: no warning
    assert read_dataset_json(out)["counts"]["fg"] == 4


# ---------------------------------------------------------------- depth sidecars


def test_depth_sidecars_are_scaled_by_their_bit_depth_not_their_values(folders, tmp_path, capsys):
    """A 16-bit map whose values are all <= 255 is value / 65535 (it was read as 8-bit: 255x too bright)."""
    bg, fg = folders
    first, second = sorted(bg.glob("*.jpg"))[:2]
    Image.fromarray(np.full((80, 80), 200, np.uint16)).save(first.with_name(first.stem + ".depth.png"))
    Image.fromarray(np.full((80, 80), 200, np.uint8)).save(second.with_name(second.stem + ".depth.png"))
    assert Image.open(first.with_name(first.stem + ".depth.png")).mode == "I;16"
    out = tmp_path / "out"
    code, _, err = generate(capsys, bg, fg, out, "--depth-bits", "16")
    assert code == 0, err
    at_foot = {}
    for a in manifest(out):
        at_foot.setdefault(a["bg_file"], set()).add(a["depth"])
    assert at_foot[first.name] == {round(200 / 65535, 6)}
    assert at_foot[second.name] == {round(200 / 255, 6)}


# ---------------------------------------------------------------- placement corners, in the store


def test_perspective_feet_at_the_border_keep_the_scale_of_their_depth(folders, tmp_path, capsys):
    """With a depth map that changes across columns, a fg near a side used to be pushed inside
    while its scale stayed that of the point it was pushed from."""
    bg, fg = folders
    for path in bg.glob("*.jpg"):
        across = np.tile(np.linspace(0, 65535, 80).astype(np.uint16), (80, 1))  # near on the right
        Image.fromarray(across).save(path.with_name(path.stem + ".depth.png"))
    out = tmp_path / "out"
    code, _, err = generate(capsys, bg, fg, out, "--perspective", "--scale", "0.3:1.0", "--depth-bits", "16", "--placements", "8")
    assert code == 0, err
    samples = manifest(out)
    for a in samples:
        assert 0 <= a["x"] and a["x"] + a["w"] <= 64 and 0 <= a["y"] and a["y"] + a["h"] <= 64
        assert a["foot"] == [a["x"] + a["w"] // 2, a["y"] + a["h"] - 1]
        assert a["scale"] == pytest.approx(0.3 + 0.7 * a["depth"], abs=1e-4), a
    assert min(a["x"] for a in samples) <= 2 and max(a["x"] + a["w"] for a in samples) >= 62  # both sides were reached


def test_perspective_with_one_scale_goes_from_three_tenths_far_to_the_scale_near(folders, tmp_path, capsys):
    bg, fg = folders
    out = tmp_path / "out"
    code, _, err = generate(capsys, bg, fg, out, "--perspective", "--scale", "0.5", "--depth-bits", "16", "--placements", "8")
    assert code == 0, err
    for a in manifest(out):  # the ground-plane prior: inverse depth 0 at the horizon, 1 on the bottom row
        assert a["scale"] == pytest.approx(0.15 + 0.35 * a["depth"], abs=1e-4), a
        if a["foot"][1] == 63:
            assert a["scale"] == pytest.approx(0.5)


# ---------------------------------------------------------------- Ctrl-C and bugs


def test_ctrl_c_is_one_line_and_exit_130(folders, tmp_path, capsys, monkeypatch):
    import fgbg.make.generate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fgbg.make.generate, "generate", interrupted)
    bg, fg = folders
    code, _, err = generate(capsys, bg, fg, tmp_path / "out")
    assert code == 130 and err.splitlines() == ["fgbg generate: interrupted; rerun the same command to resume"]

    def with_hint(*args, **kwargs):
        e = KeyboardInterrupt()
        e.hint = "interrupted; resume with: fgbg generate --bg B --fg F --out O"
        raise e

    monkeypatch.setattr(fgbg.make.generate, "generate", with_hint)
    code, _, err = generate(capsys, bg, fg, tmp_path / "out")
    assert code == 130 and err.splitlines() == ["fgbg generate: interrupted; resume with: fgbg generate --bg B --fg F --out O"]


def test_a_bug_keeps_its_traceback(folders, tmp_path, monkeypatch):
    """No blanket `except ValueError`: a bug is not dressed up as a user's mistake."""
    import fgbg.make.generate

    def buggy(*args, **kwargs):
        raise ValueError("an internal bug")

    monkeypatch.setattr(fgbg.make.generate, "generate", buggy)
    bg, fg = folders
    with pytest.raises(ValueError, match="an internal bug"):
        main(["generate", "--bg", str(bg), "--fg", str(fg), "--out", str(tmp_path / "out"), *SMALL])


# ---------------------------------------------------------------- one name per thing


def test_one_name_for_the_model_path_and_the_progress_flags():
    parse = cli.build_parser().parse_args
    base = ["generate", "--bg", "b", "--fg", "f", "--out", "o"]
    assert parse([*base, "--model", "m.onnx"]).depth_model == "m.onnx"
    assert parse([*base, "--depth-model", "m.onnx"]).depth_model == "m.onnx"  # the old name still works
    assert parse(["export", "onnx", "run/best.ckpt", "--out", "m.onnx"]).out == Path("m.onnx")
    long_work = [base, ["demo"], ["stats", "s"], ["verify", "s"], ["card", "s"], ["train", "s", "--out", "o"],
                 ["depth-maps", "d", "--model", "m"], ["cutout", "p", "--out", "o"]]  # fmt: skip
    for verb in long_work:
        assert parse(verb).progress is None, verb  # a bar on a terminal only
        assert parse([*verb, "--progress"]).progress is True
        assert parse([*verb, "--no-progress"]).progress is False
        assert parse([*verb, "--quiet"]).progress is False


def test_one_name_for_the_depth_preset_in_both_verbs_and_one_in_their_help(capsys):
    parse = cli.build_parser().parse_args
    generate, maps = ["generate", "--bg", "b", "--fg", "f", "--out", "o"], ["depth-maps", "d", "--model", "m.onnx"]
    for flag in ("--depth-preset", "--preset"):
        assert parse([*generate, flag, "midas-small"]).depth_preset == "midas-small", flag
        assert parse([*maps, flag, "depth-anything"]).preset == "depth-anything", flag
    assert parse(maps).preset is None and parse(generate).depth_preset == ""  # absent: the model's own size
    for verb in (["generate"], ["depth-maps"]):
        with pytest.raises(SystemExit):
            main([*verb, "--help"])
        shown = capsys.readouterr().out
        assert "--depth-preset {" in shown and "--preset" not in shown.replace("--depth-preset", ""), verb


@pytest.mark.parametrize("argv", [["train", "data", "--out", "run", "--max-minute", "1", "--bogus"], ["stats", "data", "extra"],
                                  ["depth-maps", "bg", "--model", "m.onnx", "--presets", "midas-small"]])  # fmt: skip
def test_an_unrecognized_argument_points_to_the_verbs_own_help(capsys, argv):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit.value.code == 2 and len(err) == 1, err
    assert err[0].startswith(f"fgbg {argv[0]}: error: unrecognized arguments") and err[0].endswith(f"(see `fgbg {argv[0]} --help`)")


def test_predict_knows_an_onnx_file_by_its_suffix(tmp_path, monkeypatch):
    import fgbg.learn.predict

    seen = []
    monkeypatch.setattr(fgbg.learn.predict, "predict", lambda model, bg, fg_bg, out, onnx=False, **kw: seen.append(onnx))
    args = ["--bg", "b.jpg", "--fg-bg", "c.jpg", "--out", str(tmp_path / "p")]
    assert main(["predict", "model.onnx", *args]) == 0
    assert main(["predict", "best.ckpt", *args]) == 0
    assert main(["predict", "model.onnx", "--onnx", *args]) == 0  # the old flag is accepted
    assert seen == [True, False, True]
