"""Ctrl-C during training: a clean stop, last.ckpt at the step reached, the exact command that
resumes, an exact resume, and the rest of a --max-minutes budget; a log gets lines, not a bar."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from fgbg.cli import main
from fgbg.learn.model import ModelConfig
from fgbg.learn.resume import resume_meta, spent_seconds
from fgbg.learn.train import TrainConfig, TrainInterrupted, train

from .conftest import demo_folders, make_store
from .test_train import assert_planned_by_the_patches

TINY = dict(size=32, fg_size=16, placements=2, shard_size=5)  # 36 samples: 24 train (3 steps of 8), 12 val
FAST = dict(size=32, batch=8, workers=0, log_images=4, threads=1)
FAST_FLAGS = ["--size", "32", "--batch", "8", "--workers", "0", "--width", "8", "--threads", "1"]
SMALL_NET = ModelConfig(width=8)
PROGRESS_LINE = re.compile(r"^epoch \d+/\d+, step \d+/\d+ \(\d+%\):")


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupt")
    return make_store(demo_folders(root, 3, 3), root / "store", **TINY)


class CtrlCAt(Callback):
    """Press Ctrl-C (SIGINT to this process) as optimizer step ``step`` (0-based) begins."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            # without a handler of train()'s, SIGINT would interrupt the whole test session
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler, "train() does not catch Ctrl-C"
            os.kill(os.getpid(), signal.SIGINT)


class SlowSteps(Callback):
    """A busier machine: every step takes ``seconds`` longer."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        time.sleep(self.seconds)


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def straight(store, tmp_path_factory):
    """The last.ckpt of an uninterrupted 2-epoch run (6 steps)."""
    out = tmp_path_factory.mktemp("straight") / "run"
    train(store, out, TrainConfig(epochs=2, **FAST), SMALL_NET, progress=False, log=quiet)
    return load(out / "last.ckpt")


@pytest.mark.parametrize("press_at, saved_at", [(4, 5), (2, 3)])  # mid-epoch 1; the last step of epoch 0
def test_ctrl_c_saves_the_step_reached_and_the_resume_is_exact(store, straight, tmp_path, press_at, saved_at):
    run = tmp_path / "run"
    config = TrainConfig(epochs=2, **FAST)
    with pytest.raises(TrainInterrupted) as stopped:
        train(store, run, config, SMALL_NET, progress=False, log=quiet, callbacks=[CtrlCAt(press_at)])
    hint = stopped.value.hint
    assert "\n" not in hint and hint.endswith(f"resume with: fgbg train {store} --out {run} --resume")
    assert load(run / "last.ckpt")["global_step"] == saved_at  # the step in flight was finished and kept

    summary = train(store, run, config, SMALL_NET, resume=True, progress=False, log=quiet)
    resumed = load(run / "last.ckpt")
    assert summary["global_step"] == resumed["global_step"] == straight["global_step"] == 6
    for k, v in straight["state_dict"].items():  # the same batches in the same order, from the same state
        torch.testing.assert_close(resumed["state_dict"][k], v, rtol=0, atol=0, msg=k)
    for i, s in straight["optimizer_states"][0]["state"].items():
        torch.testing.assert_close(resumed["optimizer_states"][0]["state"][i]["exp_avg"], s["exp_avg"], rtol=0, atol=0)


class SecondCtrlC(Callback):
    """A second Ctrl-C: its KeyboardInterrupt raised in the middle of step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


def test_a_second_ctrl_c_stops_at_once_keeping_the_last_checkpoint(store, tmp_path):
    run, before = tmp_path / "run", signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainInterrupted) as stopped:
        train(store, run, TrainConfig(epochs=2, **FAST), SMALL_NET, progress=False, log=quiet, callbacks=[SecondCtrlC(4)])
    assert stopped.value.hint.endswith(f"resume with: fgbg train {store} --out {run} --resume")
    assert load(run / "last.ckpt")["global_step"] == 3  # the end of epoch 0, untouched
    assert signal.getsignal(signal.SIGINT) is before  # Ctrl-C works again (Lightning had set it to be ignored)


