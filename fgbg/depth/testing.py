"""Tiny random-weight depth models with real signatures, for tests and benchmarks.

No pretrained weights can be downloaded here; these stand-ins exercise the real loading
and inference code (ONNX Runtime, transformers) in a fraction of a second.
"""

from __future__ import annotations

from pathlib import Path


def tiny_onnx_depth(path: Path, out_channels: int = 1, width: int = 8, side: int | None = None) -> Path:
    """A small conv net exported to ONNX: (N, 3, H, W) -> (N, out_channels, H/2, W/2), dynamic N, H, W
    (``side``: H = W = side fixed in the file, as many exported models have it)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, width, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, out_channels, 3, padding=1),
        nn.Softplus(),
    ).eval()
    axes = {0: "n"} if side else {0: "n", 2: "h", 3: "w"}
    torch.onnx.export(
        net, torch.randn(1, 3, side or 64, side or 64), str(path), input_names=["image"], output_names=["depth"],
        dynamic_axes={"image": axes, "depth": axes}, dynamo=False,
    )  # fmt: skip
    return Path(path)


def tiny_u2net(path: Path) -> Path:
    """A stand-in with U^2-Net-p's signature: (1, 3, 320, 320) -> 7 saliency maps (1, 1, 320, 320)."""
    import torch
    from torch import nn

    class Saliency(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 1, 5, padding=2)

        def forward(self, x):
            s = torch.sigmoid(self.conv(x) + 4 * (x.mean(1, keepdim=True) < 0.5).float() - 2)
            return (s,) * 7

    torch.manual_seed(0)
    torch.onnx.export(Saliency().eval(), torch.randn(1, 3, 320, 320), str(path), input_names=["input.1"], dynamo=False)
    return Path(path)


def tiny_transformers_depth(folder: Path) -> Path:
    """A random-weight GLPN (metric depth) with small dims, saved with its processor."""
    from transformers import GLPNConfig, GLPNForDepthEstimation, GLPNImageProcessor

    config = GLPNConfig(
        num_encoder_blocks=4, depths=[1, 1, 1, 1], sr_ratios=[8, 4, 2, 1], hidden_sizes=[8, 16, 32, 64],
        patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2], num_attention_heads=[1, 1, 2, 2],
        mlp_ratios=[2, 2, 2, 2], decoder_hidden_size=16, max_depth=10,
    )  # fmt: skip
    GLPNForDepthEstimation(config).save_pretrained(folder)
    GLPNImageProcessor(size_divisor=32).save_pretrained(folder)
    return Path(folder)
