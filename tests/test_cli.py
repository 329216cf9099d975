"""The command line as a user meets it: help, bad input, one-line errors, never a traceback."""

import numpy as np
import pytest
from PIL import Image

from fgbg.cli import main
from fgbg.store import read_dataset_json

SMALL_ARGS = ["--size", "64", "--fg-size", "32", "--placements", "2", "--workers", "1", "--quiet"]


def run(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def write_bad_files(fg):
    """One file per bad-input class; returns {file name: words the message must contain}."""
    (fg / "notes.png").write_text("this is not an image")
    good = Image.new("RGBA", (40, 40), (255, 0, 0, 255))
    good.save(fg / "whole.png")
    data = (fg / "whole.png").read_bytes()
    (fg / "truncated.png").write_bytes(data[: len(data) // 2])
    (fg / "whole.png").unlink()
    (fg / "empty.jpg").write_bytes(b"")
    noise = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(noise).save(fg / "busy.jpg")
    Image.new("RGBA", (40, 40), (255, 0, 0, 0)).save(fg / "invisible.png")
    return {
        "notes.png": "not an image",
        "truncated.png": "truncated or corrupt",
        "empty.jpg": "empty",
        "busy.jpg": "not plain",
        "invisible.png": "fully transparent",
    }


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = capsys.readouterr().out
    for option in ["--placements", "--flip", "--size", "--fg-size", "--scale", "--perspective", "--depth",
                   "--horizon", "--format", "--jpeg-quality", "--depth-bits", "--workers", "--seed",
                   "--on-bad", "--overwrite", "--bg-fit", "--model", "--progress", "--no-progress"]:  # fmt: skip
        assert option in text


def test_every_bad_input_is_listed_and_nothing_is_generated(folders, tmp_path, capsys):
    bg, fg = folders
    expected = write_bad_files(fg)
    out = tmp_path / "out"
    code, _, err = run(capsys, "generate", "--bg", str(bg), "--fg", str(fg), "--out", str(out), *SMALL_ARGS)
    assert code == 2  # a user error: one line per bad file, exit 2
    for name, words in expected.items():
        lines = [line for line in err.splitlines() if name in line]
        assert len(lines) == 1 and words in lines[0], (name, err)
    assert "--on-bad skip" in err
    assert not out.exists() or not any(out.iterdir())


def test_on_bad_skip_warns_and_carries_on(folders, tmp_path, capsys):
    bg, fg = folders
    expected = write_bad_files(fg)
    out = tmp_path / "out"
    code, stdout, err = run(
        capsys, "generate", "--bg", str(bg), "--fg", str(fg), "--out", str(out), "--on-bad", "skip", *SMALL_ARGS
    )
    assert code == 0, err
    for name in expected:
        assert name in err and "skipped" in err
    meta = read_dataset_json(out)
    assert meta["counts"]["fg"] == 3 and meta["counts"]["samples"] == 3 * 3 * 2 * 2
    assert "samples" in stdout


def test_bad_background_names_the_file(folders, tmp_path, capsys):
    bg, fg = folders
    (bg / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 nope")
    code, _, err = run(capsys, "generate", "--bg", str(bg), "--fg", str(fg), "--out", str(tmp_path / "o"), *SMALL_ARGS)
    assert code == 2 and "broken.jpg" in err


def test_empty_folder_and_folder_without_usable_files(folders, tmp_path, capsys):
    bg, fg = folders
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "generate", "--bg", str(bg), "--fg", str(empty), "--out", str(tmp_path / "o"), *SMALL_ARGS)
    assert code == 2 and "no foreground images found" in err and str(empty) in err
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    (only_bad / "x.png").write_text("nope")
    code, _, err = run(
        capsys, "generate", "--bg", str(bg), "--fg", str(only_bad), "--out", str(tmp_path / "o"), "--on-bad", "skip",
        *SMALL_ARGS,
    )  # fmt: skip
    assert code == 2 and "no usable foreground" in err
    code, _, err = run(capsys, "generate", "--bg", str(tmp_path / "missing"), "--fg", str(fg), "--out", str(tmp_path / "o"))
    assert code == 2 and "not a folder" in err


def test_fg_larger_than_bg_is_refused_before_any_work(folders, tmp_path, capsys):
    bg, fg = folders
    out = tmp_path / "o"
    code, _, err = run(capsys, "generate", "--bg", str(bg), "--fg", str(fg), "--out", str(out), "--size", "64", "--fg-size", "80")
    assert code == 2 and "larger than the bg" in err
    assert not out.exists()


def test_demo_runs_from_the_bundled_assets(tmp_path, capsys):
    from fgbg.config import GenerateConfig
    from fgbg.demo import run_demo

    run_demo(tmp_path / "demo", workers=1, config=GenerateConfig(size=64, fg_size=32, placements=1), train_minutes=0)
    out = capsys.readouterr().out
    meta = read_dataset_json(tmp_path / "demo" / "data")
    assert meta["counts"]["bg"] >= 8 and meta["counts"]["fg"] >= 12
    assert str(tmp_path / "demo" / "data") in out and "samples" in out


def test_generate_and_train_defaults_are_the_configs_own(monkeypatch, tmp_path):
    """The CLI copies no default: generate's options are GenerateConfig's, train's are TrainConfig's, ModelConfig's and LossConfig's."""
    import fgbg.learn.train
    from fgbg.cli import build_parser, config_from_args
    from fgbg.config import GenerateConfig
    from fgbg.learn.losses import LossConfig
    from fgbg.learn.model import ModelConfig
    from fgbg.learn.train import TrainConfig

    args = build_parser().parse_args(["generate", "--bg", "b", "--fg", "f", "--out", "o"])
    assert config_from_args(args) == GenerateConfig()
    seen = []
    monkeypatch.setattr(fgbg.learn.train, "train", lambda store, out, config, model, loss, **kw: seen.append((config, model, loss, kw)))
    assert main(["train", "s", "--out", str(tmp_path / "r")]) == 0
    flags = ["--max-minutes", "2", "--workers", "0", "--no-augment", "--width", "8", "--depth-log", "0.5"]
    assert main(["train", "s", "--out", str(tmp_path / "r"), *flags]) == 0
    assert seen[0] == (TrainConfig(), ModelConfig(), LossConfig(), {"resume": False, "progress": None})
    budget, model, loss, _ = seen[1]
    assert budget == TrainConfig(epochs=None, max_minutes=2.0, workers=0, augment=False) and model == ModelConfig(width=8)
    assert loss == LossConfig(depth_log=0.5)


@pytest.mark.parametrize("flag, progress", [([], None), (["--progress"], True), (["--no-progress"], False), (["--quiet"], False)])
def test_evaluate_and_predict_take_the_progress_flags_of_every_verb(monkeypatch, tmp_path, flag, progress):
    import fgbg.learn.evaluate
    import fgbg.learn.predict

    seen = []
    monkeypatch.setattr(fgbg.learn.evaluate, "evaluate", lambda checkpoint, store, out, **kw: seen.append(kw["progress"]))
    monkeypatch.setattr(fgbg.learn.predict, "predict", lambda model, bg, fg_bg, out, **kw: seen.append(kw["progress"]))
    assert main(["evaluate", "best.ckpt", "store", "--out", str(tmp_path / "e"), *flag]) == 0
    assert main(["predict", "best.ckpt", "--bg", "b.jpg", "--fg-bg", "c.jpg", "--out", str(tmp_path / "p"), *flag]) == 0
    assert seen == [progress, progress]


def test_a_depth_preset_that_does_not_exist_is_refused_before_any_work():
    from fgbg.config import GenerateConfig
    from fgbg.errors import ConfigError

    with pytest.raises(ConfigError, match="--depth-preset must be one of midas-small, depth-anything"):
        GenerateConfig(depth="estimator", depth_model="model.onnx", depth_preset="midas")
