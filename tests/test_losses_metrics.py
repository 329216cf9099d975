"""Metrics and losses against outside references (skimage, sklearn, numpy)."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity
from sklearn.metrics import f1_score, jaccard_score

from fgbg.learn import metrics
from fgbg.learn.losses import (
    LossConfig,
    MaskDepthLoss,
    depth_loss,
    gradient_loss,
    log_depth_loss,
    mask_loss,
    soft_dice_loss,
    ssim_loss,
)
from fgbg.learn.model import Prediction


def smooth_pair(seed: int, size: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = gaussian_filter(rng.random((size, size)), 2)
    b = np.clip(a + 0.1 * gaussian_filter(rng.standard_normal((size, size)), 1), 0, None)
    return (a / a.max()).astype(np.float32), (b / b.max()).astype(np.float32)


@pytest.mark.parametrize("data_range", [1.0, 0.5])
def test_ssim_matches_skimage(data_range):
    pairs = [smooth_pair(s) for s in range(3)]
    gt = torch.tensor(np.stack([g for g, _ in pairs]))[:, None] * data_range
    pred = torch.tensor(np.stack([p for _, p in pairs]))[:, None] * data_range
    got = metrics.depth_ssim(pred, gt, data_range=data_range)
    expected = [
        structural_similarity(g.numpy()[0], p.numpy()[0], gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=data_range)
        for g, p in zip(gt, pred)
    ]
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-4)
    assert metrics.depth_ssim(gt, gt).min() > 0.9999


def test_ssim_map_and_loss_match_kornia():
    import kornia

    g = torch.Generator().manual_seed(4)
    a = torch.rand(2, 1, 30, 30, generator=g)
    b = (a + 0.2 * torch.rand(2, 1, 30, 30, generator=g)).clamp(0, 1)
    torch.testing.assert_close(metrics.ssim_map(a, b), kornia.metrics.ssim(a, b, 11, padding="valid"), atol=1e-5, rtol=0)
    torch.testing.assert_close(ssim_loss(a, b), kornia.losses.ssim_loss(a, b, 7, padding="valid"), atol=1e-5, rtol=0)


def random_masks(seed: int, n: int = 6, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pred = torch.rand(n, 1, size, size, generator=g) > 0.6
    target = torch.rand(n, 1, size, size, generator=g) > 0.5
    pred[0], target[0] = False, False  # empty vs empty
    pred[1], target[1] = False, True  # empty prediction
    pred[2], target[2] = True, False  # empty target
    return pred, target


def test_iou_and_dice_match_sklearn_including_empty_masks():
    pred, target = random_masks(0)
    iou, dice = metrics.mask_iou(pred, target), metrics.mask_dice(pred, target)
    for i in range(pred.shape[0]):
        t, p = target[i].flatten().numpy(), pred[i].flatten().numpy()
        assert iou[i].item() == pytest.approx(jaccard_score(t, p, zero_division=1.0))
        assert dice[i].item() == pytest.approx(f1_score(t, p, zero_division=1.0))
    assert iou[0] == dice[0] == 1.0 and iou[1] == iou[2] == 0.0


def test_iou_is_averaged_per_image_not_per_pixel():
    pred = torch.zeros(2, 1, 10, 10, dtype=torch.bool)
    target = pred.clone()
    target[0, 0, :5] = True  # a big object, found
    pred[0, 0, :5] = True
    target[1, 0, 0, 0] = True  # a one-pixel object, missed
    assert metrics.mask_iou(pred, target).mean().item() == pytest.approx(0.5)


def numpy_depth_metrics(p: np.ndarray, g: np.ndarray) -> tuple[float, float, float]:
    valid = g > 0
    rmse = float(np.sqrt(((p - g) ** 2).mean()))
    absrel = float((np.abs(p - g)[valid] / g[valid]).mean())
    ratio = np.maximum(p[valid] / np.maximum(g[valid], 1e-12), g[valid] / np.maximum(p[valid], 1e-12))
    return rmse, absrel, float((ratio < 1.25).mean())


def test_depth_metrics_match_numpy_and_ignore_gt_zero_for_ratios():
    g = torch.Generator().manual_seed(1)
    gt = torch.rand(3, 1, 12, 12, generator=g)
    gt[:, :, :4] = 0  # far / unknown rows, as above a ground-plane horizon
    pred = (gt + 0.2 * torch.rand(3, 1, 12, 12, generator=g)).clamp(0, 1)
    for i in range(3):
        rmse, absrel, delta1 = numpy_depth_metrics(pred[i, 0].numpy().astype(np.float64), gt[i, 0].numpy().astype(np.float64))
        assert metrics.depth_rmse(pred, gt)[i].item() == pytest.approx(rmse, rel=1e-5)
        assert metrics.depth_absrel(pred, gt)[i].item() == pytest.approx(absrel, rel=1e-5)
        assert metrics.depth_delta1(pred, gt)[i].item() == pytest.approx(delta1, rel=1e-5)


def test_depth_metrics_are_not_symmetric():
    gt = torch.full((1, 1, 4, 4), 0.5)
    pred = torch.full((1, 1, 4, 4), 0.25)
    assert metrics.depth_absrel(pred, gt).item() == pytest.approx(0.5)  # |0.25 - 0.5| / 0.5
    assert metrics.depth_absrel(gt, pred).item() == pytest.approx(1.0)  # |0.5 - 0.25| / 0.25
    half = pred.clone()
    half[..., :2] = 0.45  # within 1.25x of 0.5 on half of the pixels
    gt2 = gt.clone()
    gt2[..., 2:] = 0  # ... and those pixels of gt are the only valid ones when swapped the other way
    assert metrics.depth_delta1(half, gt2).item() == pytest.approx(1.0)
    assert metrics.depth_delta1(gt2, half).item() == pytest.approx(0.5)
    assert metrics.depth_rmse(pred, gt).item() == pytest.approx(metrics.depth_rmse(gt, pred).item())


def test_absrel_of_an_all_zero_gt_is_zero_not_nan():
    gt = torch.zeros(1, 1, 4, 4)
    assert metrics.depth_absrel(torch.rand(1, 1, 4, 4), gt).item() == 0.0


def test_baseline_threshold_is_chosen_where_the_difference_separates():
    bg = torch.zeros(4, 3, 8, 8)
    fg_bg = bg.clone()
    fg_bg[:, :, 2:5, 2:5] = 0.3  # summed difference 0.9 inside the object
    fg_bg[:, :, 6:, 6:] = 0.05  # noise: 0.15
    mask = torch.zeros(4, 1, 8, 8)
    mask[:, :, 2:5, 2:5] = 1
    t = metrics.choose_baseline_threshold(bg, fg_bg, mask)
    assert 0.15 <= t < 0.9
    assert metrics.mask_iou(metrics.baseline_mask(bg, fg_bg, t), mask > 0).min() == 1.0



def test_baseline_threshold_equals_scoring_every_candidate_with_mask_iou():
    """The one-pass search picks what trying each candidate with mask_iou picks (empty masks included)."""
    g = torch.Generator().manual_seed(0)
    candidates = torch.linspace(0.01, 1.5, 150)
    for trial in range(10):
        bg = torch.rand(8, 3, 24, 24, generator=g)
        mask = (torch.rand(8, 1, 24, 24, generator=g) > 0.7).float()
        mask[0] = 0 if trial % 2 else mask[0]
        noise = 0.05 * trial * torch.randn(8, 3, 24, 24, generator=g)
        fg_bg = torch.where(mask > 0, torch.rand(8, 3, 24, 24, generator=g), bg + noise)
        diff = (fg_bg - bg).abs().sum(1, keepdim=True)
        scores = torch.tensor([metrics.mask_iou(diff > t, mask > 0.5).mean().item() for t in candidates.tolist()])
        assert metrics.choose_baseline_threshold(bg, fg_bg, mask) == float(candidates[int(scores.argmax())])


# ---------------------------------------------------------------- losses


def test_soft_dice_loss_limits():
    target = torch.zeros(2, 1, 8, 8)
    target[0, :, :4] = 1
    perfect = torch.where(target > 0, 20.0, -20.0)
    assert soft_dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)  # including empty vs empty
    assert soft_dice_loss(-perfect, target).item() > 0.4


def test_gradient_loss_matches_numpy():
    g = torch.Generator().manual_seed(2)
    p, t = torch.rand(2, 1, 9, 7, generator=g), torch.rand(2, 1, 9, 7, generator=g)
    pn, tn = p.numpy(), t.numpy()
    expected = np.abs(np.diff(pn, axis=3) - np.diff(tn, axis=3)).mean() + np.abs(np.diff(pn, axis=2) - np.diff(tn, axis=2)).mean()
    assert gradient_loss(p, t).item() == pytest.approx(float(expected), rel=1e-5)
    assert gradient_loss(t + 0.3, t).item() == pytest.approx(0.0, abs=1e-6)  # a constant offset has the same gradients


def test_depth_loss_is_zero_on_the_truth_and_grows_with_error():
    t = torch.rand(2, 1, 16, 16)
    assert depth_loss(t, t).item() == pytest.approx(0.0, abs=1e-5)
    assert depth_loss((t + 0.1).clamp(0, 1), t) < depth_loss((t + 0.3).clamp(0, 1), t)


def test_log_depth_loss_is_relative_error_over_known_pixels():
    g = torch.Generator().manual_seed(4)
    t = torch.rand(2, 1, 12, 12, generator=g) * 0.9 + 0.05
    t[0, 0, :3] = 0  # unknown depth: not counted
    p = torch.rand(2, 1, 12, 12, generator=g) * 0.9 + 0.05
    pn, tn = p.numpy(), t.numpy()
    known = tn > 0
    assert log_depth_loss(p, t).item() == pytest.approx(float(np.abs(np.log(pn) - np.log(tn))[known].mean()), rel=1e-5)
    # the same relative error far (small inverse depth) and near costs the same, unlike L1
    far, near = torch.full((1, 1, 4, 4), 0.05), torch.full((1, 1, 4, 4), 0.5)
    assert log_depth_loss(far * 1.2, far).item() == pytest.approx(log_depth_loss(near * 1.2, near).item(), rel=1e-5)
    assert depth_loss(far * 1.2, far, ssim=0, grad=0, log=1.0) > depth_loss(far * 1.2, far, ssim=0, grad=0)
    assert log_depth_loss(p, torch.zeros_like(t)).item() == 0.0


def test_module_equals_functions():
    g = torch.Generator().manual_seed(3)
    pred = Prediction(torch.randn(2, 1, 16, 16, generator=g), torch.rand(2, 1, 16, 16, generator=g))
    mask = (torch.rand(2, 1, 16, 16, generator=g) > 0.5).float()
    depth = torch.rand(2, 1, 16, 16, generator=g)
    c = LossConfig(mask=2.0, depth=0.5, dice=0.7, depth_ssim=0.3, depth_log=0.4)
    losses = MaskDepthLoss(c)(pred, mask, depth)
    m = mask_loss(pred.mask_logits, mask, 0.7)
    d = depth_loss(pred.depth, depth, c.depth_l1, c.depth_ssim, c.depth_grad, 0.4)
    torch.testing.assert_close(losses.total, 2.0 * m + 0.5 * d)
    torch.testing.assert_close(losses.mask, m)


def test_the_ssim_blur_weights_are_made_once_per_device_and_kept(monkeypatch):
    """The loss runs SSIM at every training step: its kernel is not copied to the device each time."""
    made = []
    kernel = metrics.gaussian_kernel1d
    monkeypatch.setattr(metrics, "gaussian_kernel1d", lambda *a, **k: made.append(a) or kernel(*a, **k))
    metrics.blur_weights.cache_clear()
    g = torch.Generator().manual_seed(0)
    pred, gt = torch.rand(2, 1, 32, 32, generator=g), torch.rand(2, 1, 32, 32, generator=g)
    values = [metrics.depth_ssim(pred, gt) for _ in range(3)]
    assert len(made) == 1 and all(torch.equal(v, values[0]) for v in values)
    vertical, horizontal = metrics.blur_weights(metrics.SSIM_WINDOW, metrics.SSIM_SIGMA, 5, torch.float32, pred.device)
    assert vertical.shape == (5, 1, metrics.SSIM_WINDOW, 1) and horizontal.shape == (5, 1, 1, metrics.SSIM_WINDOW)
    assert vertical.device == pred.device and not vertical.is_inference()
    reference = structural_similarity(gt[0, 0].numpy(), pred[0, 0].numpy(), gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, data_range=1.0)  # fmt: skip
    assert values[0][0].item() == pytest.approx(reference, abs=1e-5)
