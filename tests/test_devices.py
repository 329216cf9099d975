"""The one device resolver: ``auto``/``cpu``/``cuda``/``cuda:N`` for every verb, Lightning's arguments for
training, ONNX Runtime providers; and, on a GPU machine (``-m cuda``), evaluate and predict on the GPU
against the CPU."""

import json
import warnings
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from PIL import Image

import fgbg
from fgbg.cli import main
from fgbg.engine import devices
from fgbg.engine.devices import DeviceError, onnx_providers, provider_names, resolve_device, resolve_training
from fgbg.learn.evaluate import evaluate
from fgbg.learn.predict import predict

from .test_export_predict import odd_pair, onnx_file, quiet, run  # noqa: F401 (fixtures: a tiny trained checkpoint, its ONNX export)

CUDA_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]

# bf16 autocast moves each averaged metric of the tiny test model by 1e-4 to 4e-4 (measured with CPU
# autocast, the same arithmetic); a GPU's own kernels add about as much. The baseline involves no network.
AUTOCAST_METRIC_TOLERANCE = 0.01
SAME_MASK_PIXELS = 0.99


@pytest.fixture
def no_gpu(monkeypatch):
    """This machine as one without CUDA, whatever it has."""
    monkeypatch.setattr(devices, "cuda_device_count", lambda: 0)


def err_lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


# ---------------------------------------------------------------- resolve_device


def test_auto_without_cuda_is_the_cpu_with_a_one_line_note(no_gpu):
    device = resolve_device("auto")
    assert (device.torch, device.is_cuda, device.autocast, device.dtype) == ("cpu", False, None, None)
    assert device.note and "\n" not in device.note and "CPU" in device.note
    assert device.record() == {"device": "cpu", "name": device.name, "precision": "fp32"}
    assert resolve_device("cpu").note is None  # asked for, nothing to say


@pytest.mark.parametrize("spec, says", [("cuda", "no CUDA GPU is visible"), ("cuda:1", "no CUDA GPU is visible"), ("gpu", "no CUDA GPU")])
def test_a_gpu_asked_for_and_not_there_is_a_device_error(no_gpu, spec, says):
    with pytest.raises(DeviceError, match=says):
        resolve_device(spec)


def test_a_gpu_index_beyond_the_visible_ones_is_a_device_error(monkeypatch):
    monkeypatch.setattr(devices, "cuda_device_count", lambda: 1)
    with pytest.raises(DeviceError, match=r"only 1 CUDA GPU\(s\) visible \(cuda:0 to cuda:0\)"):
        resolve_device("cuda:3")


@pytest.mark.parametrize("verb", ["evaluate", "predict"])
def test_device_cuda_without_a_gpu_is_one_line_and_exit_2_before_any_work(no_gpu, tmp_path, capsys, verb):
    bg, composite = odd_pair(tmp_path / "in")
    out = tmp_path / "out"
    argv = {
        "evaluate": ["evaluate", str(tmp_path / "best.ckpt"), str(tmp_path / "store"), "--out", str(out)],
        "predict": ["predict", str(tmp_path / "best.ckpt"), "--bg", str(bg), "--fg-bg", str(composite), "--out", str(out)],
    }[verb]
    assert main([*argv, "--device", "cuda"]) == 2
    err = err_lines(capsys)
    assert err == [f"fgbg {verb}: error: --device cuda: no CUDA GPU is visible here (torch sees none); use --device cpu or auto"]
    assert not out.exists()  # stopped before the checkpoint (which does not even exist) was read


@pytest.mark.parametrize("verb", ["evaluate", "predict", "cutout"])
@pytest.mark.parametrize("spec", ["tpu", "cuda:one", "cpu:0", "cuda:-1", "mps"])
def test_a_malformed_device_is_a_usage_error_of_one_line(tmp_path, capsys, verb, spec):
    argv = {
        "evaluate": ["evaluate", "best.ckpt", "store", "--out", str(tmp_path / "e")],
        "predict": ["predict", "best.ckpt", "--bg", "b.jpg", "--fg-bg", "c.jpg", "--out", str(tmp_path / "p")],
        "cutout": ["cutout", "photos", "--out", str(tmp_path / "c")],
    }[verb]
    with pytest.raises(SystemExit) as exit:
        main([*argv, "--device", spec])
    assert exit.value.code == 2
    err = err_lines(capsys)
    assert len(err) == 1 and err[0].startswith(f"fgbg {verb}: error: argument --device: expected auto, cpu, cuda or cuda:N, got {spec!r}")


