"""Perturbations of the bg input, as a second photograph of the scene differs from the first.

A user photographs the empty scene and then the scene with the object: between the two shots the
camera moves by a pixel or two and turns a little, auto-exposure and white balance change, the
sensor's noise differs, the lens focus or the JPEG quality differ, and the object casts a shadow
on the background of the second shot (never part of its mask). Training draws these per sample
(:class:`BgAugConfig`, :func:`draw_bg_aug`, applied batched on the device by
:func:`apply_bg_aug_`); ``fgbg evaluate`` scores a model under fixed ones (:data:`ROBUSTNESS`,
:func:`perturb_bg`).

Every function takes float images (B, 3, H, W) on [0, 1] on any device and returns new tensors or
works in place where its name ends in ``_``. Geometry follows ``F.grid_sample`` with
``align_corners=False``: pixel centres at half-integers, so a shift of k pixels moves each
value exactly k pixels.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from fgbg.errors import ConfigError

BG_AUG_CHOICES = ("real", "none")  # --bg-aug: real (the default) or none (the bg input is the composite's own)


@dataclass(frozen=True)
class BgAugConfig:
    """How much each perturbation of the bg input varies in training, and how often it is applied.

    Amounts are the largest drawn (uniform in [-a, a] unless said); ``p_*`` the share of samples.
    Shift is a fraction of the side (0.04 at 96 px: up to 3.8 px), rotation in degrees.
    """

    p_affine: float = 0.5
    shift: float = 0.04
    rotate: float = 1.5
    scale: float = 0.02  # zoom factor in [1 - scale, 1 + scale]
    p_color: float = 0.5
    exposure: float = 0.25  # gain in [1 / (1 + e), 1 + e], log-uniform
    white_balance: float = 0.06  # per-channel gain in [1 - wb, 1 + wb] on top
    gamma: float = 0.15  # gamma in [1 / (1 + g), 1 + g], log-uniform
    p_noise: float = 0.5
    noise: float = 0.04  # Gaussian sigma in [0, noise] on each input, drawn separately
    p_blur: float = 0.3
    blur: float = 1.0  # unsharp amount in [-blur, blur]: negative blurs, positive sharpens
    p_jpeg: float = 0.3
    jpeg: tuple[int, int] = (30, 95)  # JPEG quality range of the bg re-encoding (in the loader)
    p_shadow: float = 0.3
    shadow: float = 0.3  # darkening of the composite's background under the object's shadow, up to

    def __post_init__(self) -> None:
        for name in ("p_affine", "p_color", "p_noise", "p_blur", "p_jpeg", "p_shadow"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"bg augmentation {name} must be in [0, 1], got {getattr(self, name)}")
        if not 1 <= self.jpeg[0] <= self.jpeg[1] <= 100:
            raise ConfigError(f"bg augmentation jpeg qualities must be 1 <= lo <= hi <= 100, got {self.jpeg}")

    @classmethod
    def from_dict(cls, d: dict) -> "BgAugConfig":
        return cls(**{**d, "jpeg": tuple(d["jpeg"])})


def bg_aug_config(choice: str) -> BgAugConfig | None:
    """``--bg-aug`` -> the config it names: ``real`` the default amounts, ``none`` no perturbation (None)."""
    if choice not in BG_AUG_CHOICES:
        raise ConfigError(f"--bg-aug must be one of {', '.join(BG_AUG_CHOICES)}, got {choice!r}")
    return BgAugConfig() if choice == "real" else None


# ---------------------------------------------------------------- drawing (in the loader, per sample)


def draw_bg_aug(config: BgAugConfig, g: torch.Generator, size: int) -> dict[str, torch.Tensor]:
    """One sample's perturbation parameters, float32 tensors that collate; identity values where a part is not drawn.

    theta (2, 3): the bg's affine (F.affine_grid, output -> input coordinates on [-1, 1]); gain (3,);
    gamma, sharpen, noise_bg, noise_fg, shadow: (); shadow_theta (2, 3); shadow_blur (): 0..1 of the
    widest blur; jpeg: int64 () quality, 0 = none; noise_seed: int64 ().
    """
    u = iter(torch.rand(24, generator=g).tolist())
    chance = lambda p: next(u) < p  # noqa: E731 (every amount is drawn, applied or not: a part's draws never move another's)
    sym = lambda a: a * (2 * next(u) - 1)  # noqa: E731
    affine = (sym(config.shift * size), sym(config.shift * size), sym(config.rotate), 1 + sym(config.scale))
    affine = affine if chance(config.p_affine) else (0.0, 0.0, 0.0, 1.0)
    theta = affine_theta(*affine, size, size)
    exposure, balance = math.exp(sym(math.log1p(config.exposure))), [1 + sym(config.white_balance) for _ in range(3)]
    gamma = math.exp(sym(math.log1p(config.gamma)))
    if not chance(config.p_color):
        exposure, balance, gamma = 1.0, [1.0] * 3, 1.0
    sharpen = sym(config.blur)
    sharpen = sharpen if chance(config.p_blur) else 0.0
    noise_bg, noise_fg = next(u) * config.noise, next(u) * config.noise
    if not chance(config.p_noise):
        noise_bg = noise_fg = 0.0
    lo, hi = config.jpeg
    quality = min(hi, lo + int(next(u) * (hi - lo + 1)))
    quality = quality if chance(config.p_jpeg) else 0
    shadow = next(u) * config.shadow
    shadow = shadow if chance(config.p_shadow) else 0.0
    # the shadow: the object's mask moved aside and up or down, stretched or squashed vertically, sharp to soft
    shadow_theta = affine_theta(sym(0.15 * size), sym(0.1 * size), 0.0, 1.0, size, size, scale_y=0.6 + 0.8 * next(u))
    return {
        "theta": theta.float(),
        "gain": torch.tensor([exposure * b for b in balance], dtype=torch.float32),
        "gamma": torch.tensor(gamma, dtype=torch.float32),
        "sharpen": torch.tensor(sharpen, dtype=torch.float32),
        "noise_bg": torch.tensor(noise_bg, dtype=torch.float32),
        "noise_fg": torch.tensor(noise_fg, dtype=torch.float32),
        "jpeg": torch.tensor(quality),
        "shadow": torch.tensor(shadow, dtype=torch.float32),
        "shadow_theta": shadow_theta.float(),
        "shadow_blur": torch.tensor(next(u), dtype=torch.float32),
        "noise_seed": torch.randint(0, 2**62, (), generator=g),
    }


def affine_theta(dx: float, dy: float, degrees: float, scale: float, h: int, w: int, scale_y: float | None = None) -> torch.Tensor:
    """(2, 3) float64 theta for ``F.affine_grid`` that moves an h x w image's content by (dx, dy) pixels
    (right, down), turns it by ``degrees`` (clockwise on screen) about the centre and zooms it by ``scale``
    (``scale_y`` vertically when given): output pixel p shows input pixel A^-1 (p - c - d) + c."""
    a = math.radians(degrees)
    sx, sy = scale, scale if scale_y is None else scale_y
    # in pixels: out = R S (in - c) + c + d  =>  in = S^-1 R^-1 (out - c - d) + c
    rot_inv = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    m = np.diag([1 / sx, 1 / sy]) @ rot_inv
    # to normalised coordinates: x_n = 2 x / w - 1 (pixel edges at -1, 1), with x measured from the centre
    to_n, from_n = np.diag([2 / w, 2 / h]), np.diag([w / 2, h / 2])
    theta = np.zeros((2, 3))
    theta[:, :2] = to_n @ m @ from_n
    theta[:, 2] = -(to_n @ m @ np.array([dx, dy]))
    return torch.from_numpy(theta)


# ---------------------------------------------------------------- applying (batched, on the device)


def warp(x: torch.Tensor, theta: torch.Tensor, padding: str = "border") -> torch.Tensor:
    """Each image of (B, C, H, W) resampled (bilinear) by its theta (B, 2, 3); outside the frame: ``padding``."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def box_blur(x: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, C, H, W) averaged over a (2r + 1)^2 box; at the frame's edge, over the part of the box inside it.

    A depthwise convolution on channels_last memory (on the CPU 4x faster than ``avg_pool2d``, and
    than the same convolution on contiguous memory), divided by the share of each pixel's box inside
    the frame; returned in ``x``'s memory format (elementwise work on mixed formats is slow)."""
    layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    c, k = x.shape[1], 2 * radius + 1
    box = torch.full((c, 1, k, k), 1.0 / (k * k), dtype=x.dtype, device=x.device)
    inside = F.conv2d(torch.ones_like(x[:1, :1]), box[:1], padding=radius)  # (1, 1, H, W): 1 away from the edges
    blurred = F.conv2d(x.contiguous(memory_format=torch.channels_last), box, padding=radius, groups=c)
    return blurred.div_(inside).contiguous(memory_format=layout)


