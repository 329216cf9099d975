"""Callbacks measured on a scripted device: a GPU runs behind the Python that queues its work."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from fgbg.learn import callbacks
from fgbg.learn.callbacks import Throughput

BATCH = 8
HOST_SECONDS, DEVICE_SECONDS, LOAD_SECONDS = 0.01, 0.1, 0.002  # per step: queueing it, running it, the next batch


class ScriptedGPU:
    """A clock and a device that runs each step's work after the host queued it, one step after another."""

    def __init__(self) -> None:
        self.host = self.done = 0.0  # the host's clock; when the device finishes what is queued
        self.syncs = 0

    def step(self) -> None:
        self.host += HOST_SECONDS
        self.done = max(self.done, self.host) + DEVICE_SECONDS

    def synchronize(self, device=None) -> None:
        self.syncs += 1
        self.host = max(self.host, self.done)


def run_steps(throughput: Throughput, gpu: ScriptedGPU, device: str, steps: int, every: int) -> list[float]:
    """``steps`` training steps of one epoch through the callback; the rates it logged."""
    logged = []
    trainer = SimpleNamespace(world_size=1, log_every_n_steps=every, num_training_batches=steps)
    module = SimpleNamespace(device=torch.device(device), log=lambda name, value, **kw: logged.append(value))
    batch = {"mask": torch.zeros(BATCH, 1, 4, 4)}
    throughput.on_train_epoch_start(trainer, module)
    for i in range(steps):
        gpu.host += LOAD_SECONDS
        throughput.on_train_batch_start(trainer, module, batch, i)
        gpu.step()
        throughput.on_train_batch_end(trainer, module, None, batch, i)
    throughput.on_validation_start(trainer, module)
    throughput.on_train_epoch_end(trainer, module)
    return logged


@pytest.fixture
def gpu(monkeypatch) -> ScriptedGPU:
    gpu = ScriptedGPU()
    monkeypatch.setattr(callbacks, "now", lambda: gpu.host)
    monkeypatch.setattr(torch.cuda, "synchronize", gpu.synchronize)
    return gpu


def test_throughput_on_a_gpu_counts_the_work_not_its_queueing_and_logs_every_n_steps(gpu):
    throughput = Throughput()
    logged = run_steps(throughput, gpu, "cuda", steps=40, every=10)
    device_rate = BATCH / DEVICE_SECONDS  # the device is the bottleneck: 80 samples/s
    assert throughput.samples == 40 * BATCH
    # within 2%: after each wait the device idles while the next step is queued; without waiting: 8 / 0.012 = 667/s
    assert throughput.rate == pytest.approx(device_rate, rel=0.02)
    assert len(logged) == 4 and logged[-1] == pytest.approx(device_rate, rel=0.02)  # every 10 steps, not every step
    assert gpu.syncs <= 4 + 3  # the stretches' ends, the first step's start, validation and the epoch end: not every step


def test_throughput_on_the_cpu_includes_loading_between_steps(gpu):
    throughput = Throughput()
    run_steps(throughput, gpu, "cpu", steps=12, every=5)
    assert gpu.syncs == 0  # nothing to wait for on the CPU
    # the first batch's loading is the epoch's start, outside; the 11 others are inside
    seconds = 12 * HOST_SECONDS + 11 * LOAD_SECONDS
    assert throughput.rate == pytest.approx(12 * BATCH / seconds, rel=1e-6)


# ---------------------------------------------------------------- agreeing under DDP (2 processes, gloo)

EVERY, BUDGET = 3, 10.0  # the ranks agree at steps 1, 4, 7, ...; seconds of budget


def collectives() -> dict[str, int]:
    """Count the collectives torch.distributed runs from here on (all-reduces, and broadcasts of pickled objects)."""
    import torch.distributed as dist

    counts = {"all_reduce": 0, "broadcast_object_list": 0}
    for name in counts:
        real = getattr(dist, name)

        def counted(*args, name=name, real=real, **kwargs):
            counts[name] += 1
            return real(*args, **kwargs)

        setattr(dist, name, counted)
    return counts