def test_cli_ctrl_c_exits_130_with_the_command_that_resumes_and_logs_without_bars(store, tmp_path, capsys):
    run = tmp_path / "run"
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"  # files: no terminal, as in a log
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen([sys.executable, "-m", "fgbg", "train", str(store), "--out", str(run), *FAST_FLAGS, "--epochs", "4"], stdout=o, stderr=e)
        deadline = time.monotonic() + 120
        while not (run / "last.ckpt").exists():  # the first epoch is done
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130, err.read_text()
    printed = out.read_text() + err.read_text()
    assert "Traceback" not in printed and "\r" not in printed  # no bar redrawn into the log
    lines = err.read_text().splitlines()
    assert [line for line in lines if PROGRESS_LINE.match(line)]  # progress as lines instead
    said = [line for line in lines if not PROGRESS_LINE.match(line)]
    command = f"fgbg train {store} --out {run} --resume"
    assert len(said) <= 2 and said[-1].endswith(f"resume with: {command}"), said

    capsys.readouterr()
    assert main(shlex.split(command)[1:]) == 0  # the printed command resumes the run, to its end
    assert json.loads((run / "summary.json").read_text())["global_step"] == 12
    printed = capsys.readouterr()
    assert "\r" not in printed.out + printed.err and PROGRESS_LINE.search(printed.err.splitlines()[-1])


def test_a_resumed_budget_run_gets_the_rest_of_its_budget_and_ends_annealed(store, tmp_path, monkeypatch):
    monkeypatch.setattr("fgbg.learn.budget.seconds_per_sample", lambda *a, **k: 1e-7)  # a plan far too optimistic
    monkeypatch.setattr("fgbg.learn.budget.BUDGET_SHARE", 0.5)  # tiny epochs: per-epoch checkpoint writes weigh a lot
    run, budget = tmp_path / "run", 8.0  # seconds
    config = TrainConfig(epochs=None, max_minutes=budget / 60, **FAST)
    said = []
    with pytest.raises(TrainInterrupted):  # in epoch 1, after the schedule was re-planned from epoch 0
        train(store, run, config, SMALL_NET, progress=False, log=said.append, callbacks=[CtrlCAt(4)])
    assert_planned_by_the_patches(said, run)
    first = load(run / "last.ckpt")
    spent = spent_seconds(first)
    assert 0 < spent < budget and first["global_step"] == 5

    # given a smaller total budget on resume, one already spent: the schedule ends at the next step
    meta, at = resume_meta(run / "last.ckpt", TrainConfig(epochs=None, max_minutes=spent / 60), quiet)
    assert at.step == 5 and meta["schedule"]["total_steps"] == 6

    # the same budget (nothing passed) on a machine now busier than the first epoch measured
    summary = train(store, run, TrainConfig(), SMALL_NET, resume=True, progress=False, log=quiet, callbacks=[SlowSteps(0.2)])
    last, plan = load(run / "last.ckpt"), json.loads((run / "run.json").read_text())["schedule"]
    total = plan["total_steps"]
    assert 5 < summary["global_step"] == total == last["lr_schedulers"][0]["total_steps"]  # it trained on, to the end
    assert last["lr_schedulers"][0]["last_epoch"] == total  # every step of the one cycle taken: fully annealed
    assert spent < summary["train_seconds"] <= 1.25 * budget  # both attempts together, within the budget


def test_a_run_its_budget_stopped_in_mid_epoch_resumes_with_a_longer_one_to_the_end(store, tmp_path):
    run = tmp_path / "run"
    summary = train(store, run, TrainConfig(epochs=3, max_minutes=0.001, **FAST), SMALL_NET, progress=False, log=quiet)
    assert summary["global_step"] < 9  # 0.06 s: stopped by the budget
    summary = train(store, run, TrainConfig(epochs=3, max_minutes=10, **FAST), SMALL_NET, resume=True, progress=False, log=quiet)
    last = load(run / "last.ckpt")
    assert summary["global_step"] == 9 == last["lr_schedulers"][0]["last_epoch"]  # the whole schedule, annealed
