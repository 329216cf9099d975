"""Picture grids of predictions, for TensorBoard and report PNGs (no torchvision)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

COLUMNS = ("bg", "fg_bg", "gt mask", "pred mask", "gt depth", "pred depth")
PAD = 2  # pixels between cells, white


def image_grid(rows: list[list[torch.Tensor]], pad: int = PAD) -> torch.Tensor:
    """Cells (1 or 3, H, W) on [0, 1], all the same H and W -> one float (3, H', W') image.

    >>> image_grid([[torch.zeros(3, 4, 4), torch.ones(1, 4, 4)]]).shape
    torch.Size([3, 8, 14])
    """
    h, w = rows[0][0].shape[-2:]
    n_cols = max(len(r) for r in rows)
    out = torch.ones(3, pad + len(rows) * (h + pad), pad + n_cols * (w + pad))
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[:, y : y + h, x : x + w] = cell.detach().float().cpu().clamp(0, 1).expand(3, h, w)
    return out


def prediction_rows(bg, fg_bg, mask, pred_mask, depth, pred_depth) -> list[list[torch.Tensor]]:
    """Batches (B, C, H, W) on [0, 1] (bg, fg_bg un-normalised; pred_mask as probabilities) -> one row per image, in COLUMNS order.

    The cells are detached float32 copies on the CPU: keeping the rows keeps no batch (nor GPU memory) alive.
    """
    columns = [b.detach().to("cpu", torch.float32, copy=True) for b in (bg, fg_bg, mask, pred_mask, depth, pred_depth)]
    return [[c[i] for c in columns] for i in range(bg.shape[0])]


def save_png(image: torch.Tensor, path: Path) -> None:
    """float (3, H, W) on [0, 1] -> an 8-bit RGB PNG."""
    array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(np.ascontiguousarray(array)).save(path)
