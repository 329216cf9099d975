"""The two-head U-Net: a contract (shapes, resolutions, save/load), size, MACs, and no double sigmoid."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from fgbg.errors import UserError
from fgbg.learn import metrics
from fgbg.learn.losses import mask_loss
from fgbg.learn.model import (
    ModelConfig,
    NormalizedNet,
    Prediction,
    TwoHeadUNet,
    count_macs,
    count_parameters,
    describe,
    inference_net,
    load_checkpoint,
)


def last_conv(seq: nn.Sequential) -> nn.Conv2d:
    return [m for m in seq if isinstance(m, nn.Conv2d)][-1]


class TestTwoHeadUNetContract:
    config = ModelConfig(width=4)

    def make(self) -> TwoHeadUNet:
        torch.manual_seed(0)
        return TwoHeadUNet(self.config).eval()

    @pytest.mark.parametrize("hw", [(32, 32), (33, 47), (64, 40), (17, 16)])
    def test_any_resolution(self, hw):
        out = self.make()(torch.randn(2, 6, *hw))
        assert isinstance(out, Prediction)
        assert out.mask_logits.shape == out.depth.shape == (2, 1, *hw)

    def test_depth_in_unit_range_and_mask_is_logits(self):
        net = self.make()
        nn.init.constant_(last_conv(net.mask_head).bias, 5.0)  # logits well above 1: not probabilities
        nn.init.constant_(last_conv(net.depth_head).bias, 50.0)
        out = net(torch.randn(2, 6, 32, 32))
        assert out.mask_logits.min() > 1.0
        assert 0.0 <= out.depth.min() and out.depth.max() <= 1.0

    def test_forward_backward(self):
        net = TwoHeadUNet(self.config).train()
        out = net(torch.randn(2, 6, 32, 32))
        (out.mask_logits.mean() + out.depth.mean()).backward()
        assert all(p.grad is not None for p in net.parameters())

    def test_save_load(self, tmp_path):
        net = self.make()
        torch.save(net.state_dict(), tmp_path / "w.pt")
        other = TwoHeadUNet(self.config).eval()
        other.load_state_dict(torch.load(tmp_path / "w.pt"))
        x = torch.randn(1, 6, 32, 32)
        torch.testing.assert_close(net(x), other(x), rtol=0, atol=0)

    def test_channels_last_gives_the_same_result(self):
        net = self.make()
        x = torch.randn(2, 6, 32, 32)
        expected = net(x)
        got = net.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)

    def test_wrong_input_says_what_arrived(self):
        with pytest.raises(ValueError, match=r"\(2, 3, 32, 32\)"):
            self.make()(torch.randn(2, 3, 32, 32))


class TestFullResolutionStem(TestTwoHeadUNetContract):
    config = ModelConfig(width=4, stem=1, stages=3)


class TestWithoutRefiner(TestTwoHeadUNetContract):
    config = ModelConfig(width=4, refine=0)


def test_refiner_is_a_residual_on_the_coarse_logits():
    """With its last conv zeroed the refiner passes the coarse mask through unchanged, and depth never sees it."""
    torch.manual_seed(0)
    net = TwoHeadUNet(ModelConfig(width=4, refine=8)).eval()
    x = torch.randn(2, 6, 33, 47)  # odd: padded to the stem and cropped back
    refined = net(x)
    nn.init.zeros_(last_conv(net.refiner.body).weight)
    nn.init.zeros_(last_conv(net.refiner.body).bias)
    passed = net(x)
    net.refiner = None
    coarse = net(x)
    torch.testing.assert_close(passed, coarse, rtol=0, atol=0)
    assert not torch.equal(refined.mask_logits, coarse.mask_logits)
    torch.testing.assert_close(refined.depth, coarse.depth, rtol=0, atol=0)


def refiner_runs(pad: bool | None, device: str = "cpu", mixed=None) -> tuple:
    """The default network (11 channels into the refiner), channels_last on ``device``, trained one
    forward and backward with the refiner's padding ``pad``: (outputs, gradients by name, parameter shapes)."""
    torch.manual_seed(0)
    net = TwoHeadUNet(ModelConfig()).to(device, memory_format=torch.channels_last)
    net.refiner.pad_channels = pad
    x = torch.randn(2, 6, 40, 40, device=device).contiguous(memory_format=torch.channels_last)
    with mixed or torch.autocast(device, enabled=False):
        out = net(x)
    (out.mask_logits.float().square().mean() + out.depth.float().mean()).backward()
    grads = {name: p.grad.float() for name, p in net.named_parameters()}
    return [t.float() for t in out], grads, {k: tuple(v.shape) for k, v in net.state_dict().items()}


