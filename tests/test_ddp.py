"""DDP on the CPU (gloo, 2 processes on 127.0.0.1), launched as a user would, `python -m fgbg train
--accelerator cpu --devices 2 --strategy ddp`: each sample once per epoch across the ranks, validation
metrics equal to a single-process evaluation of the checkpoint, one checkpoint writer, resumes under
DDP and after a change of the number of processes that continue at the saved step.

Each process imports torch and Lightning (~6 s on 2 cores): one run, stopped and resumed, serves all.
"""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from fgbg.learn.callbacks import TRACE_ENV
from fgbg.learn.data import EpochSampler, read_entries, split_indices
from fgbg.learn.evaluate import evaluate
from fgbg.learn.model import ModelConfig
from fgbg.learn.resume import spent_seconds
from fgbg.learn.train import TrainConfig, train

from .conftest import demo_folders, make_store

TINY = dict(size=32, fg_size=16, placements=2, shard_size=5)  # 36 samples: 24 train, 12 held out (one bg)
FLAGS = ["--size", "32", "--batch", "4", "--workers", "0", "--width", "8", "--threads", "1", "--quiet"]
DDP = ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
WORLD, BATCH = 2, 4  # 24 train samples: 3 steps of 4 x 2 ranks, or 6 of 4 in one process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fgbg_train(store, run, trace, *flags) -> subprocess.CompletedProcess:
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "GLOO_SOCKET_IFNAME": "lo", TRACE_ENV: str(trace)}
    command = [sys.executable, "-m", "fgbg", "train", str(store), "--out", str(run), *DDP, *FLAGS, *flags]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def traced(trace) -> dict[int, list[dict]]:
    return {r: [json.loads(line) for line in (trace / f"rank{r}.jsonl").read_text().splitlines()] for r in range(WORLD)}


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """A 2-epoch run in three attempts, each stopped by its budget after its first step but the last:
    2 processes (DDP), then 1 (in this process), then 2 again to the end of the schedule."""
    root = tmp_path_factory.mktemp("ddp")
    store = make_store(demo_folders(root, 3, 3), root / "store", **TINY)
    run, trace = root / "run", root / "trace"
    said = fgbg_train(store, run, trace, "--epochs", "2", "--max-minutes", "0.0005").stdout  # 0.03 s: stops after a step
    spent = spent_seconds(torch.load(run / "last.ckpt", map_location="cpu", weights_only=False))
    os.environ[TRACE_ENV] = str(trace)
    try:  # a total budget just above what the first attempt spent: again a step
        config = TrainConfig(epochs=None, max_minutes=(spent + 0.01) / 60, size=32, batch=BATCH, workers=0, threads=1, accelerator="cpu")
        train(store, run, config, ModelConfig(width=8), resume=True, progress=False, log=lambda line: None)
    finally:
        del os.environ[TRACE_ENV]
    said += fgbg_train(store, run, trace, "--max-minutes", "10", "--resume").stdout
    return store, run, traced(trace), said


def test_each_sample_once_per_epoch_across_ranks_in_the_single_process_order(ddp_run):
    store, run, lines, said = ddp_run
    split = split_indices(read_entries(store), "bg", 0.2, 0)
    batches = [line for r in lines for line in lines[r] if "index" in line]
    steps = {r: [b["step"] for b in lines[r] if "index" in b] for r in lines}
    assert steps[1] == [1, 3, 4, 5, 6, 7] and steps[0] == [1, 2, 3, 4, 5, 6, 7]  # in lockstep; step 2 in one process
    for epoch in sorted({b["epoch"] for b in batches}):  # each attempt's budget ended its epoch: 0, 1, then 2 and 3
        sampler = EpochSampler(len(split.train), seed=0)
        sampler.set_epoch(epoch)
        order, at, seen = sampler.order().tolist(), 0, []
        for step in sorted({b["step"] for b in batches if b["epoch"] == epoch}):
            got = [i for b in batches if b["step"] == step for i in b["index"]]
            assert len(got) == BATCH * sum(step in steps[r] for r in steps)  # 4 per rank
            # the step's samples, over the ranks: the next ones of the one seeded order (whatever the rank count)
            assert sorted(got) == sorted(split.train[p] for p in order[at : at + len(got)]), (epoch, step)
            at, seen = at + len(got), seen + got
        assert len(seen) == len(set(seen)) and set(seen) <= set(split.train), epoch  # none twice, none held out
        if epoch == 2:
            assert sorted(seen) == sorted(split.train)  # a whole epoch on 2 ranks: every training sample, once


def test_the_resumes_continue_at_the_saved_step_with_the_samples_still_to_train(ddp_run):
    store, run, lines, said = ddp_run
    assert "at step 2 of 11" in said  # 1 step of 8 samples done, 5 left = 10 of 4 on one process, 9 after its step
    assert "2 processes now (8 samples per step, was 4): 5 steps left, was 9" in said
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] == 7 and summary["devices"]["world_size"] == 2 and summary["devices"]["global_batch"] == 8
    ckpt = torch.load(run / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["lr_schedulers"][0]["total_steps"] == ckpt["lr_schedulers"][0]["last_epoch"] == 7  # annealed to the end


def test_one_checkpoint_writer_and_one_tensorboard_log(ddp_run):
    store, run, lines, said = ddp_run
    writes = {r: [line["saved"] for line in lines[r] if "saved" in line] for r in lines}
    assert writes[1] == [] and {"best.ckpt", "last.ckpt"} <= set(writes[0])
    assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 3  # rank 0's, one per attempt
    assert {p.name for p in run.iterdir()} == {"best.ckpt", "last.ckpt", "run.json", "summary.json", "tb"}


def test_validation_metrics_equal_a_single_process_evaluation_of_the_checkpoint(ddp_run, tmp_path):
    store, run, lines, said = ddp_run
    best = json.loads((run / "summary.json").read_text())["best"]
    single = evaluate(run / "best.ckpt", store, tmp_path / "eval", device="cpu", log=lambda _: None)
    assert single["n_images"] == 12
    for name in ("mask_iou", "mask_dice", "baseline_mask_iou", "depth_rmse", "depth_absrel", "depth_delta1", "depth_ssim"):
        assert best[name] == pytest.approx(single[name], abs=1e-6), name
