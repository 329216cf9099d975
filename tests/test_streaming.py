"""Streaming validation metrics: exact means in any chunking and across ranks, flat memory, fp32 under autocast."""

from __future__ import annotations

import dataclasses
import gc
import os
import socket
import subprocess
import sys
import warnings

import lightning as L
import numpy as np
import pytest
import torch

from fgbg.engine.devices import resolve_device
from fgbg.learn import metrics
from fgbg.learn.data import denormalize
from fgbg.learn.losses import LossConfig
from fgbg.learn.model import ModelConfig
from fgbg.learn.module import FgbgModule, to_input

SIZE = 16  # the smallest side the depth SSIM (window 11) takes, rounded up for the U-Net
MEAN, STD = [0.4, 0.45, 0.5, 0.42, 0.44, 0.46], [0.2, 0.25, 0.3, 0.22, 0.24, 0.26]


def predictions(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """n images of everything reported_metrics takes, with empty masks and gt = 0 depth among them."""
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(n, 1, SIZE, SIZE, generator=g) > 0.6).float()
    mask[::7] = 0  # empty gt masks: IoU 1 or 0 by the prediction
    depth = torch.rand(n, 1, SIZE, SIZE, generator=g)
    depth[::5, :, :4] = 0  # unknown depth above a horizon
    bg = torch.rand(n, 3, SIZE, SIZE, generator=g)
    return {
        "mask_logits": 3 * torch.randn(n, 1, SIZE, SIZE, generator=g) + 4 * (mask - 0.5),
        "depth": (depth + 0.1 * torch.randn(n, 1, SIZE, SIZE, generator=g)).clamp(0, 1),
        "mask": mask,
        "gt_depth": depth,
        "bg": bg,
        "fg_bg": torch.where(mask > 0, torch.rand(n, 3, SIZE, SIZE, generator=g), bg),
    }


def chunk_values(p: dict[str, torch.Tensor], start: int, stop: int) -> dict[str, torch.Tensor]:
    """reported_metrics of images start..stop, computed on that chunk alone (as one validation batch)."""
    c = {k: v[start:stop] for k, v in p.items()}
    return metrics.reported_metrics(c["mask_logits"], c["depth"], c["mask"], c["gt_depth"], c["bg"], c["fg_bg"], 0.3)


def fed(p: dict[str, torch.Tensor], bounds: list[int]) -> metrics.PerImageMeans:
    """A PerImageMeans updated with the chunks between consecutive ``bounds``."""
    m = metrics.PerImageMeans(metrics.REPORTED)
    for start, stop in zip(bounds, bounds[1:]):
        m.update(chunk_values(p, start, stop))
    return m


def as_floats(computed: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: v.item() for k, v in computed.items()}


N = 37


@pytest.fixture(scope="module")
def per_image_reference() -> dict[str, float]:
    """numpy means over images of the metrics of each image taken alone."""
    p = predictions(N)
    rows = [chunk_values(p, i, i + 1) for i in range(N)]
    return {k: float(np.mean([r[k].item() for r in rows], dtype=np.float64)) for k in metrics.REPORTED}


def test_means_do_not_depend_on_chunking_and_equal_numpy_per_image_means(per_image_reference):
    p = predictions(N)
    whole = as_floats(fed(p, [0, N]).compute())
    uneven = as_floats(fed(p, [0, 1, 6, 19, 21, 36, N]).compute())
    assert whole["n_images"] == uneven["n_images"] == N
    for k in metrics.REPORTED:
        assert whole[k] == pytest.approx(per_image_reference[k], abs=1e-9), k
        assert uneven[k] == pytest.approx(per_image_reference[k], abs=1e-9), k
    assert 0 < per_image_reference["mask_iou"] < 1 and per_image_reference["depth_absrel"] > 0  # not a degenerate case


def test_two_ranks_merged_equal_one_process(per_image_reference):
    p = predictions(N)
    rank0, rank1 = fed(p, [0, 4, 11]), fed(p, [11, 30, N])  # uneven shares, as an unrepeated sampler gives
    rank0.merge_state(rank1)
    merged = as_floats(rank0.compute())
    assert merged["n_images"] == N
    for k in metrics.REPORTED:
        assert merged[k] == pytest.approx(per_image_reference[k], abs=1e-9), k


