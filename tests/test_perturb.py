"""The bg input as a second photograph: the robustness report's perturbations do what their names say
(checked against numpy, OpenCV and PIL), and training's drawn perturbations reproduce, leave the
mask and depth alone and never shadow the object."""

import io

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fgbg.learn.perturb import (
    ROBUSTNESS, BgAugConfig, Perturbation, affine_theta, apply_bg_aug_, bg_aug_config, box_blur, draw_bg_aug, image_rng, perturb_bg,
    shift_image, unsharp, warp,
)  # fmt: skip
from fgbg.errors import ConfigError


def photo(seed: int = 0, size: int = 40) -> torch.Tensor:
    """A smooth random RGB image (3, size, size) on [0, 1]: texture at several scales, as a photo has."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, size // 8, size // 8, generator=g)
    fine = torch.rand(1, 3, size, size, generator=g)
    return (0.7 * F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False) + 0.3 * fine)[0]


def by_name(name: str) -> Perturbation:
    return next(p for p in ROBUSTNESS if p.name == name)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_a_shifted_bg_is_the_original_rolled_by_k_pixels_in_the_interior(k):
    bgs = torch.stack([photo(i) for i in range(8)])
    shifted = perturb_bg(bgs, torch.arange(8), by_name(f"shift {k} px"))
    directions = set()
    for i in range(8):
        original, moved = bgs[i].numpy(), shifted[i].numpy()
        matches = [(dx, dy) for dx, dy in [(k, 0), (-k, 0), (0, k), (0, -k)]
                   if np.array_equal(np.roll(original, (dy, dx), axis=(1, 2))[:, k:-k, k:-k], moved[:, k:-k, k:-k])]  # fmt: skip
        assert len(matches) == 1
        directions.add(matches[0])
    assert len(directions) > 1  # the direction is drawn per image


def test_shift_image_replicates_the_vacated_edge():
    x = photo(1)
    moved = shift_image(x, 3, -2)
    assert torch.equal(moved[:, :-2, 3:], x[:, 2:, :-3])
    assert torch.equal(moved[:, :, :3], moved[:, :, 3:4].expand(-1, -1, 3)) and torch.equal(moved[:, -2:, :], moved[:, -3:-2, :].expand(-1, 2, -1))


def test_a_rotated_bg_is_opencvs_rotation_by_one_degree_about_the_centre_in_the_interior():
    bgs = torch.stack([photo(i, 64) for i in range(4)])
    rotated = perturb_bg(bgs, torch.arange(4), by_name("rotate 1 deg"))
    for i in range(4):
        sign = image_rng("rotate 1 deg", i).choice([-1, 1])
        img = bgs[i].permute(1, 2, 0).numpy()
        # OpenCV's angle is counter-clockwise on screen; pixel centres at integers, so the centre is (w - 1) / 2
        m = cv2.getRotationMatrix2D((31.5, 31.5), -float(sign), 1.0)
        ref = cv2.warpAffine(img, m, (64, 64), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        ours = rotated[i].permute(1, 2, 0).numpy()
        assert np.abs(ours - ref)[4:-4, 4:-4].max() < 2e-3  # bilinear both; OpenCV rounds its weights to 1/32
        assert np.abs(ours - img)[4:-4, 4:-4].mean() > 0.01  # and it did move


def test_an_integer_shift_by_the_affine_warp_is_the_exact_shift():
    x = photo(2)[None]
    theta = affine_theta(2, -1, 0.0, 1.0, 40, 40)[None]
    assert torch.allclose(warp(x, theta)[0], shift_image(x[0], 2, -1), atol=1e-6)


def test_exposure_noise_and_jpeg_rows_change_the_bg_as_named():
    bgs = torch.stack([photo(i) for i in range(3)])
    idx = torch.arange(3)
    assert torch.equal(perturb_bg(bgs, idx, by_name("exposure x0.85")), bgs * 0.85)
    bright = perturb_bg(bgs, idx, by_name("exposure x1.15"))
    assert torch.equal(bright, (bgs * 1.15).clamp(0, 1))
    noise = perturb_bg(bgs, idx, by_name("noise 0.03")) - bgs
    assert 0.025 < noise.std().item() < 0.031  # clamping trims a little
    jpeg = perturb_bg(bgs, idx, by_name("jpeg 50"))
    for i in range(3):
        u8 = (bgs[i] * 255).round().byte().permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(u8).save(buffer, format="JPEG", quality=50)
        ref = np.asarray(Image.open(buffer).convert("RGB"))
        assert np.array_equal((jpeg[i] * 255).round().byte().permute(1, 2, 0).numpy(), ref)
    assert perturb_bg(bgs, idx, by_name("aligned")) is bgs


def test_the_perturbations_are_seeded_per_image_not_per_batch():
    bgs = torch.stack([photo(i) for i in range(6)])
    for p in ROBUSTNESS:
        whole = perturb_bg(bgs, torch.arange(10, 16), p)
        halves = torch.cat([perturb_bg(bgs[:2], torch.arange(10, 12), p), perturb_bg(bgs[2:], torch.arange(12, 16), p)])
        assert torch.equal(whole, halves), p.name


def test_box_blur_and_unsharp_match_average_pooling():
    x = torch.stack([photo(i, 24) for i in range(3)])
    assert torch.allclose(box_blur(x, 2), F.avg_pool2d(x, 5, 1, 2, count_include_pad=False), atol=1e-6)
    amount = torch.tensor([-1.0, 0.0, 0.7])
    ref = x + amount.view(-1, 1, 1, 1) * (x - F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1))
    assert torch.allclose(unsharp(x, amount), ref, atol=1e-6)


def test_drawn_bg_perturbations_reproduce_and_vary():
    config = BgAugConfig()
    a = draw_bg_aug(config, torch.Generator().manual_seed(5), 96)
    b = draw_bg_aug(config, torch.Generator().manual_seed(5), 96)
    assert all(torch.equal(a[k], b[k]) for k in a)
    draws = [draw_bg_aug(config, torch.Generator().manual_seed(s), 96) for s in range(200)]
    shifts = torch.stack([d["theta"][:, 2] for d in draws]).abs() * 48  # normalised -> pixels at 96 px
    assert 0 < shifts.max() <= config.shift * 96 * 1.1 and (shifts.sum(1) == 0).float().mean() > 0.1  # some left aligned
    qualities = torch.stack([d["jpeg"] for d in draws])
    assert ((qualities == 0) | ((qualities >= 30) & (qualities <= 95))).all() and 0.15 < (qualities > 0).float().mean() < 0.45


def test_a_training_batch_keeps_its_mask_and_depth_and_never_shadows_the_object():
    g = torch.Generator().manual_seed(0)
    n, s = 8, 32
    batch = {"bg": torch.rand(n, 3, s, s, generator=g), "depth": torch.rand(n, 1, s, s, generator=g)}
    batch["mask"] = torch.zeros(n, 1, s, s)
    batch["mask"][:, :, 8:20, 10:22] = 1
    batch["fg_bg"] = batch["bg"].clone()
    config = BgAugConfig(p_noise=0.0, p_shadow=1.0, shadow=0.3)
    params = torch.utils.data.default_collate([draw_bg_aug(config, torch.Generator().manual_seed(i), s) for i in range(n)])
    before = {k: v.clone() for k, v in batch.items()}
    apply_bg_aug_(batch, params)
    assert torch.equal(batch["mask"], before["mask"]) and torch.equal(batch["depth"], before["depth"])
    inside = before["mask"].bool().expand(-1, 3, -1, -1)
    assert torch.equal(batch["fg_bg"][inside], before["fg_bg"][inside])  # the object is never darkened
    darker = (before["fg_bg"] - batch["fg_bg"]).clamp(min=0)
    assert (darker[~inside] > 0.01).any() and darker.max() <= 0.3 + 1e-6  # its shadow falls on the background
    assert not torch.equal(batch["bg"], before["bg"])
    again = {k: v.clone() for k, v in before.items()}
    apply_bg_aug_(again, params)
    assert all(torch.equal(again[k], batch[k]) for k in batch)


def test_bg_aug_choices():
    assert bg_aug_config("real") == BgAugConfig() and bg_aug_config("none") is None
    with pytest.raises(ConfigError, match="--bg-aug"):
        bg_aug_config("some")


def test_a_batch_draws_the_same_noise_from_its_seeds_or_from_their_int():
    from fgbg.learn.perturb import batch_noise_seed

    params = torch.utils.data.default_collate([draw_bg_aug(BgAugConfig(p_noise=1.0), torch.Generator().manual_seed(i), 16) for i in range(4)])
    batch = {"bg": torch.rand(4, 3, 16, 16), "fg_bg": torch.rand(4, 3, 16, 16), "mask": torch.zeros(4, 1, 16, 16)}
    a, b = ({k: v.clone() for k, v in batch.items()} for _ in range(2))
    apply_bg_aug_(a, params)
    apply_bg_aug_(b, {**params, "noise_seed": batch_noise_seed(params["noise_seed"])})  # as the module hands it to a GPU
    assert all(torch.equal(a[k], b[k]) for k in a)
