"""DDP edge cases on the CPU (gloo, 2 processes on 127.0.0.1), as a new user meets them: fewer held-out
samples to validate on than processes is one line before anything is written (never a traceback from
the ranks, never a hang), and a run stopped in mid-epoch in one process and resumed on two trains each
remaining sample of that epoch exactly once."""

import json
import os
import subprocess
import sys

import pytest

from fgbg.learn.callbacks import TRACE_ENV
from fgbg.learn.data import EpochSampler, read_entries, split_indices
from fgbg.learn.model import ModelConfig
from fgbg.learn.train import TrainConfig, TrainInterrupted, train

from .conftest import demo_folders, make_store
from .test_ddp import DDP, FLAGS, free_port
from .test_train_interrupt import CtrlCAt

TINY = dict(size=32, fg_size=16, placements=2, shard_size=5)  # 36 samples: 24 train, 12 held out (one bg)


def run_fgbg(*args, trace=None, timeout=240) -> subprocess.CompletedProcess:
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "GLOO_SOCKET_IFNAME": "lo"}
    if trace:
        env[TRACE_ENV] = str(trace)
    return subprocess.run([sys.executable, "-m", "fgbg", *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp-edges")
    return make_store(demo_folders(root, 3, 3), root / "store", **TINY)


def test_one_held_out_sample_on_two_processes_is_one_line_before_anything_is_written(store, tmp_path):
    run = tmp_path / "run"
    done = run_fgbg("train", store, "--out", run, *DDP, *FLAGS, "--epochs", "1", "--val-samples", "1")
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "--val-samples" in lines[0] and "2 processes" in lines[0], lines[0]
    assert not run.exists()


def test_a_mid_epoch_resume_on_more_processes_trains_each_remaining_sample_once(store, tmp_path):
    run, trace = tmp_path / "run", tmp_path / "trace"
    config = TrainConfig(epochs=1, size=32, batch=4, workers=0, threads=1, accelerator="cpu")
    os.environ[TRACE_ENV] = str(trace)
    try:  # one process, Ctrl-C as its second step begins, which it finishes: 2 steps of 4 done (8 of 24 samples), mid-epoch
        with pytest.raises(TrainInterrupted):
            train(store, run, config, ModelConfig(width=8), progress=False, log=lambda _: None, callbacks=[CtrlCAt(1)])
    finally:
        del os.environ[TRACE_ENV]
    first = [json.loads(line) for line in (trace / "rank0.jsonl").read_text().splitlines()]
    done_before = [i for line in first if "index" in line for i in line["index"]]
    assert len(done_before) == 8
    (trace / "rank0.jsonl").unlink()
    resumed = run_fgbg("train", store, "--out", run, *DDP, *FLAGS, "--resume", trace=trace)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = [json.loads(line) for r in (0, 1) for line in (trace / f"rank{r}.jsonl").read_text().splitlines()]
    done_after = [i for line in after if "index" in line and line["epoch"] == 0 for i in line["index"]]
    split = split_indices(read_entries(store), "bg", 0.2, 0)
    order = [split.train[p] for p in EpochSampler(len(split.train), seed=0).order().tolist()]
    assert sorted(done_before) == sorted(order[:8])
    assert sorted(done_after) == sorted(order[8:]), (done_after, order)  # the 16 left, each once: 2 steps of 4 x 2 ranks
    summary = json.loads((run / "summary.json").read_text())
    assert summary["devices"]["world_size"] == 2