def test_device_specs_are_read_the_same_everywhere():
    assert [devices.device_arg(s) for s in ("auto", "CPU", " cuda ", "gpu", "cuda:2", "GPU:1")] == ["auto", "cpu", "cuda", "cuda", "cuda:2", "cuda:1"]
    assert devices.parse_device("cuda:2") == ("cuda", 2) and devices.parse_device(None) == ("auto", None)


# ---------------------------------------------------------------- resolve_training


def test_training_on_a_gpu_without_one_is_a_device_error(no_gpu):
    with pytest.raises(DeviceError, match="--accelerator gpu: no CUDA GPU is visible here"):
        resolve_training("gpu")
    with pytest.raises(DeviceError, match="--accelerator gpu"):
        resolve_training("cuda")  # the torch name of the same thing


def test_training_defaults_on_the_cpu(no_gpu):
    auto = resolve_training()
    assert (auto.accelerator, auto.devices, auto.strategy, auto.precision, auto.world_size) == ("cpu", 1, "auto", "32-true", 1)
    assert auto.note == devices.NO_CUDA_NOTE and not auto.on_gpu
    assert resolve_training("cpu").note is None


def test_two_cpu_processes_train_with_ddp_and_record_the_global_batch(no_gpu):
    two = resolve_training("cpu", "2")
    assert (two.devices, two.strategy, two.world_size) == (2, "ddp", 2)
    assert two.record(batch=8)["global_batch"] == 16 and two.record(batch=8)["world_size"] == 2
    nodes = resolve_training("cpu", 2, num_nodes=3)
    assert nodes.world_size == 6 and nodes.record(batch=4)["global_batch"] == 24
    assert resolve_training("cpu", precision="bf16").precision == "bf16-mixed"  # asked for, kept


@pytest.mark.parametrize("flags", [["--devices", "8"], ["--devices", "0,2"], ["--devices", "1"]])
def test_a_device_count_without_a_gpu_is_one_line_and_exit_2_before_any_work(no_gpu, tmp_path, capsys, flags):
    """README's `--devices 8` (GPUs 0-7) on a machine without a GPU is refused, as `--devices 0,2` is;
    N CPU processes stay one flag away, and torchrun/SLURM's own count still trains on the CPU."""
    out = tmp_path / "run"
    assert main(["train", str(tmp_path / "store"), "--out", str(out), *flags]) == 2
    err = err_lines(capsys)
    n = len(flags[1].split(",")) if "," in flags[1] else int(flags[1])
    assert len(err) == 1 and f"--devices {flags[1]}: no CUDA GPU is visible here" in err[0], err
    assert err[0].endswith(f"give --accelerator cpu --devices {n}") and not out.exists()
    assert resolve_training("cpu", str(n)).world_size == n  # the way it points to
    assert resolve_training("auto", "2", launched=True).world_size == 2  # torchrun --nproc-per-node 2 on CPU nodes


@pytest.mark.parametrize("kwargs, says", [
    (dict(accelerator="cpu", devices="0,1"), "a list of indices is for GPUs"),
    (dict(accelerator="cpu", devices=[0]), "a list of indices is for GPUs"),
    (dict(accelerator="cpu", devices="0"), "a count must be at least 1"),
    (dict(accelerator="cpu", devices="two"), "expected auto, a count"),
    (dict(accelerator="tpu"), "expected auto, cpu or gpu"),
    (dict(accelerator="cpu", strategy="fsdp"), "expected auto or ddp"),
    (dict(accelerator="cpu", num_nodes=0), "--num-nodes must be at least 1"),
    (dict(accelerator="cpu", precision="64"), "expected 32, bf16-mixed or 16-mixed"),
])  # fmt: skip
def test_impossible_training_devices_are_device_errors(no_gpu, kwargs, says):
    with pytest.raises(DeviceError, match=says):
        resolve_training(**kwargs)


# ---------------------------------------------------------------- ONNX Runtime providers


