"""Callbacks measured on a scripted device: a GPU runs behind the Python that queues its work."""

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
