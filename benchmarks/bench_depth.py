"""Depth labelling speed, end to end: `generate --depth estimator` at batch 1 and at batch N, and
`--depth estimator-per-bg` (the network once per background) at batch N.

    python benchmarks/bench_depth.py --device cuda --arch depth-anything-small
    python benchmarks/bench_depth.py --device cpu --arch depth-anything-small --placements 1 --bgs 2 --fgs 2 --shard-size 2
    python benchmarks/bench_depth.py --device cpu --arch tiny-onnx --placements 4 --shard-size 100

Each run labels a store from the demo assets: read the prepared images, compose, run the
network on every composite (batched, on --device; on a GPU one process whose CPU threads
compose and encode around the network), encode and write the shards. The figure is
samples / wall-clock seconds of the whole `generate` call (model loading and the per-bg
pass included), after one small warm-up run in this process (CUDA's start-up).

Architectures (nothing is downloaded: random weights, the real speed):

- ``depth-anything-small``: the Depth-Anything-V2-Small architecture (DINOv2 ViT-S/14
  backbone, hidden 384, 12 layers, 6 heads; DPT neck [48, 96, 192, 384], fusion 64) built
  from its transformers config, saved with its image processor (518 px, keep aspect
  ratio, multiple of 14, ImageNet mean/std) and loaded by fgbg like a downloaded one.
- ``tiny-onnx``: a tiny conv net in ONNX (fgbg.depth.testing): fgbg's machinery alone.

The default is depth-anything-small where transformers is installed (pip install 'fgbg[transformers]'),
else tiny-onnx, and the run says which.

Goal on one H100 (issue 12): >= 400 samples/s with depth-anything-small, >= 3x batch 1.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from fgbg.config import GenerateConfig
from fgbg.demo import demo_assets
from fgbg.make.generate import generate

ARCHS = ("depth-anything-small", "tiny-onnx")


def depth_anything_v2_small(folder: Path, input_size: int = 518) -> Path:
    """Depth-Anything-V2-Small's architecture with random weights, saved as a transformers model folder."""
    import torch
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessorPil,
    )

    backbone = Dinov2Config(
        image_size=518, patch_size=14, hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4,
        layerscale_value=1.0, out_indices=[9, 10, 11, 12], out_features=["stage9", "stage10", "stage11", "stage12"],
        reshape_hidden_states=False, apply_layernorm=True,
    )  # fmt: skip
    config = DepthAnythingConfig(
        backbone_config=backbone, patch_size=14, reassemble_hidden_size=384, reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64, head_in_index=-1, head_hidden_size=32,
        depth_estimation_type="relative",
    )  # fmt: skip
    torch.manual_seed(0)
    DepthAnythingForDepthEstimation(config).eval().save_pretrained(folder)
    DPTImageProcessorPil(
        do_resize=True, size={"height": input_size, "width": input_size}, keep_aspect_ratio=True,
        ensure_multiple_of=14, resample=3, do_rescale=True, do_normalize=True,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], do_pad=False,
    ).save_pretrained(folder)  # fmt: skip
    return folder


def subset(src: Path, dst: Path, n: int, pattern: str) -> Path:
    dst.mkdir(parents=True)
    for path in sorted(src.glob(pattern))[:n]:
        shutil.copy(path, dst / path.name)
    return dst


def timed_generate(bg: Path, fg: Path, out: Path, config: GenerateConfig, workers: int | None) -> tuple[int, float]:
    """(samples, seconds) of one whole `generate` run."""
    t = time.perf_counter()
    summary = generate(bg, fg, out, config, workers=workers, progress=False, warn=lambda m: None)
    return summary.samples, time.perf_counter() - t


def has_transformers() -> bool:
    import importlib.util

    return importlib.util.find_spec("transformers") is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--arch", default=None, choices=ARCHS, help="default: depth-anything-small with transformers installed, else tiny-onnx")
    parser.add_argument("--placements", type=int, default=20, help="placements per (bg, fg, flip) (default 20)")
    parser.add_argument("--bgs", type=int, default=10, help="demo backgrounds to use, at most 10 (default 10)")
    parser.add_argument("--fgs", type=int, default=17, help="demo foregrounds to use, at most 17 (default 17)")
    parser.add_argument("--size", type=int, default=224, help="store side in pixels (default 224)")
    parser.add_argument("--input-size", type=int, default=518, help="depth-anything-small's input side (default 518)")
    parser.add_argument("--batch", type=int, default=16, help="the batch compared with batch 1 (default 16)")
    parser.add_argument("--workers", type=int, default=None, help="CPU: worker processes (default: CPU count); a GPU uses one process")
    parser.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000); on the CPU a small store needs small shards to keep every worker busy")
    args = parser.parse_args()
    if args.arch is None:
        args.arch = "depth-anything-small" if has_transformers() else "tiny-onnx"
        print(f"--arch {args.arch}" + ("" if has_transformers() else " (transformers is not installed: pip install 'fgbg[transformers]' for depth-anything-small)"))
    elif args.arch == "depth-anything-small" and not has_transformers():
        parser.error("--arch depth-anything-small needs transformers: pip install 'fgbg[transformers]' (or --arch tiny-onnx)")
    from fgbg.engine.devices import resolve_device

    device = resolve_device(args.device)
    tmp = Path(tempfile.mkdtemp(prefix="fgbg-bench-depth-"))
    try:
        if args.arch == "tiny-onnx":
            from fgbg.depth.testing import tiny_onnx_depth

            model = str(tiny_onnx_depth(tmp / "tiny_depth.onnx", width=16))
        else:
            model = str(depth_anything_v2_small(tmp / "depth-anything-v2-small", args.input_size))
        bg_src, fg_src = demo_assets()
        bg, fg = subset(bg_src, tmp / "bg", args.bgs, "*.jpg"), subset(fg_src, tmp / "fg", args.fgs, "*.png")
        base = dict(size=args.size, fg_size=args.size // 2, depth="estimator", depth_model=model, depth_device=device.torch,
                    shard_size=args.shard_size)  # fmt: skip
        warm = GenerateConfig(**base, placements=1, depth_batch=args.batch)
        timed_generate(subset(bg, tmp / "bg1", 1, "*.jpg"), subset(fg, tmp / "fg1", 1, "*.png"), tmp / "warm", warm, args.workers)
        rates = {}
        for batch in (1, args.batch):
            config = GenerateConfig(**base, placements=args.placements, depth_batch=batch)
            n, seconds = timed_generate(bg, fg, tmp / f"out{batch}", config, args.workers)
            rates[batch] = n / seconds
            print(f"batch {batch:3d}: {n} samples in {seconds:6.1f} s = {rates[batch]:8.2f} samples/s", flush=True)
        config = GenerateConfig(**{**base, "depth": "estimator-per-bg"}, placements=args.placements, depth_batch=args.batch)
        n, seconds = timed_generate(bg, fg, tmp / "per_bg", config, args.workers)
        per_bg = n / seconds
        print(f"estimator-per-bg, batch {args.batch}: {n} samples in {seconds:6.1f} s = {per_bg:8.2f} samples/s", flush=True)
        side = f"{args.input_size} px" if args.arch != "tiny-onnx" else "256 px (midas-small preset)"
        print(f"{args.arch} on {device.name} ({device.autocast or 'fp32'}), {args.size} px store, network input {side}")
        print(f"batch {args.batch} / batch 1: {rates[args.batch] / rates[1]:.2f}x;"
              f" estimator-per-bg / estimator at batch {args.batch}: {per_bg / rates[args.batch]:.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