def test_onnx_falls_back_to_the_cpu_with_one_note_when_there_is_no_cuda_provider(monkeypatch):
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    said = []
    assert onnx_providers("cuda", said.append) == ["CPUExecutionProvider"]
    assert len(said) == 1 and said[0].startswith("note: ONNX Runtime has no CUDA provider") and "fgbg[gpu]" in said[0]
    assert onnx_providers("auto", said.append) == onnx_providers("cpu", said.append) == ["CPUExecutionProvider"]
    assert len(said) == 1  # auto and cpu asked for no GPU: nothing to say


def test_onnx_takes_the_cuda_provider_first_when_onnxruntime_gpu_has_it(monkeypatch):
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: CUDA_PROVIDERS)
    said = []
    assert onnx_providers("cuda:1", said.append) == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert provider_names(onnx_providers("auto", said.append)) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers("cpu", said.append) == ["CPUExecutionProvider"] and said == []
    gpu = devices.Device("cuda:2", "a GPU", "bf16")
    assert onnx_providers(gpu)[0] == ("CUDAExecutionProvider", {"device_id": 2})


def test_a_cuda_provider_that_cannot_start_is_said_in_one_line(monkeypatch, tmp_path):
    """onnxruntime-gpu installed without the CUDA libraries it needs: ONNX Runtime quietly runs on the CPU."""
    from fgbg.depth.testing import tiny_u2net

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("ONNX Runtime really has a CUDA provider here")
    model = tiny_u2net(tmp_path / "u2netp.onnx")
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: CUDA_PROVIDERS)  # it says it has one
    said = []
    with warnings.catch_warnings():  # ONNX Runtime's own words on it, in Python's warnings
        warnings.simplefilter("ignore")
        session = devices.onnx_session(model, providers=onnx_providers("cuda", said.append), warn=said.append)
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert said == ["note: u2netp.onnx: ONNX Runtime could not start its CUDA provider (CUDA/cuDNN libraries?); running on the CPU"]


def test_cutout_on_a_gpu_without_the_cuda_provider_says_so_once_and_cuts_out_on_the_cpu(monkeypatch, tmp_path, capsys):
    from fgbg.depth.testing import tiny_u2net

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    model = tiny_u2net(tmp_path / "u2netp.onnx")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray((np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8)).save(photos / "p.jpg")
    for device in ("cpu", "cuda"):
        assert main(["cutout", str(photos), "--out", str(tmp_path / device), "--model", str(model), "--device", device, "--quiet"]) == 0
    err = err_lines(capsys)
    assert len(err) == 1 and "note: ONNX Runtime has no CUDA provider" in err[0]
    assert (tmp_path / "cuda" / "p.png").read_bytes() == (tmp_path / "cpu" / "p.png").read_bytes()


# ---------------------------------------------------------------- one place


def test_only_the_device_module_asks_torch_about_cuda_or_builds_onnx_sessions():
    package = Path(fgbg.__file__).parent
    resolver = package / "engine" / "devices.py"
    sources = {p: p.read_text() for p in sorted(package.rglob("*.py")) if p != resolver}
    assert len(sources) > 20
    assert [str(p.relative_to(package)) for p, text in sources.items() if "cuda.is_available" in text] == []
    assert [str(p.relative_to(package)) for p, text in sources.items() if "InferenceSession(" in text] == []
    assert "cuda.is_available" in resolver.read_text()  # the one probe is still there


# ---------------------------------------------------------------- tests on the CPU, cuDNN's autotuning


