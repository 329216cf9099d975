"""The network: a compact two-head U-Net, (bg, fg_bg) -> (mask logits, depth).

Encoder -> decoder -> two small heads, wired in one short forward (as in
segmentation_models_pytorch). The encoder and decoder are shared; the heads are a 3x3
conv each: the mask head returns **logits** (no sigmoid: the loss and the metrics apply
it once), the depth head ends in the only sigmoid, so depth is in [0, 1], near = bright.

Inside the net, two coordinate channels (x and y in [-1, 1]) are appended to the 6 input
channels (CoordConv): the layered depth of a store is a function of the image row, which a
plain convolution cannot see. A pixel-unshuffle stem (space-to-depth by ``stem``, lossless)
runs the U-Net at half resolution and the heads pixel-shuffle back: 3x the training speed
of a full-resolution first stage on a CPU at the same width, with sub-pixel outputs.

Where the network runs channels_last on a GPU, the refiner's first convolution (11 input
channels by default, at full resolution) gets its input and weight zero-padded to 16 channels
(:func:`padded_conv`): tensor-core kernels want channel counts in multiples of 8. Zeros add
nothing, the parameters keep their shapes (checkpoints load as before), and the CPU, where
11 channels are cheaper than 16 (forward and backward of a batch of 4 at 224 px, channels_last,
one thread: 27 vs 41 ms; ``benchmarks/bench_channels.py``), runs the plain convolution.
"""

from __future__ import annotations

import dataclasses
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from fgbg.errors import ConfigError, UserError

IN_CHANNELS = 6  # bg (3) + fg_bg (3)
CHANNEL_MULTIPLE = 8  # tensor-core convolutions (NHWC, bf16/fp16) want input channels in multiples of 8


@dataclass(frozen=True)
class ModelConfig:
    width: int = 16  # channels of the first stage; stage i has width * 2**i (capped at width * max_mult)
    stages: int = 4  # encoder stages (stages - 1 poolings by 2); any input size works
    max_mult: int = 8  # cap on the channel multiplier of deep stages
    coords: bool = True  # append (x, y) coordinate channels inside the net (CoordConv)
    stem: int = 2  # pixel-unshuffle factor of the input (1: the U-Net runs at full resolution)
    refine: int = 16  # channels of the full-resolution mask refinement (0: none)

    def __post_init__(self) -> None:
        if self.width < 2:
            raise ConfigError(f"--width must be at least 2, got {self.width}")
        if not 2 <= self.stages <= 6:
            raise ConfigError(f"stages must be in 2..6, got {self.stages}")
        if self.stem not in (1, 2, 4):
            raise ConfigError(f"stem must be 1, 2 or 4, got {self.stem}")
        if self.refine < 0:
            raise ConfigError(f"--refine must be 0 or more channels, got {self.refine}")

    def channels(self) -> list[int]:
        """Channels per encoder stage, e.g. [16, 32, 64, 128]."""
        return [self.width * min(2**i, self.max_mult) for i in range(self.stages)]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        d = {"refine": 0, **d}  # models saved before the refiner existed have none
        return cls(**{k: v for k, v in d.items() if k in names})


class Prediction(NamedTuple):
    mask_logits: torch.Tensor  # (B, 1, H, W), logits: sigmoid(.) > 0.5 is the foreground
    depth: torch.Tensor  # (B, 1, H, W) in [0, 1], inverse depth, near = bright


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 conv -> BatchNorm -> ReLU; keeps H and W."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def coord_channels(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 2, H, W): x and y coordinates in [-1, 1], same dtype and device."""
    b, _, h, w = x.shape
    ys = torch.linspace(-1.0, 1.0, h, dtype=x.dtype, device=x.device).view(1, 1, h, 1).expand(b, 1, h, w)
    xs = torch.linspace(-1.0, 1.0, w, dtype=x.dtype, device=x.device).view(1, 1, 1, w).expand(b, 1, h, w)
    return torch.cat([xs, ys], dim=1)


