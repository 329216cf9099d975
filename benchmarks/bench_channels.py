"""The refiner's first convolution with 11 input channels (as the default model has it) against its
zero-padded 16, at 224 px: what padding costs or saves on this machine's device.

    python benchmarks/bench_channels.py [--device cpu|cuda] [--batch 8] [--size 224] [--reps 7] [--threads N]

Times the fastest of ``--reps`` calls, per batch (forward and backward, the way training runs it; on a GPU under bf16 autocast,
synchronised): the convolution alone on 11 and on 16 channels, channels_last; then the whole
network (``ModelConfig()``, channels_last) with the refiner's padding off and on
(``MaskRefiner.pad_channels``). fgbg pads where the network runs channels_last on a GPU only.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F

from fgbg.learn.model import ModelConfig, TwoHeadUNet


def timed(step, device: torch.device, reps: int) -> float:
    """Seconds of the fastest of ``reps`` calls of ``step()`` (after two warm-up calls), each synchronised
    with the device: the least disturbed by other work on a shared machine."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(2):
        step()
    best = float("inf")
    for _ in range(reps):
        sync()
        start = time.perf_counter()
        step()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def conv_step(c_in: int, batch: int, size: int, device: torch.device, mixed):
    cl = torch.channels_last
    x = torch.randn(batch, c_in, size, size, device=device).contiguous(memory_format=cl).requires_grad_()
    w = torch.randn(16, c_in, 3, 3, device=device).contiguous(memory_format=cl).requires_grad_()

    def step():
        with mixed():
            y = F.conv2d(x, w, padding=1)
        y.float().sum().backward()

    return step


def net_step(pad: bool, batch: int, size: int, device: torch.device, mixed):
    torch.manual_seed(0)
    net = TwoHeadUNet(ModelConfig()).to(device, memory_format=torch.channels_last)
    net.refiner.pad_channels = pad
    x = torch.randn(batch, 6, size, size, device=device).contiguous(memory_format=torch.channels_last)

    def step():
        with mixed():
            out = net(x)
        (out.mask_logits.float().mean() + out.depth.float().mean()).backward()

    return step


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--threads", type=int, default=None, help="torch threads on the CPU (default: torch's)")
    args = p.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        mixed = lambda: torch.autocast("cuda", dtype=torch.bfloat16)  # noqa: E731
        where = f"{torch.cuda.get_device_name(device)}, bf16 autocast"
    else:
        mixed = contextlib.nullcontext
        where = f"CPU, {torch.get_num_threads()} threads, fp32"
    print(f"{where}; batch {args.batch} at {args.size} px, forward + backward, channels_last; ms per batch")
    conv = {c: timed(conv_step(c, args.batch, args.size, device, mixed), device, args.reps) for c in (11, 16)}
    print(f"refiner's first conv, 3x3 -> 16: 11 channels {1e3 * conv[11]:.1f}, 16 channels {1e3 * conv[16]:.1f} ({conv[16] / conv[11]:.2f}x)")
    net = {pad: timed(net_step(pad, args.batch, args.size, device, mixed), device, args.reps) for pad in (False, True)}
    print(f"whole network: refiner unpadded {1e3 * net[False]:.1f}, padded {1e3 * net[True]:.1f} ({net[True] / net[False]:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