@pytest.fixture
def fake_gpu(monkeypatch):
    """torch as on a one-GPU machine (nothing runs on it: only what the resolver asks)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "a GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)


def test_tests_not_marked_cuda_run_on_the_cpu_where_a_gpu_is_visible(fake_gpu, monkeypatch, tmp_path):
    import os
    import subprocess
    import sys

    assert os.environ.get(devices.CPU_ONLY_ENV) == "1"  # tests/conftest.py, for the whole session
    auto = resolve_device("auto")
    assert not auto.is_cuda and auto.note == devices.NO_CUDA_NOTE
    assert (resolve_training().accelerator, resolve_training().precision) == ("cpu", "32-true")
    with pytest.raises(DeviceError, match="no CUDA GPU is visible"):
        resolve_device("cuda")
    probe = ("import torch; torch.cuda.is_available = lambda: True; torch.cuda.device_count = lambda: 1;"
             " from fgbg.engine.devices import resolve_device; print(resolve_device('auto').torch)")  # fmt: skip
    child = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert child.stdout.strip() == "cpu"  # a CLI process started by a test inherits it
    monkeypatch.delenv(devices.CPU_ONLY_ENV)  # as for a test marked cuda
    assert resolve_device("auto").torch == "cuda:0" and resolve_training().precision == "bf16-mixed"


def test_cudnn_benchmarks_inside_a_placed_networks_forward_passes_only():
    import torch

    seen = []

    class Conv(torch.nn.Conv2d):
        def forward(self, x):
            seen.append(torch.backends.cudnn.benchmark)
            return super().forward(x)

    net = devices.autotuned(Conv(3, 4, 3))
    assert torch.backends.cudnn.benchmark is False
    net(torch.zeros(1, 3, 8, 8))
    assert seen == [True] and torch.backends.cudnn.benchmark is False  # on for the pass, restored after it
    with pytest.raises(RuntimeError):
        net(torch.zeros(1, 5, 8, 8))  # a pass that raises restores it too
    assert torch.backends.cudnn.benchmark is False
    with devices.cudnn_autotuning(True):
        assert torch.backends.cudnn.benchmark is True
    with devices.cudnn_autotuning(False):  # a CPU run: left as it is
        assert torch.backends.cudnn.benchmark is False
    assert torch.backends.cudnn.benchmark is False
    cpu = torch.nn.Conv2d(3, 4, 3)
    assert devices.cpu_device().place(cpu) is cpu and not cpu._forward_pre_hooks


# ---------------------------------------------------------------- on a GPU machine (pytest -m cuda)


@pytest.mark.cuda
def test_evaluate_on_cuda_gives_the_cpu_metrics(run, tmp_path):
    checkpoint, store = run / "run" / "best.ckpt", run / "store"
    cpu = evaluate(checkpoint, store, tmp_path / "cpu", split="all", log=quiet, progress=False, device="cpu")
    gpu = evaluate(checkpoint, store, tmp_path / "gpu", split="all", log=quiet, progress=False, device="cuda", batch_size=7)
    assert gpu["n_images"] == cpu["n_images"] == 24
    assert gpu["baseline_mask_iou"] == pytest.approx(cpu["baseline_mask_iou"], abs=1e-6)  # no network: fp32 on both
    for name in ("mask_iou", "mask_dice", "depth_rmse", "depth_absrel", "depth_delta1", "depth_ssim"):
        assert gpu[name] == pytest.approx(cpu[name], abs=AUTOCAST_METRIC_TOLERANCE), name
    recorded = json.loads((tmp_path / "gpu" / "evaluation.json").read_text())
    assert recorded["device"] == "cuda:0" and recorded["precision"] in ("bf16", "fp16") and recorded["batch_size"] == 7
    assert json.loads((tmp_path / "gpu" / "metrics.json").read_text()) == gpu


@pytest.mark.cuda
def test_predict_on_cuda_writes_the_cpu_masks(run, tmp_path):
    from .test_export_predict import assert_same_masks, composites

    bg, fg_bg = composites(tmp_path / "in", 6)
    checkpoint = run / "run" / "best.ckpt"
    predict(checkpoint, bg, fg_bg, tmp_path / "cpu", log=quiet, device="cpu")
    predict(checkpoint, bg, fg_bg, tmp_path / "gpu", log=quiet, device="cuda", batch_size=4)
    assert_same_masks(tmp_path / "cpu", tmp_path / "gpu", SAME_MASK_PIXELS, depth_levels=4)


@pytest.mark.cuda
def test_predict_onnx_on_cuda_uses_the_cuda_provider_when_installed(request, tmp_path):
    from .test_export_predict import assert_same_masks, composites

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is not installed (pip install 'fgbg[gpu]')")
    onnx_file = request.getfixturevalue("onnx_file")  # after the skip: the export needs onnx, which a bare GPU machine may lack
    bg, fg_bg = composites(tmp_path / "in", 6)
    said = []
    predict(onnx_file, bg, fg_bg, tmp_path / "cpu", onnx=True, log=quiet, device="cpu")
    predict(onnx_file, bg, fg_bg, tmp_path / "gpu", onnx=True, log=said.append, warn=said.append, device="cuda")
    assert len(said) == 1 and "CUDAExecutionProvider" in said[0]  # the log line names the provider used; no fallback note
    assert_same_masks(tmp_path / "cpu", tmp_path / "gpu", SAME_MASK_PIXELS, depth_levels=2)
