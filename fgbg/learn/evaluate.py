"""Evaluate a checkpoint on a store: metrics.json, report.md and PNG grids, beside the baseline.

Metrics are computed per image, then averaged (see :mod:`fgbg.learn.metrics`). By default the
images are the run's held-out validation split on the store the run trained on (the split is
rebuilt from the checkpoint), and every sample on any other store (a test store); ``split="val"``
or ``"all"`` forces one. metrics.json and the report say which split of which store, and how many. The differencing baseline
uses the threshold chosen on the training split when the run started.

On a GPU (``device``, see :mod:`fgbg.engine.devices`) the network runs channels_last under bf16
(or fp16) autocast, fed through pinned memory; its outputs are cast to fp32 before any metric,
so only the network's arithmetic differs from the CPU. ``evaluation.json`` records the device.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from fgbg.engine.devices import Device, as_device, cpu_device
from fgbg.errors import ConfigError
from fgbg.learn import metrics
from fgbg.learn.data import StoreDataset, content_slices, load_stats, make_loader, read_entries, split_indices
from fgbg.learn.model import Prediction, inference_net
from fgbg.learn.perturb import ROBUSTNESS, ROBUSTNESS_CHOICES, Perturbation, perturb_bg
from fgbg.store.layout import atomic_write_json
from fgbg.learn.viz import TITLES, labelled_grid, prediction_rows, save_png
from fgbg.progress import progress as progress_reporter

# The keys of metrics.json, stable for other tools.
METRIC_KEYS = (*metrics.MASK_METRICS, metrics.BASELINE_MASK_IOU, *metrics.DEPTH_METRICS, "n_images", "size", "split", "store")
GRID_ROWS = 16
EVALUATE_BATCH = 64  # images per network call (the default of --batch-size)
GPU_LOADER_WORKERS = 8  # decoding processes feeding a GPU (at most the cores); none on the CPU, as before


def is_training_store(store: Path, meta: dict, entries: list) -> bool:
    """Whether ``store`` is the one the run trained on: its path, or a copy of it (the same sample count
    and the same per-channel stats, to the last digit)."""
    if Path(store).resolve() == Path(meta.get("store", "")):
        return True
    split, stats = meta["split"], load_stats(store)
    same_stats = list(stats.mean) == list(meta["stats"]["mean"]) and list(stats.std) == list(meta["stats"]["std"])
    return len(entries) == split["n_train"] + split["n_val"] and same_stats


def evaluation_split(store: Path, meta: dict, split: str | None, entries: list) -> str:
    """The split to evaluate: ``split`` when given, else "val" on the run's own store and "all" on any other."""
    if split is None:
        return "val" if is_training_store(store, meta, entries) else "all"
    if split not in ("val", "all"):
        raise ConfigError(f"--split must be val or all, got {split!r}")
    return split


def evaluation_indices(store: Path, meta: dict, split: str) -> list[int]:
    """Sample indices to evaluate: the run's val split (rebuilt on ``store``), or all samples."""
    entries = read_entries(store)
    if split == "all":
        return list(range(len(entries)))
    if split != "val":
        raise ConfigError(f"--split must be val or all, got {split!r}")
    t = meta["train"]
    return split_indices(entries, t["val"], t["val_fraction"], t["seed"]).val


def infer(net, bg: torch.Tensor, fg_bg: torch.Tensor, device: Device) -> Prediction:
    """``net`` (a NormalizedNet already on ``device``) on one batch, under the device's autocast; outputs in fp32.

    bg, fg_bg: float32 (B, 3, S, S) on [0, 1], on ``device``. Returns mask logits and depth, float32 (B, 1, S, S).
    """
    with device.autocast_context():
        pred = net(bg, fg_bg)
    return Prediction(pred.mask_logits.float(), pred.depth.float())


