"""Evaluate a checkpoint on a store: metrics.json, report.md and PNG grids, beside the baseline.

Metrics are computed per image, then averaged (see :mod:`fgbg.learn.metrics`). By default the
images are the run's held-out validation split (the split is rebuilt from the checkpoint);
``split="all"`` evaluates every sample (a separate test store). The differencing baseline
uses the threshold chosen on the training split when the run started.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import torch

from fgbg.errors import ConfigError
from fgbg.learn import metrics
from fgbg.learn.data import StoreDataset, load_stats, make_loader, read_entries, split_indices
from fgbg.learn.model import inference_net
from fgbg.store.layout import atomic_write_json
from fgbg.learn.viz import COLUMNS, image_grid, prediction_rows, save_png
from fgbg.progress import progress as progress_reporter

# The keys of metrics.json, stable for other tools.
METRIC_KEYS = (*metrics.MASK_METRICS, metrics.BASELINE_MASK_IOU, *metrics.DEPTH_METRICS, "n_images", "size")
GRID_ROWS = 16


def evaluation_indices(store: Path, meta: dict, split: str) -> list[int]:
    """Sample indices to evaluate: the run's val split (same store), or all samples."""
    entries = read_entries(store)
    if split == "all":
        return list(range(len(entries)))
    if split != "val":
        raise ConfigError(f"--split must be val or all, got {split!r}")
    t = meta["train"]
    return split_indices(entries, t["val"], t["val_fraction"], t["seed"]).val


@torch.inference_mode()
def predict_dataset(net, dataset: StoreDataset, threshold: float, batch: int = 64, progress: bool | None = False) -> dict[str, torch.Tensor]:
    """Per-image metrics (N,) of ``net`` (a NormalizedNet) and of the baseline at ``threshold``, over a dataset of [0, 1] samples.

    ``progress`` as in :func:`fgbg.progress.progress` (default silent).
    """
    per_image: dict[str, list[torch.Tensor]] = {}
    with progress_reporter(len(dataset), "evaluate", "sample", enabled=progress) as bar:
        for b in make_loader(dataset, batch, shuffle=False):
            add_batch_metrics(per_image, net(b["bg"], b["fg_bg"]), b, threshold)
            bar.update(len(b["index"]))
    return {k: torch.cat(v) for k, v in per_image.items()}


def add_batch_metrics(per_image: dict[str, list[torch.Tensor]], pred, b: dict, threshold: float) -> None:
    """Append the per-image metrics (B,) of one batch's prediction and of the baseline to ``per_image``."""
    values = {
        "index": b["index"],
        **metrics.image_metrics(pred.mask_logits, pred.depth, b["mask"], b["depth"]),
        metrics.BASELINE_MASK_IOU: metrics.baseline_mask_iou(b["bg"], b["fg_bg"], b["mask"], threshold),
    }
    for k, v in values.items():
        per_image.setdefault(k, []).append(v)


@torch.inference_mode()
def grid_of(net, dataset: StoreDataset, positions: list[int]) -> torch.Tensor:
    """The picture grid (COLUMNS) of the samples at ``positions`` of the dataset."""
    batch = torch.utils.data.default_collate([dataset[p] for p in positions])
    pred = net(batch["bg"], batch["fg_bg"])
    rows = prediction_rows(batch["bg"], batch["fg_bg"], batch["mask"], torch.sigmoid(pred.mask_logits), batch["depth"], pred.depth)
    return image_grid(rows)


def evaluate(
    checkpoint: Path,
    store: Path,
    out: Path,
    split: str = "val",
    threads: int | None = None,
    log: Callable[[str], None] = print,
    progress: bool | None = None,
) -> dict:
    """Write ``out/metrics.json``, ``out/report.md``, ``out/random.png``, ``out/worst.png``; return the metrics.

    ``progress``: None = a bar on a terminal, sparse lines in a log; True = the bar; False = silent.

    Raises:
        UserError: ``checkpoint`` is not a training checkpoint, ``split`` is not val or all.
    """
    started = time.perf_counter()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    store, out = Path(store), Path(out)
    net, meta = inference_net(checkpoint)
    size = meta["train"]["size"]
    indices = evaluation_indices(store, meta, split)
    stats = load_stats(store)
    dataset = StoreDataset(store, indices, size, stats, normalized=False)
    per_image = predict_dataset(net, dataset, meta["baseline"]["threshold"], progress=progress)
    result = {k: per_image[k].mean().item() for k in METRIC_KEYS if k in per_image}
    result.update(n_images=len(dataset), size=size)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "metrics.json", {k: result[k] for k in METRIC_KEYS})

    n = min(GRID_ROWS, len(dataset))
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:n].tolist()
    worst = per_image["mask_iou"].argsort()[:n].tolist()
    save_png(grid_of(net, dataset, order), out / "random.png")
    save_png(grid_of(net, dataset, worst), out / "worst.png")
    worst_keys = [(dataset.reader.entries[indices[p]].key, per_image["mask_iou"][p].item()) for p in worst]
    (out / "report.md").write_text(report(result, meta, checkpoint, store, split, worst_keys))
    log(format_metrics(result))
    log(f"report: {out / 'report.md'} ({time.perf_counter() - started:.0f} s)")
    return result


def format_metrics(m: dict) -> str:
    return f"{m['n_images']} images at {m['size']} px: {metrics.format_metrics(m)}"


def report(m: dict, meta: dict, checkpoint: Path, store: Path, split: str, worst: list[tuple[str, float]]) -> str:
    """report.md: the table, what was evaluated, and the two grids."""
    held = meta["split"]
    what = f"the run's validation split (held out by {held['by']}: {held['held_out']})" if split == "val" else "every sample"
    rows = [
        ("mask IoU", m["mask_iou"], m["baseline_mask_iou"]),
        ("mask Dice", m["mask_dice"], None),
        ("depth RMSE", m["depth_rmse"], None),
        ("depth AbsRel (gt > 0)", m["depth_absrel"], None),
        ("depth delta < 1.25 (gt > 0)", m["depth_delta1"], None),
        ("depth SSIM", m["depth_ssim"], None),
    ]
    table = "\n".join(f"| {name} | {v:.4f} | {'' if b is None else f'{b:.4f}'} |" for name, v, b in rows)
    worst_list = ", ".join(f"`{k}` ({iou:.3f})" for k, iou in worst[:8])
    return f"""# Evaluation

Checkpoint `{checkpoint}` on store `{store}`: {m['n_images']} images of {what}, at {m['size']} px.
Metrics per image, then averaged; mask threshold 0.5, empty vs empty = 1; depth on the [0, 1]
inverse-depth scale. Baseline: sum over channels of |fg_bg - bg| > {meta['baseline']['threshold']:.2f}
(threshold chosen on {meta['baseline']['chosen_on']}).

| metric | model | baseline |
| --- | --- | --- |
{table}

## Random examples

Columns: {' / '.join(COLUMNS)}.

![random](random.png)

## Worst {len(worst)} by mask IoU

{worst_list}{' ...' if len(worst) > 8 else ''}

![worst](worst.png)
"""
