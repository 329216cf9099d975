"""Export a checkpoint to ONNX and check it against torch.

The ONNX graph is :class:`fgbg.learn.model.NormalizedNet`: inputs ``bg`` and ``fg_bg``, float32
(N, 3, S, S) RGB on [0, 1]; outputs ``mask_logits`` and ``depth``, (N, 1, S, S). The batch
axis is dynamic; S (the training size) is in the metadata as ``fgbg.size``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fgbg.errors import UserError
from fgbg.learn.model import inference_net

OPSET = 17
TOLERANCE = 1e-4  # max abs difference allowed between onnxruntime and torch
INPUTS, OUTPUTS = ("bg", "fg_bg"), ("mask_logits", "depth")


class ExportError(UserError, ValueError):
    """The exported graph does not reproduce torch."""


def export_onnx(checkpoint: Path, onnx_path: Path, check: bool = True, log: Callable[[str], None] = print) -> float:
    """Write ``onnx_path`` from a training checkpoint; returns the max abs difference against torch.

    Raises:
        ExportError: the difference exceeds TOLERANCE.
    """
    import onnx

    net, meta = inference_net(checkpoint)
    size = meta["train"]["size"]
    example = (torch.rand(2, 3, size, size), torch.rand(2, 3, size, size))
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    axes = {name: {0: "batch"} for name in INPUTS + OUTPUTS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, example, str(onnx_path), input_names=list(INPUTS), output_names=list(OUTPUTS),
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    model = onnx.load(str(onnx_path))
    for key, value in {"fgbg.size": str(size), "fgbg.learn.model": json.dumps(meta["model"])}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(onnx_path))
    diff = check_onnx(net, onnx_path, size) if check else float("nan")
    log(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB); max abs difference to torch {diff:.2e}")
    return diff


def check_onnx(net: torch.nn.Module, onnx_path: Path, size: int, batch: int = 3) -> float:
    """Max abs difference between onnxruntime and torch on a random batch (of a size other than the export's)."""
    from fgbg.engine.devices import onnx_session

    g = torch.Generator().manual_seed(0)
    bg, fg_bg = torch.rand(batch, 3, size, size, generator=g), torch.rand(batch, 3, size, size, generator=g)
    with torch.inference_mode():
        expected = net(bg, fg_bg)
    session = onnx_session(onnx_path, threads=0)
    got = session.run(list(OUTPUTS), {"bg": bg.numpy(), "fg_bg": fg_bg.numpy()})
    diff = max(float(np.abs(g_ - e.numpy()).max()) for g_, e in zip(got, expected))
    if not diff < TOLERANCE:
        raise ExportError(f"{onnx_path}: onnxruntime differs from torch by {diff:.2e} (allowed {TOLERANCE:g})")
    return diff