@torch.inference_mode()
def predict_dataset(
    net, dataset: StoreDataset, threshold: float, batch: int = EVALUATE_BATCH, progress: bool | None = False,
    device: Device | None = None, workers: int = 0, perturbation: Perturbation | None = None,
) -> dict[str, torch.Tensor]:
    """Per-image metrics (N,), float32 on the CPU, of ``net`` (a NormalizedNet on ``device``) and of the baseline at ``threshold``, over a dataset made with ``normalized=False``.

    The loader's compact batches become float on ``device``, after the copy (:meth:`StoreDataset.prepare`);
    with a ``perturbation``, the bg input of the network and of the baseline is changed by it
    (:func:`~fgbg.learn.perturb.perturb_bg`, seeded by each image's store index).

    ``device``: where ``net`` is (default the CPU); ``workers``: loader processes;
    ``progress`` as in :func:`fgbg.progress.progress` (default silent).
    """
    device = device or cpu_device()
    per_image: dict[str, list[torch.Tensor]] = {}
    with progress_reporter(len(dataset), "evaluate", "sample", enabled=progress) as bar:
        for b in make_loader(dataset, batch, shuffle=False, workers=workers, pin_memory=device.is_cuda):
            on_device = dataset.prepare({k: device.move(b[k]) for k in ("bg", "fg_bg", "mask", "depth")})  # float on the device
            if perturbation is not None:
                on_device["bg"] = perturb_bg(on_device["bg"], b["index"], perturbation)
            add_batch_metrics(per_image, infer(net, on_device["bg"], on_device["fg_bg"], device), {**b, **on_device}, threshold)
            bar.update(len(b["index"]))
    return {k: torch.cat(v).cpu() for k, v in per_image.items()}


ROBUSTNESS_KEYS = ("mask_iou", metrics.BASELINE_MASK_IOU, "depth_delta1")  # each row of metrics.json's "robustness"


def robustness_rows(net, dataset: StoreDataset, threshold: float, plain: dict[str, torch.Tensor], batch: int = EVALUATE_BATCH,
               device: Device | None = None, workers: int = 0) -> list[dict]:  # fmt: skip
    """The model and the baseline on the same images with the bg input perturbed as a second photograph
    would be (:data:`~fgbg.learn.perturb.ROBUSTNESS`): one row per perturbation, {"bg": name, mask_iou,
    baseline_mask_iou, depth_delta1} averaged over images. The aligned row is ``plain``, the per-image
    metrics of the plain evaluation (the same images, the same bg input)."""
    rows = []
    for p in ROBUSTNESS:
        per_image = plain if p == Perturbation(p.name) else predict_dataset(net, dataset, threshold, batch, False, device, workers, p)
        rows.append({"bg": p.name, **{k: per_image[k].double().mean().item() for k in ROBUSTNESS_KEYS}})
    return rows


def format_robustness(rows: list[dict]) -> str:
    """One line: ``robustness (mask IoU model/baseline): aligned 0.95/0.94, shift 1 px 0.93/0.60, ...``."""
    return "robustness (mask IoU model/differencing): " + ", ".join(f"{r['bg']} {r['mask_iou']:.3f}/{r[metrics.BASELINE_MASK_IOU]:.3f}" for r in rows)


def robustness_table(rows: list[dict]) -> str:
    """The markdown table of :func:`robustness`'s rows."""
    lines = ["| bg input | model mask IoU | differencing mask IoU | model depth delta1 |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['bg']} | {r['mask_iou']:.4f} | {r[metrics.BASELINE_MASK_IOU]:.4f} | {r['depth_delta1']:.4f} |" for r in rows]
    return "\n".join(lines)


def add_batch_metrics(per_image: dict[str, list[torch.Tensor]], pred, b: dict, threshold: float) -> None:
    """Append the per-image metrics (B,) of one batch's prediction and of the baseline to ``per_image``
    (over the image only: a padded sample's padding is left out, :func:`content_slices`)."""
    ys, xs = content_slices(b)
    mask, depth = b["mask"][..., ys, xs], b["depth"][..., ys, xs]
    values = {
        "index": b["index"],
        **metrics.image_metrics(pred.mask_logits[..., ys, xs], pred.depth[..., ys, xs], mask, depth),
        metrics.BASELINE_MASK_IOU: metrics.baseline_mask_iou(b["bg"][..., ys, xs], b["fg_bg"][..., ys, xs], mask, threshold),
    }
    for k, v in values.items():
        per_image.setdefault(k, []).append(v)