def unsharp(x: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """x + amount * (x - blur3(x)) per image (amount (B,)), the 3x3 box blur over the frame's edge replicated:
    negative amounts blur (-1: the box itself), positive sharpen. Not clamped.

    One grouped convolution with each image's own 3x3 kernel, (1 + a) at the centre minus a times the box.
    """
    b, c, h, w = x.shape
    centre = torch.zeros(3, 3, dtype=x.dtype, device=x.device)
    centre[1, 1] = 1
    a = amount.to(x.dtype).view(-1, 1, 1)
    kernels = ((1 + a) * centre - a / 9).repeat_interleave(c, 0)[:, None]  # (B * C, 1, 3, 3)
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate").reshape(1, b * c, h + 2, w + 2)
    return F.conv2d(padded, kernels, groups=b * c).reshape(b, c, h, w)


def expose_(x: torch.Tensor, gain: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """(x * gain) ** gamma per image, clamped to [0, 1]: gain (B, 3), gamma (B,)."""
    return x.mul_(gain.view(-1, 3, 1, 1)).clamp_(0, 1).pow_(gamma.view(-1, 1, 1, 1))


SHADOW_STEP = 4  # the shadow is smooth: cast at a quarter of the resolution, then upsampled


def cast_shadow_(fg_bg: torch.Tensor, mask: torch.Tensor, strength: torch.Tensor, theta: torch.Tensor, blur: torch.Tensor) -> torch.Tensor:
    """Darken the composite's background (not the object) under the object's shadow, in place.

    fg_bg (B, 3, H, W), mask (B, 1, H, W) in {0, 1}; strength (B,) the darkening at full shadow;
    theta (B, 2, 3) moves the mask to where its shadow falls; blur (B,) in [0, 1] mixes a shadow with
    soft edges (a few pixels) and a diffuse one (a box of about a twelfth of the side). The mask is
    unchanged: a shadow is background.
    """
    h, w = mask.shape[-2:]
    small = F.interpolate(mask, size=(max(1, h // SHADOW_STEP), max(1, w // SHADOW_STEP)), mode="area")
    cast = warp(small, theta, padding="zeros")
    b = blur.view(-1, 1, 1, 1)
    shade = F.interpolate((1 - b) * cast + b * box_blur(cast, 1), size=(h, w), mode="bilinear", align_corners=False)
    return fg_bg.mul_(1 - strength.view(-1, 1, 1, 1) * shade * (1 - mask))


def add_noise_(x: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """x + N(0, sigma^2) per image (sigma (B,)), clamped."""
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x.add_(noise.mul_(sigma.view(-1, 1, 1, 1))).clamp_(0, 1)


def batch_noise_seed(seeds: torch.Tensor | int) -> int:
    """One seed for a batch's noise from its samples' ``noise_seed`` (B,) (an int already: itself): the same batch, the same noise."""
    if isinstance(seeds, int):
        return seeds
    return int(seeds.to("cpu", torch.int64).remainder(2**61 - 1).sum().item()) % (2**62)


def noise_generator(seeds: torch.Tensor | int, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded by :func:`batch_noise_seed`. The LightningModule turns the seeds into
    the int before the batch goes to a GPU (``on_before_batch_transfer``), so no step waits to read them back."""
    return torch.Generator(device=device).manual_seed(batch_noise_seed(seeds))


def apply_bg_aug_(batch: dict[str, torch.Tensor], params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A training batch as two photographs: the composite shadowed and noisy, the bg moved, re-exposed,
    blurred or sharpened and noisy, each by its sample's ``params`` (collated :func:`draw_bg_aug`).

    batch: float bg, fg_bg (B, 3, S, S) on [0, 1] and mask (B, 1, S, S), on the device; changed in
    place (the bg replaced); mask and depth, which belong to the composite, are not touched.
    """
    g = noise_generator(params["noise_seed"], batch["bg"].device)
    cast_shadow_(batch["fg_bg"], batch["mask"], params["shadow"], params["shadow_theta"], params["shadow_blur"])
    add_noise_(batch["fg_bg"], params["noise_fg"], g)
    bg = unsharp(warp(batch["bg"], params["theta"]), params["sharpen"])
    expose_(bg, params["gain"], params["gamma"])  # clamps
    batch["bg"] = add_noise_(bg, params["noise_bg"], g)
    return batch


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """uint8 (H, W, 3) -> the same image JPEG-encoded at ``quality`` (4:2:0, as cameras) and decoded."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(buffer).convert("RGB"))


def jpeg_chw(x: torch.Tensor, quality: int) -> torch.Tensor:
    """uint8 (3, H, W) tensor -> its JPEG round trip at ``quality`` (a new uint8 tensor)."""
    return torch.from_numpy(jpeg_roundtrip(x.permute(1, 2, 0).numpy(), quality).copy()).permute(2, 0, 1).contiguous()


# ---------------------------------------------------------------- the robustness report's perturbations


@dataclass(frozen=True)
class Perturbation:
    """One row of the robustness report: a fixed change of the bg input."""

    name: str
    shift: int = 0  # pixels, along x or y (direction seeded per image)
    rotate: float = 0.0  # degrees, sign seeded per image
    exposure: float = 1.0  # gain
    noise: float = 0.0  # Gaussian sigma on [0, 1]
    jpeg: int = 0  # quality (0: none)


ROBUSTNESS = (
    Perturbation("aligned"),
    Perturbation("shift 1 px", shift=1),
    Perturbation("shift 2 px", shift=2),
    Perturbation("shift 4 px", shift=4),
    Perturbation("rotate 1 deg", rotate=1.0),
    Perturbation("exposure x0.85", exposure=0.85),
    Perturbation("exposure x1.15", exposure=1.15),
    Perturbation("noise 0.03", noise=0.03),
    Perturbation("jpeg 50", jpeg=50),
)
ROBUSTNESS_CHOICES = ("all", "none")


def image_rng(name: str, index: int, seed: int = 0) -> np.random.Generator:
    """The generator of one perturbation of one image (its store index): the same numbers every run, any batch size."""
    return np.random.default_rng([seed, index, *name.encode()])


def shift_image(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """(C, H, W) moved by whole pixels (dx right, dy down), the vacated edge replicated: exact values."""
    h, w = x.shape[-2:]
    padded = F.pad(x[None], (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)), mode="replicate")[0]
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[:, top : top + h, left : left + w]


def perturb_bg(bg: torch.Tensor, indices: torch.Tensor, p: Perturbation) -> torch.Tensor:
    """A batch of bg inputs (B, 3, H, W) on [0, 1] under ``p``, each image by its own seeded draw (``indices`` (B,)).

    Shift: k px right, left, down or up; rotation: +-degrees about the centre (bilinear, edge
    replicated); exposure: x gain, clamped; noise: Gaussian, clamped; JPEG: PIL at the quality, of
    the image rounded to 8 bits. The aligned perturbation returns ``bg`` itself.
    """
    if p == Perturbation(p.name):
        return bg
    out = []
    for x, index in zip(bg, indices.tolist()):
        rng = image_rng(p.name, index)
        if p.shift:
            dx, dy = [(p.shift, 0), (-p.shift, 0), (0, p.shift), (0, -p.shift)][rng.integers(4)]
            x = shift_image(x, dx, dy)
        if p.rotate:
            theta = affine_theta(0, 0, p.rotate * rng.choice([-1, 1]), 1.0, *x.shape[-2:])
            x = warp(x[None], theta[None].to(x.device))[0]
        if p.exposure != 1.0:
            x = (x * p.exposure).clamp(0, 1)
        if p.noise:
            noise = torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32)).to(x.device)
            x = (x + p.noise * noise).clamp(0, 1)
        if p.jpeg:
            u8 = (x * 255).round().clamp(0, 255).to(torch.uint8).cpu()
            x = jpeg_chw(u8, p.jpeg).to(x.device, x.dtype) / 255
        out.append(x)
    return torch.stack(out)