def test_the_refiner_padded_to_16_channels_gives_the_same_outputs_gradients_and_parameters():
    assert TwoHeadUNet(ModelConfig()).refiner.body[0].in_channels == 11  # what the padding is for
    plain, padded = refiner_runs(False), refiner_runs(True)
    torch.testing.assert_close(padded[0], plain[0], rtol=1e-5, atol=1e-5)
    for name, grad in plain[1].items():
        torch.testing.assert_close(padded[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert padded[2] == plain[2]  # the same parameters: checkpoints load either way
    # under bf16 autocast, a GPU's precision
    mixed = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    plain_bf16, padded_bf16 = refiner_runs(False, mixed=mixed()), refiner_runs(True, mixed=mixed())
    torch.testing.assert_close(padded_bf16[0], plain_bf16[0], rtol=0.02, atol=0.02)


def test_the_cpu_runs_the_refiner_unpadded_and_a_gpu_channels_last_padded():
    auto, plain = refiner_runs(None), refiner_runs(False)
    torch.testing.assert_close(auto[0], plain[0], rtol=0, atol=0)  # the CPU's outputs are as they were
    refiner = TwoHeadUNet(ModelConfig()).refiner

    def weight(cuda: bool, channels_last: bool, c_in: int = 11):
        return SimpleNamespace(is_cuda=cuda, shape=(16, c_in, 3, 3), is_contiguous=lambda memory_format=None: channels_last)

    assert refiner.pads(weight(cuda=True, channels_last=True))
    assert not refiner.pads(weight(cuda=True, channels_last=False))
    assert not refiner.pads(weight(cuda=False, channels_last=True))
    assert not refiner.pads(weight(cuda=True, channels_last=True, c_in=16))  # already a multiple of 8


@pytest.mark.cuda
def test_on_a_gpu_the_channels_last_refiner_pads_and_gives_the_unpadded_values():
    net = TwoHeadUNet(ModelConfig()).to("cuda", memory_format=torch.channels_last)
    assert net.refiner.pads(net.refiner.body[0].weight)
    mixed = lambda: torch.autocast("cuda", dtype=torch.bfloat16)  # noqa: E731
    plain, padded = refiner_runs(False, "cuda", mixed()), refiner_runs(None, "cuda", mixed())
    torch.testing.assert_close(padded[0], plain[0], rtol=0.02, atol=0.02)


def test_refine_must_not_be_negative():
    with pytest.raises(UserError, match="--refine"):
        ModelConfig(refine=-1)


def test_default_is_under_a_million_parameters_and_width_scales_it():
    default = count_parameters(TwoHeadUNet())
    assert 100_000 < default < 1_000_000
    assert count_parameters(TwoHeadUNet(ModelConfig(width=8))) < default < count_parameters(TwoHeadUNet(ModelConfig(width=24)))
    assert "M parameters" in describe(TwoHeadUNet(), 64)


def test_macs_counted_by_hand_for_a_single_conv():
    conv = nn.Conv2d(6, 4, 3, padding=1)
    assert count_macs(conv, 10) == 10 * 10 * 4 * 6 * 9
    net = TwoHeadUNet(ModelConfig(width=4))
    assert count_macs(net, 64) == 4 * count_macs(net, 32)  # fully convolutional: cost scales with pixels


def test_exactly_one_sigmoid_and_it_is_in_the_depth_head():
    net = TwoHeadUNet()
    sigmoids = [name for name, m in net.named_modules() if isinstance(m, nn.Sigmoid)]
    assert len(sigmoids) == 1 and sigmoids[0].startswith("depth_head")


def test_no_double_sigmoid_on_logits():
    """Logits of -0.1 are background: sigmoid once gives 0.475; a second sigmoid would give 0.62 (foreground)."""
    logits = torch.full((1, 1, 4, 4), -0.1)
    assert not metrics.binarize(logits).any()
    assert torch.sigmoid(torch.sigmoid(logits)).min() > 0.5  # what the bug would have done
    # the loss takes logits: equal to BCE on sigmoid(logits), not on sigmoid(sigmoid(logits))
    target = torch.zeros(1, 1, 4, 4)
    bce = nn.functional.binary_cross_entropy(torch.sigmoid(logits), target)
    dice = 1 - 1 / (torch.sigmoid(logits).sum() + 1)  # soft Dice with eps 1, empty target
    torch.testing.assert_close(mask_loss(logits, target), bce + dice)


def test_normalized_net_normalises_then_runs():
    torch.manual_seed(0)
    net = TwoHeadUNet(ModelConfig(width=4)).eval()
    mean, std = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.5] * 6
    wrapped = NormalizedNet(net, mean, std).eval()
    bg, fg_bg = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    x = (torch.cat([bg, fg_bg], 1) - torch.tensor(mean).view(1, 6, 1, 1)) / 0.5
    torch.testing.assert_close(wrapped(bg, fg_bg), net(x))


def fake_checkpoint(path, config: ModelConfig = ModelConfig(width=4)) -> dict:
    """What `fgbg train` saves, reduced to what loading needs: run meta and the module's weights."""
    net = TwoHeadUNet(config)
    meta = {"model": config.to_dict(), "stats": {"mean": [0.5] * 6, "std": [0.25] * 6}, "train": {"size": 32}}
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"hyper_parameters": {"meta": meta}, "state_dict": state, "epoch": 0}, path)
    return state