@torch.inference_mode()
def grid_of(net, dataset: StoreDataset, positions: list[int], device: Device | None = None, ious: list[float] | None = None) -> torch.Tensor:
    """The picture grid (COLUMNS, titled) of the samples at ``positions`` of the dataset (``net`` on ``device``, default the CPU),
    each row labelled with its mask IoU where ``ious`` (one per position) are given."""
    device = device or cpu_device()
    batch = dataset.prepare(torch.utils.data.default_collate([dataset[p] for p in positions]))
    pred = infer(net, device.move(batch["bg"]), device.move(batch["fg_bg"]), device)
    mask, depth = torch.sigmoid(pred.mask_logits).cpu(), pred.depth.cpu()
    rows = prediction_rows(batch["bg"], batch["fg_bg"], batch["mask"], mask, batch["depth"], depth)
    return labelled_grid(rows, row_labels=None if ious is None else [f"IoU {v:.3f}" for v in ious])


def evaluate(
    checkpoint: Path,
    store: Path,
    out: Path,
    split: str | None = None,
    threads: int | None = None,
    log: Callable[[str], None] = print,
    progress: bool | None = None,
    device: str | Device = "auto",
    batch_size: int = EVALUATE_BATCH,
    workers: int | None = None,
    warn: Callable[[str], None] | None = None,
    robustness: str = "all",
    bg_from: Path | None = None,
) -> dict:
    """Write ``out/metrics.json``, ``out/report.md``, ``out/evaluation.json``, ``out/random.png``, ``out/worst.png``; return the metrics.

    ``device``: ``auto`` (the first GPU, else the CPU), ``cpu``, ``cuda`` or ``cuda:N`` (or a
    resolved Device); ``batch_size``: images per network call; ``workers``: loader processes
    (default none on the CPU, up to GPU_LOADER_WORKERS on a GPU); ``warn`` (default stderr)
    hears the device's note (``auto`` fell back to the CPU); ``progress``: None = a bar on a
    terminal, sparse lines in a log; True = the bar; False = silent.

    ``split``: "val" (the run's held-out split), "all" (every sample) or None: "val" on the store the run
    trained on (or a copy of it), "all" on any other.

    ``robustness``: "all" (the default) also scores the model and the baseline with the bg input shifted,
    turned, re-exposed, noisy and re-encoded (:func:`robustness_rows`; metrics.json's ``robustness``, a
    table in report.md, one line logged); "none" skips it. ``bg_from``: a folder of bg images named as
    the store's sources (e.g. ``fgbg rooms --retake``'s OUT/retake): each sample's bg input is its
    bg's image there, prepared as the store prepared its own; the robustness report is then skipped
    (its perturbations are of the store's own bg).

    Raises:
        UserError: ``checkpoint`` is not a training checkpoint, ``split`` is not val or all,
            ``batch_size`` < 1, ``robustness`` is not all or none, ``bg_from`` lacks a bg's image,
            ``device`` is not here (DeviceError).
    """
    started = time.perf_counter()
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if robustness not in ROBUSTNESS_CHOICES:
        raise ConfigError(f"--robustness must be one of {', '.join(ROBUSTNESS_CHOICES)}, got {robustness!r}")
    device = as_device(device)  # before any work: `--device cuda` without a GPU stops here
    torch.set_num_threads(threads or os.cpu_count() or 1)
    store, out = Path(store), Path(out)
    net, meta = inference_net(checkpoint)
    size = meta["train"]["size"]
    split = evaluation_split(store, meta, split, read_entries(store))
    indices = evaluation_indices(store, meta, split)
    stats = load_stats(store)
    dataset = StoreDataset(store, indices, size, stats, normalized=False, bg_folder=bg_from)
    dataset.check_bg_folder()
    if device.note:
        (warn or _to_stderr)(f"note: {device.note}")
    net = device.place(net)
    workers = (min(GPU_LOADER_WORKERS, os.cpu_count() or 1) if device.is_cuda else 0) if workers is None else workers
    per_image = predict_dataset(net, dataset, meta["baseline"]["threshold"], batch_size, progress, device, workers)
    result = {k: per_image[k].double().mean().item() for k in METRIC_KEYS if k in per_image}
    result.update(n_images=len(dataset), size=size, split=split, store=str(store.resolve()))
    if bg_from is not None:
        result["bg_from"] = str(Path(bg_from).resolve())
    elif robustness == "all":
        result["robustness"] = robustness_rows(net, dataset, meta["baseline"]["threshold"], per_image, batch_size, device, workers)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "metrics.json", result)

    n = min(GRID_ROWS, len(dataset))
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:n].tolist()
    worst = per_image["mask_iou"].argsort()[:n].tolist()
    ious = per_image["mask_iou"].tolist()
    save_png(grid_of(net, dataset, order, device, [ious[p] for p in order]), out / "random.png")
    save_png(grid_of(net, dataset, worst, device, [ious[p] for p in worst]), out / "worst.png")
    worst_keys = [(dataset.reader.entries[indices[p]].key, per_image["mask_iou"][p].item()) for p in worst]
    seconds = time.perf_counter() - started
    how = {**device.record(), "batch_size": batch_size, "loader_workers": workers}
    atomic_write_json(out / "evaluation.json", {"checkpoint": str(checkpoint), "store": str(store), "split": split, **how, "seconds": round(seconds, 3)})
    (out / "report.md").write_text(report(result, meta, checkpoint, store, split, worst_keys, how))
    log(format_metrics(result))
    if "robustness" in result:
        log(format_robustness(result["robustness"]))
    log(f"report: {out / 'report.md'} ({seconds:.0f} s on {device.name})")
    return result


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def format_metrics(m: dict) -> str:
    what = "the held-out split" if m.get("split") == "val" else "every sample"
    return f"{m['n_images']} images ({what} of {m.get('store', 'the store')}) at {m['size']} px: {metrics.format_metrics(m)}"


