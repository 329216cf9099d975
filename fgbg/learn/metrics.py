"""Evaluation metrics, per image (B,) so callers average over images, not pixels.

Masks: IoU and Dice of binary masks (empty vs empty = 1). Depth, on the [0, 1] inverse
depth scale: RMSE, AbsRel and delta < 1.25 (the two ratio metrics over pixels with
gt > 0 only, since a ratio to 0 means nothing), and SSIM (Gaussian window 11, sigma 1.5,
valid region: the same numbers as ``skimage.metrics.structural_similarity`` with
``gaussian_weights=True, use_sample_covariance=False``, and as ``kornia.metrics.ssim``
with ``padding="valid"``, which is 20x slower on this CPU). Depth metrics take (pred, gt)
in that order and are not symmetric.

Every metric runs in fp32 under autocast (bf16/fp16 predictions are cast up, SSIM's convolution
runs with autocast off), so mixed precision changes the network's numbers, never the metric's.
:class:`PerImageMeans` streams the means of per-image values (sums and a count, reduced across
DDP ranks by addition), for validation that keeps nothing per batch.
"""

from __future__ import annotations

import functools
from typing import Sequence

import torch
import torch.nn.functional as F
from torchmetrics import Metric

MASK_THRESHOLD = 0.5  # on probabilities; the same as logits > 0
DELTA = 1.25
SSIM_WINDOW = 11  # Gaussian window of sigma 1.5, as in skimage's gaussian_weights=True
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _check_pair(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.shape != b.shape or a.ndim != 4 or a.shape[1] != 1:
        raise ValueError(f"{what}: expected two (B, 1, H, W) tensors of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def full_precision(x: torch.Tensor) -> torch.Tensor:
    """``x`` as float32 when it is a lower-precision float (bf16/fp16 from autocast); float32/float64 unchanged."""
    return x.float() if x.is_floating_point() and x.element_size() < 4 else x


def binarize(mask_logits: torch.Tensor) -> torch.Tensor:
    """Mask logits (B, 1, H, W) -> bool foreground, sigmoid(logits) > 0.5 (i.e. logits > 0)."""
    return mask_logits > 0


def mask_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of binary masks per image.

    Args:
        pred, target: bool (or {0, 1}) (B, 1, H, W).
    Returns:
        (B,) float in [0, 1]; 1 where both masks are empty.

    >>> t = torch.zeros(2, 1, 4, 4, dtype=torch.bool); p = t.clone(); p[0, 0, 0, :2] = True; t[0, 0, 0, :1] = True
    >>> mask_iou(p, t).tolist()
    [0.5, 1.0]
    """
    _check_pair(pred, target, "mask_iou")
    p, t = pred.bool().flatten(1), target.bool().flatten(1)
    inter = (p & t).sum(1).float()
    union = (p | t).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def mask_dice(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice (F1) of binary masks per image: (B, 1, H, W) bool -> (B,); 1 where both are empty."""
    _check_pair(pred, target, "mask_dice")
    p, t = pred.bool().flatten(1), target.bool().flatten(1)
    inter = (p & t).sum(1).float()
    total = (p.sum(1) + t.sum(1)).float()
    return torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))