# One rank of a gloo group, in a fresh interpreter that imports only torch and the metric (fast to start).
RANK = """
import os, sys, torch, torch.distributed as dist
from fgbg.learn.metrics import PerImageMeans, REPORTED
rank, port, folder = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
m = PerImageMeans(REPORTED)
for chunk in torch.load(f"{folder}/chunks.{rank}"):
    m.update(chunk)
torch.save({k: v.item() for k, v in m.compute().items()}, f"{folder}/means.{rank}")
dist.destroy_process_group()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_metric_reduces_itself_over_a_real_process_group(per_image_reference, tmp_path):
    """Two gloo processes (as DDP on CPU), each with its own uneven share: both ranks compute the one-process means."""
    p = predictions(N)
    shares = [[(0, 3), (3, 10)], [(10, 25), (25, N)]]
    for rank, share in enumerate(shares):
        torch.save([chunk_values(p, a, b) for a, b in share], tmp_path / f"chunks.{rank}")
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo"}
    port = str(free_port())
    ranks = [subprocess.Popen([sys.executable, "-c", RANK, str(r), port, str(tmp_path)], env=env) for r in range(2)]
    assert [r.wait(timeout=120) for r in ranks] == [0, 0]
    for rank in range(2):
        got = torch.load(tmp_path / f"means.{rank}")
        assert got["n_images"] == N
        for k in metrics.REPORTED:
            assert got[k] == pytest.approx(per_image_reference[k], abs=1e-9), (rank, k)


def test_sums_stay_float64_when_a_module_is_cast():
    m = metrics.PerImageMeans(["iou"])
    m.update({"iou": torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)})
    m.to(torch.bfloat16)  # as "bf16-true" precision casts the whole LightningModule
    m.update({"iou": torch.tensor([0.7], dtype=torch.float64)})
    assert m.sum_iou.dtype == torch.float64 and m.compute()["iou"].item() == pytest.approx(1.3 / 4, abs=1e-12)


def test_updates_must_be_one_value_per_image():
    m = metrics.PerImageMeans(["a", "b"])
    with pytest.raises(ValueError, match="one value per image"):
        m.update({"a": torch.zeros(3), "b": torch.zeros(2)})


# ---------------------------------------------------------------- the module's validation


def tiny_meta() -> dict:
    return {
        "model": ModelConfig(width=2, stages=2, refine=0).to_dict(),
        "loss": dataclasses.asdict(LossConfig()),
        "stats": {"mean": MEAN, "std": STD},
        "baseline": {"threshold": 0.3},
        "train": {"log_images": 2, "lr": 1e-3, "weight_decay": 0.0},
        "schedule": {"total_steps": 10},
    }


class Batches(torch.utils.data.Dataset):
    """Normalised samples as the training loaders give them, from ``predictions``."""

    def __init__(self, n: int) -> None:
        p = predictions(n, seed=1)
        mean, std = torch.tensor(MEAN).view(6, 1, 1), torch.tensor(STD).view(6, 1, 1)
        self.bg, self.fg_bg = (p["bg"] - mean[:3]) / std[:3], (p["fg_bg"] - mean[3:]) / std[3:]
        self.mask, self.depth = p["mask"], p["gt_depth"]

    def __len__(self) -> int:
        return len(self.mask)

    def __getitem__(self, i: int) -> dict:
        return {"bg": self.bg[i], "fg_bg": self.fg_bg[i], "mask": self.mask[i], "depth": self.depth[i], "index": i}


def validate(module: FgbgModule, n: int, batch: int, precision: str = "32-true", accelerator: str = "cpu") -> dict:
    loader = torch.utils.data.DataLoader(Batches(n), batch_size=batch)
    trainer = L.Trainer(accelerator=accelerator, devices=1, precision=precision, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.validate(module, loader, verbose=False)
    return module.history[-1]


@torch.no_grad()
def evaluate_like(module: FgbgModule, n: int, bf16: bool = False) -> dict[str, float]:
    """What ``fgbg evaluate`` reports: the metrics of every image, concatenated, then averaged (in fp32 after a bf16 network)."""
    d = Batches(n)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        raw = module.eval().net(to_input({"bg": d.bg, "fg_bg": d.fg_bg}))
    pred = type(raw)(raw.mask_logits.float(), raw.depth.float())
    bg, fg_bg = denormalize(d.bg, MEAN[:3], STD[:3]), denormalize(d.fg_bg, MEAN[3:], STD[3:])
    values = metrics.reported_metrics(pred.mask_logits, pred.depth, d.mask, d.depth, bg, fg_bg, 0.3)
    return {k: v.mean().item() for k, v in values.items()}


def test_module_validation_reports_the_evaluate_means_over_uneven_batches():
    torch.manual_seed(0)
    module = FgbgModule(tiny_meta())
    logged = validate(module, 23, batch=4)  # the last batch has 3 images
    expected = evaluate_like(module, 23)
    assert logged["n_images"] == 23
    for k in metrics.REPORTED:
        assert logged[k] == pytest.approx(expected[k], abs=1e-6), k
    assert len(module.history) == 1  # one dict per validation


def live_tensors() -> int:
    gc.collect()
    with warnings.catch_warnings():  # isinstance() touches torch.distributed.reduce_op, which warns
        warnings.simplefilter("ignore", FutureWarning)
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


def test_validation_memory_does_not_grow_with_the_number_of_batches():
    """Nothing per batch survives a validation: as many live tensors after 200 batches as after 20."""
    torch.manual_seed(0)
    module = FgbgModule(tiny_meta())
    validate(module, 20, batch=1)  # warm up Lightning's caches
    after = {}
    for n in (20, 200):
        validate(module, n, batch=1)
        after[n] = live_tensors()
    assert after[200] == after[20]
    assert [h["n_images"] for h in module.history] == [20, 20, 200]


# ---------------------------------------------------------------- mixed precision


def test_losses_and_metrics_under_bf16_autocast_are_the_fp32_numbers():
    """A bf16 autocast forward gives bf16 heads; the losses and metrics of them are computed in fp32."""
    torch.manual_seed(0)
    module = FgbgModule(tiny_meta()).eval()
    d = Batches(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        raw = module.net(to_input({"bg": d.bg, "fg_bg": d.fg_bg}))
        losses = module.loss(raw, d.mask, d.depth)
        values = metrics.image_metrics(raw.mask_logits, raw.depth, d.mask, d.depth)
    assert raw.depth.dtype == torch.bfloat16  # autocast is on: the network ran in bf16
    fp32 = type(raw)(raw.mask_logits.float(), raw.depth.float())
    reference_losses = module.loss(fp32, d.mask, d.depth)
    reference_values = metrics.image_metrics(fp32.mask_logits, fp32.depth, d.mask, d.depth)
    for got, want in zip(losses, reference_losses):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    for k, v in values.items():
        assert v.dtype == torch.float32, k
        torch.testing.assert_close(v, reference_values[k], atol=1e-6, rtol=0)


def test_bf16_mixed_validation_on_cpu_reports_fp32_metrics_of_the_bf16_network():
    torch.manual_seed(0)
    module = FgbgModule(tiny_meta())
    bf16 = validate(module, 8, batch=8, precision="bf16-mixed")
    expected = evaluate_like(module, 8, bf16=True)
    assert bf16["n_images"] == 8
    for k in metrics.REPORTED:
        assert bf16[k] == pytest.approx(expected[k], abs=1e-6), k
    assert abs(bf16["depth_rmse"] - evaluate_like(module, 8)["depth_rmse"]) > 1e-6  # the network did run in bf16


@pytest.mark.cuda
def test_gpu_validation_in_bf16_matches_the_cpu_within_precision():
    """On a GPU: channels_last inputs, bf16-mixed, metrics in fp32; the means are the CPU's within bf16 noise."""
    device = resolve_device("cuda")
    torch.manual_seed(0)
    module = FgbgModule(tiny_meta())
    cpu = validate(module, 64, batch=16)
    gpu = validate(module, 64, batch=16, precision="bf16-mixed" if device.autocast == "bf16" else "16-mixed", accelerator="gpu")
    assert gpu["n_images"] == 64
    for k in metrics.REPORTED:
        assert gpu[k] == pytest.approx(cpu[k], abs=0.05), k
    assert module.val_means.sum_mask_iou.dtype == torch.float64