def not_checkpoints(folder) -> dict[str, object]:
    """Files a user might pass where a checkpoint belongs, and a word the message should have."""
    folder.mkdir(exist_ok=True)
    good = folder / "good.ckpt"
    fake_checkpoint(good)
    data = good.read_bytes()
    files = {
        "missing.ckpt": None,
        "random.ckpt": np.random.default_rng(0).bytes(4096),
        "photo.png": None,
        "model.onnx": b"\x08\x07\x12\x07pytorch" + bytes(200),  # the start of an ONNX protobuf
        "truncated.ckpt": data[: len(data) // 2],
        "empty.ckpt": b"",
    }
    for name, content in files.items():
        if content is not None:
            (folder / name).write_bytes(content)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "photo.png")
    torch.save({"weights": torch.zeros(3)}, folder / "other_torch.pt")  # a torch file, not a run
    words = {"missing.ckpt": "no such checkpoint", "photo.png": "PNG", "model.onnx": "ONNX", "truncated.ckpt": "truncated",
             "empty.ckpt": "empty", "other_torch.pt": "not an fgbg training checkpoint", "random.ckpt": "not an fgbg checkpoint"}  # fmt: skip
    return {name: word for name, word in words.items()}


def test_a_checkpoint_loads_back_with_its_weights(tmp_path):
    state = fake_checkpoint(tmp_path / "run.ckpt")
    net, meta = load_checkpoint(tmp_path / "run.ckpt")
    assert net.config == ModelConfig(width=4) and meta["train"]["size"] == 32
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[f"net.{k}"])


def test_files_that_are_not_checkpoints_are_one_line_naming_them(tmp_path):
    for name, word in not_checkpoints(tmp_path).items():
        with pytest.raises(UserError) as e:
            inference_net(tmp_path / name)
        message = str(e.value)
        assert "\n" not in message and message.startswith(str(tmp_path / name)), message
        assert word in message and ("fgbg train" in message), message