def depth_rmse(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Root mean squared error per image, (B, 1, H, W) in [0, 1] -> (B,)."""
    _check_pair(pred, gt, "depth_rmse")
    return (pred - gt).pow(2).flatten(1).mean(1).sqrt()


def depth_absrel(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean |pred - gt| / gt over pixels with gt > 0, per image -> (B,); 0 for an image with no such pixel."""
    _check_pair(pred, gt, "depth_absrel")
    valid = (gt > 0).flatten(1)
    rel = ((pred - gt).abs() / gt.clamp(min=1e-12)).flatten(1)
    n = valid.sum(1)
    return torch.where(n > 0, (rel * valid).sum(1) / n.clamp(min=1), torch.zeros_like(n, dtype=pred.dtype))


def depth_delta1(pred: torch.Tensor, gt: torch.Tensor, delta: float = DELTA) -> torch.Tensor:
    """Fraction of pixels with gt > 0 where max(pred / gt, gt / pred) < delta, per image -> (B,)."""
    _check_pair(pred, gt, "depth_delta1")
    valid = (gt > 0).flatten(1)
    p, g = pred.flatten(1).clamp(min=1e-12), gt.flatten(1).clamp(min=1e-12)
    good = (torch.maximum(p / g, g / p) < delta) & valid
    n = valid.sum(1)
    return torch.where(n > 0, good.sum(1) / n.clamp(min=1), torch.ones_like(n, dtype=pred.dtype))


def gaussian_kernel1d(window: int, sigma: float, dtype=torch.float32) -> torch.Tensor:
    """(window,) Gaussian weights summing to 1."""
    x = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return (k / k.sum()).to(dtype)


@functools.lru_cache(maxsize=32)
def blur_weights(window: int, sigma: float, channels: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The separable Gaussian blur's depthwise conv weights, (channels, 1, window, 1) and (channels, 1, 1, window),
    made once per device and kept (read-only): a kernel copied to the GPU at every step waits for its queued work."""
    with torch.inference_mode(False):  # usable outside inference mode too, whoever asked first
        k = gaussian_kernel1d(window, sigma, dtype).to(device)
        return k.view(1, 1, window, 1).repeat(channels, 1, 1, 1), k.view(1, 1, 1, window).repeat(channels, 1, 1, 1)


def ssim_map(
    x: torch.Tensor, y: torch.Tensor, window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, data_range: float = 1.0
) -> torch.Tensor:
    """Local SSIM of (B, C, H, W) images over the valid region: (B, C, H - window + 1, W - window + 1).

    Gaussian-weighted local means, variances and covariance (population), separable filter,
    constants (0.01 R)^2 and (0.03 R)^2 with R = data_range.
    """
    c = x.shape[1]
    x, y = full_precision(x), full_precision(y)
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (B, 5C, H, W)
    stack = stack.contiguous(memory_format=torch.channels_last)  # 3x faster depthwise conv on CPU
    n = stack.shape[1]
    vertical, horizontal = blur_weights(window, sigma, n, x.dtype, x.device)
    with torch.autocast(x.device.type, enabled=False):  # autocast would run the blur in bf16/fp16
        blurred = F.conv2d(stack, vertical, groups=n)
        blurred = F.conv2d(blurred, horizontal, groups=n)
    mu_x, mu_y, xx, yy, xy = blurred.split(c, dim=1)
    var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))


def depth_ssim(pred: torch.Tensor, gt: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM per image over the valid region (no padding), (B, 1, H, W) -> (B,).

    Matches ``skimage.metrics.structural_similarity(gt, pred, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=data_range)``; H and W must be at least 11.
    """
    _check_pair(pred, gt, "depth_ssim")
    if min(pred.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"depth_ssim: images must be at least {SSIM_WINDOW} pixels on a side, got {tuple(pred.shape[-2:])}")
    return ssim_map(pred, gt, data_range=data_range).flatten(1).mean(1)


def baseline_mask(bg: torch.Tensor, fg_bg: torch.Tensor, threshold: float) -> torch.Tensor:
    """The differencing baseline: sum over channels of |fg_bg - bg| > threshold.

    Args:
        bg, fg_bg: (B, 3, H, W) on the [0, 1] scale (not normalised).
    Returns:
        bool (B, 1, H, W).
    """
    return (fg_bg - bg).abs().sum(1, keepdim=True) > threshold


def choose_baseline_threshold(bg: torch.Tensor, fg_bg: torch.Tensor, mask: torch.Tensor, candidates: torch.Tensor | None = None) -> float:
    """The threshold t in ``candidates`` (default 0.01 .. 1.5) with the best mean IoU of the baseline on these images.

    Every candidate is scored in one pass: each pixel's difference is binned between the
    sorted candidates, so the pixels above t are a suffix sum of the bins, per image, for
    foreground and background pixels apart (IoU = above-and-fg / (fg + above-and-bg)).

    Args:
        bg, fg_bg: (B, 3, H, W) in [0, 1]; mask: (B, 1, H, W) {0, 1}; candidates: (C,) ascending.
    """
    candidates = torch.linspace(0.01, 1.5, 150) if candidates is None else candidates
    n, c = bg.shape[0], len(candidates)
    diff = (fg_bg - bg).abs().sum(1).flatten(1)  # (B, P)
    fg = (mask > 0.5).flatten(1)
    # bin i holds diff in (candidates[i-1], candidates[i]]: diff > candidates[j] exactly for bins i > j
    bins = torch.bucketize(diff, candidates.to(diff.dtype)) + (c + 1) * torch.arange(n).unsqueeze(1)
    per_bin = [torch.bincount(bins[sel], minlength=n * (c + 1)).view(n, c + 1) for sel in (fg, ~fg)]
    above_fg, above_bg = (h.flip(1).cumsum(1).flip(1)[:, 1:] for h in per_bin)  # (B, C): pixels > candidates[j]
    union = fg.sum(1, keepdim=True) + above_bg
    iou = torch.where(union > 0, above_fg / union.clamp(min=1), torch.ones_like(union, dtype=torch.float64))
    return float(candidates[int(iou.mean(0).argmax())])


# ---------------------------------------------------------------- the metrics by name

# Each per-image metric by the name it has everywhere: validation logs, summary.json, metrics.json.
MASK_METRICS = {"mask_iou": mask_iou, "mask_dice": mask_dice}  # of (binarised prediction, gt mask)
DEPTH_METRICS = {"depth_rmse": depth_rmse, "depth_absrel": depth_absrel, "depth_delta1": depth_delta1, "depth_ssim": depth_ssim}
BASELINE_MASK_IOU = "baseline_mask_iou"  # the mask IoU of the differencing baseline, beside the model's


def image_metrics(mask_logits: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor, gt_depth: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every metric of MASK_METRICS and DEPTH_METRICS, per image (B,), by name.

    Args:
        mask_logits, depth: the prediction, (B, 1, H, W); mask: the gt, {0, 1}; gt_depth: [0, 1], (B, 1, H, W).
    """
    hard, gt = binarize(mask_logits), mask > 0.5
    depth, gt_depth = full_precision(depth), full_precision(gt_depth)
    masks = {name: f(hard, gt) for name, f in MASK_METRICS.items()}
    return {**masks, **{name: f(depth, gt_depth) for name, f in DEPTH_METRICS.items()}}


def baseline_mask_iou(bg: torch.Tensor, fg_bg: torch.Tensor, mask: torch.Tensor, threshold: float) -> torch.Tensor:
    """Mask IoU per image (B,) of the differencing baseline at ``threshold``: bg, fg_bg (B, 3, H, W) in [0, 1], mask {0, 1} (B, 1, H, W)."""
    return mask_iou(baseline_mask(bg, fg_bg, threshold), mask > 0.5)


# What an evaluation reports per image, then averaged: the keys of metrics.json less n_images and size.
REPORTED = (*MASK_METRICS, BASELINE_MASK_IOU, *DEPTH_METRICS)


def reported_metrics(
    mask_logits: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor, gt_depth: torch.Tensor, bg: torch.Tensor, fg_bg: torch.Tensor, threshold: float
) -> dict[str, torch.Tensor]:
    """Every metric of REPORTED per image (B,): :func:`image_metrics` and the baseline's IoU at ``threshold``.

    Args:
        mask_logits, depth: the prediction; mask, gt_depth: the gt, (B, 1, H, W); bg, fg_bg: (B, 3, H, W) on [0, 1] (not normalised).
    """
    values = image_metrics(mask_logits, depth, mask, gt_depth)
    values[BASELINE_MASK_IOU] = baseline_mask_iou(bg, fg_bg, mask, threshold)
    return values


class PerImageMeans(Metric):
    """Streaming means of per-image values by name: a float64 sum per name and an image count.

    ``update`` takes a dict of (B,) tensors (one value per image, the same B for every name);
    ``compute`` gives the mean of each over every image seen since ``reset``, plus ``n_images``.
    Under DDP the states are summed over the ranks before ``compute`` divides, so the means are
    those of one process that saw every rank's images (float64 sums: the order of images and the
    number of ranks change them by < 1e-12). Nothing grows with the number of batches.

    >>> m = PerImageMeans(["iou"]); m.update({"iou": torch.tensor([1.0, 0.0])}); m.update({"iou": torch.tensor([0.5])})
    >>> {k: round(v.item(), 4) for k, v in m.compute().items()}
    {'iou': 0.5, 'n_images': 3.0}
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, names: Sequence[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.names = tuple(names)
        for name in self.names:
            self.add_state(self._sum(name), torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_images", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    @staticmethod
    def _sum(name: str) -> str:
        return f"sum_{name}"

    def update(self, per_image: dict[str, torch.Tensor]) -> None:
        n = None
        for name in self.names:
            values = per_image[name].detach()
            if values.ndim != 1 or (n is not None and len(values) != n):
                raise ValueError(f"PerImageMeans: {name!r} must be one value per image, (B,) with B = {n}, got {tuple(values.shape)}")
            n = len(values)
            state = self._sum(name)
            setattr(self, state, getattr(self, state) + values.to(torch.float64).sum())
        self.n_images += n or 0

    def compute(self) -> dict[str, torch.Tensor]:
        count = self.n_images.to(torch.float64)
        return {**{name: getattr(self, self._sum(name)) / count for name in self.names}, "n_images": count}

    def _apply(self, fn, exclude_state=()):
        """The states follow the module's device only: a dtype change (``.to(torch.bfloat16)`` of a whole
        module, as "bf16-true" precision does) would round the sums, so they stay float64 and int64."""
        this = super()._apply(fn, exclude_state=(*exclude_state, *self._defaults))
        for name in self._defaults:  # super() has set self.device to where fn moves tensors
            this._defaults[name] = this._defaults[name].to(this.device)
            setattr(this, name, getattr(this, name).to(this.device))
        return this


def format_metrics(m: dict) -> str:
    """``mask IoU 0.8123 (baseline 0.6012), Dice 0.8890; depth RMSE ...`` of a dict of averaged metrics by name."""
    return (
        f"mask IoU {m['mask_iou']:.4f} (baseline {m[BASELINE_MASK_IOU]:.4f}), Dice {m['mask_dice']:.4f};"
        f" depth RMSE {m['depth_rmse']:.4f}, AbsRel {m['depth_absrel']:.4f}, delta1 {m['depth_delta1']:.4f}, SSIM {m['depth_ssim']:.4f}"
    )