class Encoder(nn.Module):
    """(B, c_in, H, W) -> features at [H, H/2, H/4, ...] with ``channels`` channels."""

    def __init__(self, c_in: int, channels: list[int]) -> None:
        super().__init__()
        ins = [c_in] + channels[:-1]
        self.blocks = nn.ModuleList(conv_block(a, b) for a, b in zip(ins, channels))
        self.out_channels = list(channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i, block in enumerate(self.blocks):
            if i > 0:
                x = F.max_pool2d(x, 2, ceil_mode=True)
            x = block(x)
            features.append(x)
        return features


class Decoder(nn.Module):
    """Features [hw, hw/2, ...] -> (B, channels[0], H, W): upsample to each skip's size, concat, conv."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        deep = channels[::-1]  # e.g. [128, 64, 32, 16]
        self.blocks = nn.ModuleList(conv_block(a + skip, skip) for a, skip in zip(deep[:-1], deep[1:]))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for block, skip in zip(self.blocks, features[-2::-1]):
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = block(torch.cat([x, skip], dim=1))
        return x


def head(c_in: int, stem: int, activation: nn.Module | None = None) -> nn.Sequential:
    """A light head: 3x3 conv -> ReLU -> 1x1 conv to stem**2 channels -> pixel shuffle to one channel at
    stem x the resolution (-> activation)."""
    layers = [nn.Conv2d(c_in, c_in, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c_in, stem * stem, 1)]
    layers += [nn.PixelShuffle(stem)] if stem > 1 else []
    return nn.Sequential(*layers, *([activation] if activation is not None else []))


class MaskRefiner(nn.Module):
    """Full-resolution residual correction of the mask logits.

    (input (B, 6, H, W), features (B, c, H, W), coarse logits (B, 1, H, W)) -> logits (B, 1, H, W).
    The U-Net behind a stem sees the image at 1/stem resolution; thin parts (legs, stems, leaf
    tips) are one or two pixels wide at the training size, so two cheap 3x3 convolutions on the
    full-resolution pixels, next to the coarse answer, put the edges back where the pixels are.
    """

    def __init__(self, c_features: int, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(IN_CHANNELS + c_features + 1, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, 1, 1),
        )
        # pad the first convolution's input channels to a multiple of CHANNEL_MULTIPLE:
        # None = where the weights are channels_last on a GPU; True/False = always/never (tests, benchmarks)
        self.pad_channels: bool | None = None

    def forward(self, x: torch.Tensor, features: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        parts = [x, features, coarse]  # (B, 6 + c + 1, H, W) together: 11 channels by default
        first = self.body[0]
        if self.pads(first.weight):
            return coarse + self.body[1:](padded_conv(first, parts, CHANNEL_MULTIPLE))
        return coarse + self.body(torch.cat(parts, dim=1))

    def pads(self, weight: torch.Tensor) -> bool:
        """Whether the first convolution runs on zero-padded channels (see :attr:`pad_channels`)."""
        if self.pad_channels is not None:
            return self.pad_channels
        return weight.is_cuda and weight.shape[1] % CHANNEL_MULTIPLE != 0 and weight.is_contiguous(memory_format=torch.channels_last)


def padded_conv(conv: nn.Conv2d, parts: list[torch.Tensor], multiple: int) -> torch.Tensor:
    """``conv`` of ``parts`` stacked on channels, the input and the weight's input channels zero-padded
    to a multiple of ``multiple``: the values of ``conv(torch.cat(parts, 1))`` (zeros add nothing; the
    sums may round differently), with gradients for ``conv``'s own (unpadded) weight.

    parts: (B, C_i, H, W) each, sum C_i = conv.in_channels -> (B, conv.out_channels, H, W). The stacked
    input is channels_last, in the dtype ``torch.cat`` promotes the parts to (autocast casts it for the convolution).
    """
    b, _, h, w = parts[0].shape
    pad = -conv.in_channels % multiple
    zeros = torch.zeros(b, pad, h, w, dtype=parts[0].dtype, device=parts[0].device)
    stacked = torch.cat([*parts, zeros], dim=1).contiguous(memory_format=torch.channels_last)
    weight = F.pad(conv.weight, (0, 0, 0, 0, 0, pad))  # (out, in + pad, kh, kw): zero weights for the zero channels
    return F.conv2d(stacked, weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)


class TwoHeadUNet(nn.Module):
    """(B, 6, H, W) normalised (bg, fg_bg) -> Prediction(mask_logits, depth), each (B, 1, H, W).

    Any H and W work (features are upsampled to each skip's exact size).

    >>> net = TwoHeadUNet(ModelConfig(width=4))
    >>> out = net(torch.zeros(2, 6, 33, 47))
    >>> tuple(out.mask_logits.shape), tuple(out.depth.shape)
    ((2, 1, 33, 47), (2, 1, 33, 47))
    """

    def __init__(self, config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        self.config = config
        channels = config.channels()
        c_in = (IN_CHANNELS + (2 if config.coords else 0)) * config.stem**2
        self.encoder = Encoder(c_in, channels)
        self.decoder = Decoder(channels)
        self.mask_head = head(channels[0], config.stem)  # logits
        self.depth_head = head(channels[0], config.stem, nn.Sigmoid())  # the one sigmoid, depth in [0, 1]
        # pixel shuffle turns the c0 decoder channels at 1/stem into c0 / stem^2 at full resolution, for free
        self.refiner = MaskRefiner(channels[0] // config.stem**2, config.refine) if config.refine else None

    def forward(self, x: torch.Tensor) -> Prediction:
        if x.ndim != 4 or x.shape[1] != IN_CHANNELS:
            raise ValueError(f"expected (B, 6, H, W) = bg and fg_bg stacked on channels, got {tuple(x.shape)}")
        h, w, s = x.shape[-2], x.shape[-1], self.config.stem
        if h % s or w % s:  # pad to a multiple of the stem, crop the outputs back
            x = F.pad(x, (0, -w % s, 0, -h % s), mode="replicate")
        inner = torch.cat([x, coord_channels(x)], dim=1) if self.config.coords else x  # (B, 8, H', W')
        features = self.encoder(F.pixel_unshuffle(inner, s))  # [(B, c0, H'/s, W'/s), (B, c1, H'/2s, W'/2s), ...]
        y = self.decoder(features)  # (B, c0, H'/s, W'/s)
        mask_logits, depth = self.mask_head(y), self.depth_head(y)  # (B, 1, H', W') each
        if self.refiner is not None:
            mask_logits = self.refiner(x, F.pixel_shuffle(y, s), mask_logits)
        return Prediction(mask_logits[..., :h, :w], depth[..., :h, :w])


class NormalizedNet(nn.Module):
    """bg, fg_bg in [0, 1] (B, 3, H, W) each -> Prediction: normalises, stacks, runs ``net``.

    What predict and the ONNX export run: the inputs are plain RGB on the [0, 1] scale.
    """

    def __init__(self, net: TwoHeadUNet, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, IN_CHANNELS, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, IN_CHANNELS, 1, 1))

    def forward(self, bg: torch.Tensor, fg_bg: torch.Tensor) -> Prediction:
        x = (torch.cat([bg, fg_bg], dim=1) - self.mean) / self.std
        return self.net(x)


# ---------------------------------------------------------------- size and cost


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, size: int) -> int:
    """Multiply-accumulates of one forward pass on one (6, size, size) input, convolutions only.

    Counted with forward hooks: each Conv2d costs out_elements * (in_channels / groups) * kh * kw.
    """
    total = 0

    def hook(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += output[0].numel() * (module.in_channels // module.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, IN_CHANNELS, size, size))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total


def describe(model: nn.Module, size: int) -> str:
    """One line: parameters and MACs per sample at ``size``."""
    return f"{type(model).__name__}: {count_parameters(model) / 1e6:.3f} M parameters, {count_macs(model, size) / 1e9:.3f} GMACs per {size}x{size} sample"


# ---------------------------------------------------------------- checkpoints


CHECKPOINT_KEYS = ("hyper_parameters", "state_dict")


def what_file_is(head: bytes, path: Path) -> str:
    """A few words on what a file that should be a checkpoint looks like, from its first bytes."""
    if not head:
        return "an empty file"
    if head.startswith(b"\x89PNG"):
        return "a PNG image"
    if head.startswith(b"\xff\xd8\xff"):
        return "a JPEG image"
    if path.suffix.lower() == ".onnx":
        return "an ONNX model: `fgbg predict` runs those; evaluate and export need the .ckpt"
    if head.startswith(b"PK"):
        return "a truncated or damaged checkpoint, or another zip file"
    return "unrecognised contents"


def read_checkpoint(path: Path) -> dict:
    """The dict of a training checkpoint (``best.ckpt``, ``last.ckpt``), checked to be one.

    Loaded with ``weights_only=True``: tensors and plain containers only, so a file that is not
    a checkpoint cannot run code while it is read.

    Raises:
        UserError: the file is missing, is not a torch checkpoint (an image, an ONNX file, random
            bytes, a truncated file), or is a torch file that ``fgbg train`` did not write.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: a folder, not a checkpoint; give the checkpoint file in it, e.g. {path / 'best.ckpt'}")
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint; train one with `fgbg train STORE --out RUN` (then RUN/best.ckpt)")
    expected = "expected a checkpoint written by `fgbg train` (RUN/best.ckpt or RUN/last.ckpt)"
    with open(path, "rb") as f:
        head = f.read(8)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a truncated one has lost its directory
        raise UserError(f"{path}: not an fgbg checkpoint ({what_file_is(head, path)}); {expected}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile) as e:  # damaged members
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{path}: not a readable checkpoint ({reason[:200]}); {expected}") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in CHECKPOINT_KEYS) or "meta" not in ckpt["hyper_parameters"]:
        raise UserError(f"{path}: a torch file, but not an fgbg training checkpoint (no run metadata); {expected}")
    return ckpt


def load_checkpoint(path: Path) -> tuple[TwoHeadUNet, dict]:
    """A training checkpoint -> (net in eval mode, run metadata: model, train, stats, split, baseline).

    Reads the Lightning checkpoint file directly, so evaluate/predict/export need no Lightning.

    Raises:
        UserError: see :func:`read_checkpoint`.
    """
    ckpt = read_checkpoint(path)
    meta = ckpt["hyper_parameters"]["meta"]
    net = TwoHeadUNet(ModelConfig.from_dict(meta["model"]))
    prefix = "net."
    net.load_state_dict({k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)})
    return net.eval(), meta


def inference_net(path: Path) -> tuple[NormalizedNet, dict]:
    """A checkpoint -> (NormalizedNet taking [0, 1] bg and fg_bg, metadata)."""
    net, meta = load_checkpoint(path)
    return NormalizedNet(net, meta["stats"]["mean"], meta["stats"]["std"]).eval(), meta
