"""Training losses: BCE-with-logits + Dice for the mask; L1 + SSIM + image gradient for depth.

Each loss is a pure function; :class:`MaskDepthLoss` only holds the weights and returns the
weighted total with its parts (for logging). Under bf16/fp16 autocast it computes in fp32: the
heads' outputs are cast up and autocast is off inside, so the loss of given predictions is the
same number with or without mixed precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from fgbg.learn.metrics import full_precision, ssim_map
from fgbg.learn.model import Prediction

SSIM_WINDOW, SSIM_SIGMA = 7, 1.5  # a smaller window than the metric's 11: more local structure in the loss
LOG_FLOOR = 1e-3  # inverse depth floor of the log loss: 1/1000 of the scale, nearer 0 than any 8-bit step


def soft_dice_loss(mask_logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice of sigmoid(logits) and target, per image, averaged over the batch.

    Args:
        mask_logits: (B, 1, H, W) logits; target: (B, 1, H, W) in {0, 1}.
        eps: smoothing added to numerator and denominator (empty vs empty gives 0 loss).
    Returns:
        scalar in [0, 1].
    """
    p = torch.sigmoid(mask_logits).flatten(1)
    t = target.flatten(1)
    dice = (2 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)
    return (1 - dice).mean()


def mask_loss(mask_logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0) -> torch.Tensor:
    """BCE-with-logits (mean over pixels) + dice_weight * soft Dice loss. Inputs (B, 1, H, W); target {0, 1}."""
    return F.binary_cross_entropy_with_logits(mask_logits, target) + dice_weight * soft_dice_loss(mask_logits, target)


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences of (B, C, H, W): (dx (B, C, H, W-1), dy (B, C, H-1, W))."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def gradient_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance between the image gradients of pred and gt, (B, 1, H, W) each -> scalar."""
    pdx, pdy = image_gradients(pred)
    gdx, gdy = image_gradients(gt)
    return (pdx - gdx).abs().mean() + (pdy - gdy).abs().mean()


def ssim_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """(1 - mean SSIM) / 2 over the valid region, (B, 1, H, W) each -> scalar in [0, 1] (as kornia.losses.ssim_loss)."""
    return ((1 - ssim_map(pred, gt, SSIM_WINDOW, SSIM_SIGMA)) / 2).clamp(0, 1).mean()


def log_depth_loss(pred: torch.Tensor, gt: torch.Tensor, floor: float = LOG_FLOOR) -> torch.Tensor:
    """Mean |log pred - log gt| over the pixels with gt > 0, (B, 1, H, W) each -> scalar.

    A relative error, as delta1 and AbsRel count it: a far pixel (small inverse depth) weighs as
    much as a near one, where L1 on inverse depth hardly sees it. ``pred`` is floored at ``floor``.
    """
    valid = gt > 0
    if not valid.any():
        return pred.sum() * 0
    return (pred.clamp(min=floor).log() - gt.clamp(min=floor).log()).abs()[valid].mean()


def depth_loss(
    pred: torch.Tensor, gt: torch.Tensor, l1: float = 1.0, ssim: float = 1.0, grad: float = 1.0, log: float = 0.0
) -> torch.Tensor:
    """l1 * L1 + ssim * (1 - SSIM) / 2 + grad * gradient loss + log * log L1, on depth (B, 1, H, W) in [0, 1]."""
    total = l1 * F.l1_loss(pred, gt)
    if log:
        total = total + log * log_depth_loss(pred, gt)
    if ssim:
        total = total + ssim * ssim_loss(pred, gt)
    if grad:
        total = total + grad * gradient_loss(pred, gt)
    return total


@dataclass(frozen=True)
class LossConfig:
    mask: float = 1.0  # weight of the mask loss (BCE + dice * Dice)
    dice: float = 1.0  # weight of soft Dice inside the mask loss
    depth: float = 1.0  # weight of the depth loss
    depth_l1: float = 1.0  # inside the depth loss
    depth_ssim: float = 0.5
    depth_grad: float = 1.0
    depth_log: float = 0.0  # weight of the log L1 (relative error) inside the depth loss


class Losses(NamedTuple):
    total: torch.Tensor
    mask: torch.Tensor
    depth: torch.Tensor


class MaskDepthLoss(nn.Module):
    """(Prediction, mask (B, 1, H, W) {0, 1}, depth (B, 1, H, W) [0, 1]) -> Losses(total, mask, depth)."""

    def __init__(self, config: LossConfig = LossConfig()) -> None:
        super().__init__()
        self.config = config

    def forward(self, pred: Prediction, mask: torch.Tensor, depth: torch.Tensor) -> Losses:
        c = self.config
        logits, pred_depth, mask, depth = (full_precision(t) for t in (pred.mask_logits, pred.depth, mask, depth))
        with torch.autocast(logits.device.type, enabled=False):
            m = mask_loss(logits, mask, c.dice)
            d = depth_loss(pred_depth, depth, c.depth_l1, c.depth_ssim, c.depth_grad, c.depth_log)
            return Losses(c.mask * m + c.depth * d, m, d)