def fake_trainer(rank: int) -> SimpleNamespace:
    from lightning.pytorch.strategies import DDPStrategy

    saved = []
    trainer = SimpleNamespace(world_size=2, global_rank=rank, is_global_zero=rank == 0, global_step=0, log_every_n_steps=EVERY,
                              num_training_batches=100, should_stop=False, saved=saved, save_checkpoint=lambda path: saved.append(path))  # fmt: skip
    trainer.strategy = DDPStrategy(parallel_devices=[torch.device("cpu")] * 2)  # broadcast: a pickled object, as Lightning's DDP does it
    trainer.strategy.set_world_ranks = lambda: None
    trainer.strategy._root_device = torch.device("cpu")
    return trainer


def rank_main(rank: int, port: int, results) -> None:
    """One rank: the budget clock and Ctrl-C driven step by step on a scripted clock, with the collectives counted."""
    import torch.distributed as dist
    from datetime import timedelta

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2, timeout=timedelta(seconds=60))
    try:
        results.put((rank, *agree_steps(rank)))
    except Exception as e:  # to the test at once, not after its timeout
        results.put((rank, repr(e)))
    finally:
        dist.destroy_process_group()


def agree_steps(rank: int) -> tuple:
    """(budget's stop step, its all-reduces, Ctrl-C's stop step, checkpoints saved, rank 0's number, collectives)."""
    pace = {0: 1.0, 1: 6.0}[rank]  # seconds per step of this rank's clock: rank 1 spends the 10 s budget at step 2, rank 0 at step 10
    clock = {"now": 0.0}
    callbacks.now = lambda: clock["now"]
    counts = collectives()
    budget, trainer = callbacks.TrainClock(BUDGET), fake_trainer(rank)
    budget.on_train_start(trainer, None)
    while not trainer.should_stop:
        trainer.global_step += 1
        clock["now"] += pace
        budget.on_train_batch_end(trainer, None, None, None, trainer.global_step - 1)
    stopped_by_budget, budget_reduces = trainer.global_step, counts["all_reduce"]

    ctrl_c, trainer = callbacks.CtrlC(Path("last.ckpt"), lambda line: None), fake_trainer(rank)
    stopped_by_ctrl_c = None
    for step in range(1, 20):
        trainer.global_step = step
        ctrl_c.requested = ctrl_c.requested or (rank == 0 and step == 5)  # only rank 0 hears it, after step 5
        try:
            ctrl_c.on_train_batch_end(trainer, None, None, None, step - 1)
        except callbacks.StopRequested:
            stopped_by_ctrl_c = step
            break
    number = callbacks.rank_zero_number(trainer, 12345678901 if rank == 0 else 7)
    return stopped_by_budget, budget_reduces, stopped_by_ctrl_c, trainer.saved, number, dict(counts)


def test_ranks_agree_on_the_budget_and_ctrl_c_every_few_steps_by_a_small_all_reduce(monkeypatch):
    import multiprocessing

    from .test_ddp import free_port

    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    context = multiprocessing.get_context("fork")  # this process's modules, nothing imported again
    results, port = context.Queue(), free_port()
    ranks = [context.Process(target=rank_main, args=(rank, port, results)) for rank in (0, 1)]
    for p in ranks:
        p.start()
    got = dict((r[0], r[1:]) for r in (results.get(timeout=120) for _ in ranks))
    for p in ranks:
        p.join(timeout=60)
    assert [p.exitcode for p in ranks] == [0, 0] and all(len(r) == 6 for r in got.values()), got
    for rank, (budget_step, budget_reduces, ctrl_c_step, saved, number, counts) in got.items():
        assert budget_step == 4  # rank 1's clock was spent at step 2; both stop where they next agree
        assert budget_reduces == 2  # steps 1 and 4: one all-reduce every EVERY steps, not one a step
        assert ctrl_c_step == 7 and saved == [Path("last.ckpt")]  # rank 0 heard it after step 5; both save and stop at step 7
        assert number == 12345678901  # rank 0's number, exactly
        assert counts == {"all_reduce": 2 + 3 + 1, "broadcast_object_list": 0}, rank  # no pickled broadcast at any step
