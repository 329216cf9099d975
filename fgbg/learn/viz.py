"""Picture grids of predictions, for TensorBoard and report PNGs (no torchvision)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

COLUMNS = ("bg", "fg_bg", "gt mask", "pred mask", "gt depth", "pred depth")
PAD = 2  # pixels between cells, white
TITLES = ("bg", "fg_bg", "true mask", "predicted mask", "true depth", "predicted depth")  # COLUMNS as a reader names them
READABLE = 96  # report grids show cells at least this wide (whole-pixel upscaling), so titles fit and 32 px samples can be seen
LINE = 12  # pixels per line of text (Pillow's built-in font at 10 px)


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
    Image.fromarray(to_uint8(image)).save(path)


def labelled_grid(rows: list[list[torch.Tensor]], titles: tuple[str, ...] = TITLES, row_labels: list[str] | None = None,
                  pad: int = PAD) -> torch.Tensor:  # fmt: skip
    """:func:`image_grid` for a person: a title above each column, a label left of each row (e.g. its IoU),
    black text on white; cells upscaled (nearest) to at least READABLE px so that both fit.

    rows: as for :func:`image_grid`, cells (1 or 3, h, w). Returns float (3, H, W) on [0, 1].
    """
    h, w = rows[0][0].shape[-2:]
    factor = max(1, -(-READABLE // w))
    big = [[cell.detach().float().repeat_interleave(factor, -2).repeat_interleave(factor, -1) for cell in row] for row in rows]
    grid = image_grid(big, pad)
    font = ImageFont.load_default(size=10)
    cell_w, cell_h = w * factor, h * factor
    wrapped = [wrap(t, cell_w, font) for t in titles]
    top = LINE * max(len(lines) for lines in wrapped) + pad
    left = 0 if row_labels is None else max(int(font.getlength(label)) for label in row_labels) + 2 * pad + 2
    canvas = Image.new("RGB", (left + grid.shape[2], top + grid.shape[1]), "white")
    canvas.paste(Image.fromarray(to_uint8(grid)), (left, top))
    draw = ImageDraw.Draw(canvas)
    for j, lines in enumerate(wrapped):
        for k, line in enumerate(lines):
            draw.text((left + pad + j * (cell_w + pad), pad + k * LINE), line, fill="black", font=font)
    for i, label in enumerate(row_labels or []):
        draw.text((pad, top + pad + i * (cell_h + pad) + cell_h // 2 - LINE // 2), label, fill="black", font=font)
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float() / 255


def wrap(text: str, width: float, font) -> list[str]:
    """``text`` in lines of whole words, each at most ``width`` px in ``font`` where a word allows."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """float (3, H, W) on [0, 1] -> uint8 (H, W, 3)."""
    return np.ascontiguousarray((image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