def report(m: dict, meta: dict, checkpoint: Path, store: Path, split: str, worst: list[tuple[str, float]], how: dict | None = None) -> str:
    """report.md: the table, what was evaluated (and where: ``how``, a Device.record() with batch_size), and the two grids."""
    how = how or {**cpu_device().record(), "batch_size": EVALUATE_BATCH}
    held = meta["split"]
    what = f"the run's validation split (held out by {held['by']}: {held['held_out']})" if split == "val" else "every sample of the store"
    rows = [
        ("mask IoU", m["mask_iou"], m["baseline_mask_iou"]),
        ("mask Dice", m["mask_dice"], None),
        ("depth RMSE", m["depth_rmse"], None),
        ("depth AbsRel (gt > 0)", m["depth_absrel"], None),
        ("depth delta < 1.25 (gt > 0)", m["depth_delta1"], None),
        ("depth SSIM", m["depth_ssim"], None),
    ]
    table = "\n".join(f"| {name} | {v:.4f} | {'' if b is None else f'{b:.4f}'} |" for name, v, b in rows)
    bg_input = f"\nThe bg input of every sample: its bg's image in `{m['bg_from']}` (not the store's own).\n" if m.get("bg_from") else ""
    robust = (
        "\n## Robustness: the bg input as a second photograph\n\nThe same images, the bg input changed"
        " (shifts along x or y and rotation signs seeded per image; bilinear, edges replicated; JPEG by PIL);"
        f" the baseline keeps its threshold.\n\n{robustness_table(m['robustness'])}\n"
    ) if m.get("robustness") else ""  # fmt: skip
    worst_list = ", ".join(f"`{k}` ({iou:.3f})" for k, iou in worst[:8])
    return f"""# Evaluation

Checkpoint `{checkpoint}` on store `{store}`: {m['n_images']} images of {what} (split `{split}`), at {m['size']} px.
Metrics per image, then averaged; mask threshold 0.5, empty vs empty = 1; depth on the [0, 1]
inverse-depth scale. Baseline: sum over channels of |fg_bg - bg| > {meta['baseline']['threshold']:.2f}
(threshold chosen on {meta['baseline']['chosen_on']}).
Run on {how['name']} (`{how['device']}`, {how['precision']}, batch {how['batch_size']}); metrics in fp32.
{bg_input}
| metric | model | baseline |
| --- | --- | --- |
{table}
{robust}
## Random examples

Columns: {' / '.join(TITLES)}; each row's mask IoU on its left.

![random](random.png)

## Worst {len(worst)} by mask IoU

{worst_list}{' ...' if len(worst) > 8 else ''}

![worst](worst.png)
"""
