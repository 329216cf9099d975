"""Depth networks: ONNX and transformers backends on tiny models built here, scales, errors, devices."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fgbg import codecs
from fgbg.config import GenerateConfig
from fgbg.depth.estimator import (
    EstimatorError,
    OnnxEstimator,
    load_estimator,
    robust_range,
)
from fgbg.depth.testing import tiny_onnx_depth, tiny_transformers_depth, tiny_u2net
from fgbg.make.assets import load_assets
from fgbg.make.generate import GenerateError, generate
from fgbg.make.render import Renderer
from fgbg.store import iter_samples, read_dataset_json
from fgbg.store.lock import LOCK_FILE
from fgbg.store.plan import Plan

from .conftest import SMALL
from .test_generate import kill_mid_run_then_uninterrupted, shard_hashes


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    return tiny_onnx_depth(tmp_path_factory.mktemp("onnx") / "tiny_depth.onnx")


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    return tiny_transformers_depth(tmp_path_factory.mktemp("hf") / "tiny-glpn")


def images(n, h=50, w=70, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def estimator_config(model, **overrides):
    return GenerateConfig(**{**SMALL, "depth": "estimator", "depth_model": str(model), "depth_batch": 4, **overrides})


@pytest.mark.parametrize("backend", ["onnx", "transformers"])
def test_maps_come_back_at_input_size_and_batching_changes_nothing(backend, onnx_model, hf_model):
    estimator = load_estimator(str(onnx_model if backend == "onnx" else hf_model))
    x = images(8)
    batched = estimator(x)
    assert batched.shape == (8, 50, 70) and batched.dtype == np.float32
    singles = np.concatenate([estimator(x[i : i + 1]) for i in range(8)])
    np.testing.assert_allclose(batched, singles, atol=1e-5)
    assert estimator.description["backend"] == ("onnxruntime" if backend == "onnx" else "transformers")


def test_transformers_metric_depth_is_inverted(hf_model):
    estimator = load_estimator(str(hf_model))
    assert estimator.metric and "inverted" in estimator.description["output"]


def test_onnx_presets_and_sidecar_json(onnx_model, tmp_path):
    assert OnnxEstimator(onnx_model, preset="depth-anything").preprocess.side == 518  # 37 * 14
    copy = tmp_path / "m.onnx"
    copy.write_bytes(onnx_model.read_bytes())
    (tmp_path / "m.json").write_text(json.dumps({"size": 96, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}))
    p = OnnxEstimator(copy).preprocess
    assert p.side == 96 and p.mean == (0.5, 0.5, 0.5)


def test_clear_errors_before_anything_is_written(folders, tmp_path):
    with pytest.raises(EstimatorError, match="not found"):
        load_estimator(str(tmp_path / "missing.onnx"))
    bg, fg = folders
    offline = subprocess.run(
        [sys.executable, "-m", "fgbg", "generate", "--bg", str(bg), "--fg", str(fg), "--out", str(tmp_path / "o1"),
         "--depth", "estimator", "--depth-model", "nobody/no-such-depth-model"],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert offline.returncode == 2 and "Traceback" not in offline.stderr
    assert "nobody/no-such-depth-model: cannot load the depth model" in offline.stderr
    assert not (tmp_path / "o1").exists()
    wrong = tiny_onnx_depth(tmp_path / "three_channels.onnx", out_channels=3)
    out = tmp_path / "out"
    with pytest.raises(GenerateError, match="output has shape"):
        generate(*folders, out, estimator_config(wrong), workers=1, progress=False)
    assert not out.exists()


def test_per_bg_scale_is_recorded_and_applied(folders, onnx_model, tmp_path):
    out = tmp_path / "out"
    generate(*folders, out, estimator_config(onnx_model), workers=1, progress=False)
    depth = read_dataset_json(out)["depth"]
    assert depth["source"] == "estimator" and depth["norm"] == "bg" and not depth["per_image_minmax"]
    assets = load_assets(*folders, SMALL["size"], SMALL["fg_size"])
    estimator = load_estimator(str(onnx_model))
    expected = [robust_range(m) for m in estimator(np.stack(assets.bg))]
    np.testing.assert_allclose(depth["depth_scales"], expected, rtol=1e-5, atol=1e-6)
    assert len({tuple(s) for s in depth["depth_scales"]}) == 3  # one per bg
    assert 0 <= depth["clipped_fraction"] < 0.5
    # re-rendering any sample from the store's record gives the stored bytes
    renderer = Renderer.from_store(out)
    plan = Plan.from_config(3, 3, GenerateConfig.from_dict(read_dataset_json(out)["config"]))
    stored = dict(iter_samples(out))
    refs = [plan[i] for i in (0, 5, 17, 30)]
    remade, _ = renderer.render_batch(refs)
    for ref, members in zip(refs, remade):
        assert members == stored[ref.key]


def test_dataset_norm_uses_one_scale(folders, onnx_model, tmp_path):
    generate(*folders, tmp_path / "o", estimator_config(onnx_model, depth_norm="dataset"), workers=1, progress=False)
    scales = read_dataset_json(tmp_path / "o")["depth"]["depth_scales"]
    assert len({tuple(s) for s in scales}) == 1


def test_image_norm_reproduces_the_seeds_and_says_so(folders, onnx_model, tmp_path):
    out = tmp_path / "o"
    generate(*folders, out, estimator_config(onnx_model, depth_norm="image"), workers=1, progress=False)
    depth = read_dataset_json(out)["depth"]
    assert depth["per_image_minmax"] is True and "NO common scale" in depth["scale"]
    for _, m in list(iter_samples(out))[:6]:
        d = codecs.decode_png(m["depth.png"])
        assert d.min() == 0 and d.max() == 255


def test_estimator_per_bg_runs_the_network_once_per_bg(folders, onnx_model, tmp_path):
    out = tmp_path / "o"
    config = GenerateConfig(**{**SMALL, "depth": "estimator-per-bg", "depth_model": str(onnx_model)})
    generate(*folders, out, config, workers=1, progress=False)
    meta = read_dataset_json(out)
    assert meta["depth"]["bg_maps"] == {"estimator": 3} and meta["depth"]["source"] == "estimator-per-bg"
    for _, m in iter_samples(out):  # the layered rule on the network's bg map
        ann, mask, depth = json.loads(m["json"]), codecs.decode_png(m["mask.png"]), codecs.decode_png(m["depth.png"])
        fx, fy = ann["foot"]
        assert np.all(depth[mask > 0] == round(ann["depth"] * 255))


def test_resume_mid_labelling_gives_the_same_bytes(folders, onnx_model, tmp_path):
    bg, fg = folders
    cmd = [sys.executable, "-m", "fgbg", "generate", "--bg", str(bg), "--fg", str(fg), "--size", "96",
           "--fg-size", "48", "--placements", "12", "--shard-size", "12", "--workers", "2", "--quiet",
           "--depth", "estimator", "--depth-model", str(onnx_model), "--depth-batch", "8"]  # fmt: skip
    out = tmp_path / "killed"
    assert 2 <= kill_mid_run_then_uninterrupted(cmd, out, tmp_path / "whole", after_shards=2) < 18
    subprocess.run([*cmd, "--out", str(out)], check=True, capture_output=True)
    assert shard_hashes(out) == shard_hashes(tmp_path / "whole")


def test_depth_maps_writes_sidecars_that_layered_uses(folders, onnx_model, tmp_path, capsys):
    from fgbg.cli import main

    bg, fg = folders
    assert main(["depth-maps", str(bg), "--model", str(onnx_model)]) == 0
    sidecars = sorted(bg.glob("*.depth.png"))
    assert len(sidecars) == 3
    d = codecs.decode_png(sidecars[0].read_bytes())
    assert d.dtype == np.uint16 and d.shape == codecs.decode_jpeg(sorted(bg.glob("*.jpg"))[0].read_bytes()).shape[:2]
    generate(bg, fg, tmp_path / "o", GenerateConfig(**SMALL), workers=1, progress=False)
    assert read_dataset_json(tmp_path / "o")["depth"]["bg_maps"] == {"sidecar": 3}


def test_a_rerun_of_depth_maps_says_they_are_all_there(folders, onnx_model, capsys):
    from fgbg.cli import main

    bg, _ = folders
    first = sorted(bg.glob("*.jpg"))[0]
    assert main(["depth-maps", str(bg), "--model", str(onnx_model), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"wrote 3 depth maps beside the images in {bg}"
    before = {p: p.read_bytes() for p in bg.glob("*.depth.png")}
    assert main(["depth-maps", str(bg), "--model", str(onnx_model), "--device", "cpu"]) == 0
    said = capsys.readouterr()
    assert said.out.strip().splitlines() == [f"all 3 depth maps already there beside the images in {bg}; nothing to do (--overwrite replaces them)"]
    assert "images/s" not in said.err and "wrote 0" not in said.out
    first.with_name(first.stem + ".depth.png").unlink()
    assert main(["depth-maps", str(bg), "--model", str(onnx_model), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"wrote 1 depth map beside the images in {bg} (2 already there)"
    assert {p: p.read_bytes() for p in bg.glob("*.depth.png")} == before


def test_cutout_writes_rgba_and_masks(tmp_path, capsys):
    from PIL import Image

    from fgbg.cli import main

    model = tiny_u2net(tmp_path / "u2netp.onnx")
    photos = tmp_path / "photos"
    photos.mkdir()
    img = np.full((90, 120, 3), 230, np.uint8)
    img[20:70, 30:90] = 20  # a dark object on a light background
    Image.fromarray(img).save(photos / "thing.jpg")
    out = tmp_path / "cut"
    assert main(["cutout", str(photos), "--out", str(out), "--model", str(model)]) == 0
    rgba = np.asarray(Image.open(out / "thing.png"))
    mask = np.asarray(Image.open(out / "masks" / "thing.png"))
    assert rgba.shape == (90, 120, 4) and mask.shape == (90, 120)
    assert set(np.unique(mask)) <= {0, 255}
    assert rgba[45, 60, 3] > rgba[5, 5, 3]  # the object is more opaque than the background
    assert main(["cutout", str(photos), "--out", str(out), "--model", str(tmp_path / "none.onnx")]) == 2
    assert "not found" in capsys.readouterr().err


# ---------------------------------------------------------------- devices, the labelling pipeline, identity


def file_hashes(root) -> dict[str, str]:
    """sha256 of every file of a store, by relative path, but dataset.json (it records the batch size)
    and the lock file (it holds the last writer's pid)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in ("dataset.json", LOCK_FILE)}  # fmt: skip


def without_run_settings(meta: dict) -> dict:
    return {**meta, "config": {k: v for k, v in meta["config"].items() if k not in ("depth_batch", "depth_device")}}


def test_estimator_store_is_byte_identical_for_batch_1_and_16(folders, onnx_model, tmp_path, monkeypatch):
    from fgbg.make import render

    runs = {  # batch: how the pipeline runs; all on this CPU
        1: {"threads": 0},  # in one thread: each of one worker process per core
        16: {"threads": 3},  # three threads feeding the network in this one: the GPU's way
        5: {"threads": 3, "parallel_batches": True},  # three batches at once: the CPU's way in one process
    }
    for batch, threads in runs.items():
        monkeypatch.setattr(render, "pipeline_threads", lambda on_gpu, cpu_threads, threads=threads: threads)
        config = estimator_config(onnx_model, depth_batch=batch, shard_size=20, depth_device="cpu")
        generate(*folders, tmp_path / f"b{batch}", config, workers=0, progress=False)
    one = file_hashes(tmp_path / "b1")
    assert sum(name.endswith(".tar") for name in one) == 2
    assert file_hashes(tmp_path / "b16") == one and file_hashes(tmp_path / "b5") == one
    meta = {batch: read_dataset_json(tmp_path / f"b{batch}") for batch in runs}
    assert [meta[b]["config"]["depth_batch"] for b in runs] == list(runs)  # recorded
    assert without_run_settings(meta[1]) == without_run_settings(meta[16]) == without_run_settings(meta[5])


def test_depth_maps_are_byte_identical_for_batch_1_and_16(folders, onnx_model, tmp_path):
    from fgbg.cli import main

    sidecars = {}
    for batch in (1, 16):
        folder = tmp_path / f"bg{batch}"
        shutil.copytree(folders[0], folder)
        assert main(["depth-maps", str(folder), "--model", str(onnx_model), "--device", "cpu", "--batch-size", str(batch)]) == 0
        sidecars[batch] = {p.name: p.read_bytes() for p in sorted(folder.glob("*.depth.png"))}
    assert len(sidecars[1]) == 3 and sidecars[1] == sidecars[16]


def test_depth_maps_batches_images_of_different_sizes(folders, hf_model, tmp_path):
    from fgbg.depth.sidecars import write_depth_sidecars

    bg = folders[0]
    sizes = {codecs.decode_jpeg(p.read_bytes()).shape for p in bg.glob("*.jpg")}
    assert len(sizes) > 1  # the demo photos differ in size: network inputs of several shapes in one batch
    write_depth_sidecars(bg, str(hf_model), batch_size=3, device="cpu", progress=False)
    batched = {p.name: p.read_bytes() for p in bg.glob("*.depth.png")}
    write_depth_sidecars(bg, str(hf_model), batch_size=1, device="cpu", progress=False, overwrite=True)
    assert len(batched) == 3 and batched == {p.name: p.read_bytes() for p in bg.glob("*.depth.png")}


def test_generate_loads_the_network_once_where_the_composites_render_in_its_process(folders, hf_model, tmp_path, monkeypatch):
    """--depth estimator with the renderers here (workers 0, or any count with the network on a GPU, as on a
    GPU machine: faked on this CPU) loads the transformers model once: the bgs' network renders the
    composites; the bytes are those of a worker process that loads its own."""
    import transformers

    from fgbg.make import generate as g

    real, loads = transformers.AutoModelForDepthEstimation.from_pretrained, []

    def counted(*args, **kwargs):
        loads.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForDepthEstimation, "from_pretrained", counted)
    config = estimator_config(hf_model, shard_size=12, depth_device="cpu")
    generate(*folders, tmp_path / "here", config, workers=0, progress=False)
    assert loads == [str(hf_model)]
    with monkeypatch.context() as m:
        m.setattr(g, "network_on_gpu", lambda state: True)  # what decides, on a GPU, that this process renders
        generate(*folders, tmp_path / "gpu", config, workers=None, progress=False)
    assert loads == [str(hf_model)] * 2
    generate(*folders, tmp_path / "worker", config, workers=1, progress=False)  # a spawned worker loads its own
    assert len(loads) == 3 and file_hashes(tmp_path / "here") == file_hashes(tmp_path / "gpu") == file_hashes(tmp_path / "worker")
    assert sum(name.endswith(".tar") for name in file_hashes(tmp_path / "here")) > 1


@pytest.mark.parametrize("backend", ["onnx", "transformers"])
def test_dataset_json_records_where_the_depth_was_made(backend, folders, onnx_model, hf_model, tmp_path):
    model = onnx_model if backend == "onnx" else hf_model
    notes = []
    generate(*folders, tmp_path / "o", estimator_config(model, depth_batch=5), workers=0, progress=False, warn=notes.append)
    meta = read_dataset_json(tmp_path / "o")
    compute = meta["depth"]["depth_model"]["compute"]
    expected = {"device": "cpu", "precision": "fp32"}
    if backend == "onnx":
        expected["providers"] = ["CPUExecutionProvider"]
    assert compute == expected
    assert meta["config"]["depth_batch"] == 5 and meta["config"]["depth_device"] == "auto"
    assert notes == ["note: no CUDA GPU found; running on the CPU"]  # auto, on a machine without a GPU: one line


def test_onnx_on_a_gpu_without_its_provider_falls_back_to_the_cpu_with_one_line(onnx_model):
    from fgbg.engine.devices import Device

    notes = []
    gpu = Device("cuda:0", "a GPU", "bf16")  # as resolve_device gives it on a GPU machine
    estimator = OnnxEstimator(onnx_model, device=gpu, warn=notes.append)
    assert len(notes) == 1 and "no CUDA provider" in notes[0] and "fgbg[gpu]" in notes[0]
    assert not estimator.device.is_cuda
    assert estimator.description["compute"] == {"device": "cpu", "precision": "fp32", "providers": ["CPUExecutionProvider"]}


def test_device_errors_are_one_line_before_anything_is_written(folders, onnx_model, tmp_path, capsys):
    from fgbg.cli import main

    bg, fg = folders
    base = ["generate", "--bg", str(bg), "--fg", str(fg), "--depth", "estimator", "--model", str(onnx_model)]
    assert main([*base, "--out", str(tmp_path / "a"), "--device", "cuda"]) == 2
    assert "--device cuda: no CUDA GPU is visible here" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "b"), "--device", "tpu"]) == 2
    assert "--device 'tpu': expected auto, cpu, cuda or cuda:N" in capsys.readouterr().err
    assert main(["depth-maps", str(bg), "--model", str(onnx_model), "--device", "cuda:3"]) == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not list(bg.glob("*.depth.png"))


def interrupted_store(folders, out, config, monkeypatch, after: int):
    """A store in progress: the run fails at its ``after``-th sample, as a killed run would leave it."""
    from fgbg.make.render import Renderer

    real, calls = Renderer.estimated, []

    def failing(self, *args):
        calls.append(1)
        if len(calls) > after:
            raise RuntimeError("killed")
        return real(self, *args)

    with monkeypatch.context() as m:
        m.setattr(Renderer, "estimated", failing)
        with pytest.raises(Exception, match="killed"):
            generate(*folders, out, config, workers=0, progress=False)
    assert (out / ".work").is_dir() and list((out / "shards").glob("*.tar"))


def test_resume_with_another_batch_size_gives_the_same_bytes(folders, onnx_model, tmp_path, monkeypatch):
    config = estimator_config(onnx_model, depth_batch=2, shard_size=6, depth_device="cpu")
    generate(*folders, tmp_path / "whole", config, workers=0, progress=False)
    out = tmp_path / "resumed"
    interrupted_store(folders, out, config, monkeypatch, after=15)
    summary = generate(*folders, out, estimator_config(onnx_model, depth_batch=16, shard_size=6), workers=0, progress=False)
    assert 0 < summary.resumed_samples < 36
    assert file_hashes(out) == file_hashes(tmp_path / "whole")
    assert read_dataset_json(out)["config"]["depth_batch"] == 16  # the run that finished it


def test_resume_on_another_device_kind_is_refused(folders, onnx_model, tmp_path, monkeypatch):
    out = tmp_path / "o"
    config = estimator_config(onnx_model, shard_size=6)
    interrupted_store(folders, out, config, monkeypatch, after=15)
    state_file = out / ".work" / "state.json"
    state = json.loads(state_file.read_text())
    state["depth_model"]["compute"] = {"device": "cuda", "precision": "fp32", "name": "a GPU",
                                       "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}  # fmt: skip
    state_file.write_text(json.dumps(state))  # as if begun on a GPU machine, resumed here
    before = file_hashes(out)
    with pytest.raises(GenerateError, match=r"depth network ran on cuda \(a GPU\), fp32: resume it there"):
        generate(*folders, out, config, workers=0, progress=False)
    assert file_hashes(out) == before


@pytest.mark.cuda
def test_transformers_on_cuda_gives_depth_close_to_the_cpu(hf_model):
    x = images(8, 96, 128)
    cpu = load_estimator(str(hf_model), device="cpu")
    gpu = load_estimator(str(hf_model), device="cuda")
    assert gpu.device.is_cuda and gpu.description["compute"]["device"] == "cuda"
    assert gpu.description["compute"]["precision"] in ("bf16", "fp16")
    a, b = cpu(x), gpu(x)
    assert b.dtype == np.float32 and b.shape == a.shape == (8, 96, 128)
    for m_cpu, m_gpu in zip(a, b):  # on the store's scale: within 3% of the map's range (bf16 has 8 bits of mantissa)
        lo, hi = robust_range(m_cpu)
        assert np.median(np.abs(m_gpu - m_cpu)) / (hi - lo) < 0.03
        assert np.corrcoef(m_cpu.ravel(), m_gpu.ravel())[0, 1] > 0.98


@pytest.mark.cuda
def test_generate_on_cuda_records_the_gpu_and_repeats_its_bytes(folders, hf_model, tmp_path):
    config = lambda batch: estimator_config(hf_model, depth_batch=batch, shard_size=20, depth_device="cuda")
    for name, batch in (("a", 16), ("b", 16), ("one", 1)):
        generate(*folders, tmp_path / name, config(batch), workers=2, progress=False)
    compute = read_dataset_json(tmp_path / "a")["depth"]["depth_model"]["compute"]
    assert compute["device"] == "cuda" and compute["precision"] in ("bf16", "fp16") and compute["name"]
    assert file_hashes(tmp_path / "a") == file_hashes(tmp_path / "b")  # the same device and batch: the same bytes
    depth = lambda out: np.stack([codecs.decode_png(m["depth.png"]) for _, m in iter_samples(out)]).astype(int)
    assert np.median(np.abs(depth(tmp_path / "a") - depth(tmp_path / "one"))) <= 1  # another batch: the GPU's rounding


def test_mixed_precision_keeps_the_depth_head_in_fp32(hf_model):
    """bf16 autocast (here the CPU's, the same arithmetic as a GPU's) rounds the network's features, not
    its depth values: the tiny GLPN's maps (4.97-5.03) collapsed onto 2-3 levels, 16% of the range off."""
    from fgbg.engine.devices import Device

    fp32 = load_estimator(str(hf_model), device="cpu")
    bf16 = load_estimator(str(hf_model), device=Device("cpu", "CPU", "bf16"))
    assert bf16.description["compute"]["precision"] == "bf16"
    x = images(4, 96, 128)
    inputs = np.stack([fp32.to_input(im) for im in x])
    reference, mixed = fp32.infer(inputs), bf16.infer(inputs)
    assert mixed.dtype == np.float32 and not np.array_equal(mixed, reference)  # the backbone did run in bf16
    for ref, got in zip(reference, mixed):
        lo, hi = robust_range(ref)
        assert len(np.unique(got)) > 1000  # a continuous map, not a few bf16 levels
        assert np.median(np.abs(got - ref)) / (hi - lo) < 0.01
        assert np.corrcoef(ref.ravel(), got.ravel())[0, 1] > 0.999


def test_a_transformers_model_without_transformers_is_one_line_naming_the_extra(folders, tmp_path, capsys, monkeypatch):
    from fgbg.cli import main

    monkeypatch.setitem(sys.modules, "transformers", None)  # README's install: no transformers
    bg, fg = folders
    folder = tmp_path / "depth-anything-v2-small"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    for argv in (
        ["depth-maps", str(bg), "--model", f"{folder}/"],
        ["generate", "--bg", str(bg), "--fg", str(fg), "--out", str(tmp_path / "out"), "--depth", "estimator", "--model", str(folder)],
        ["generate", "--bg", str(bg), "--fg", str(fg), "--out", str(tmp_path / "out"), "--depth", "estimator-per-bg",
         "--model", "depth-anything/Depth-Anything-V2-Small-hf"],
    ):  # fmt: skip
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "pip install 'fgbg[transformers]'" in err[0], err
    assert not (tmp_path / "out").exists() and not list(bg.glob("*.depth.png")) and not (bg / LOCK_FILE).exists()


def test_a_fixed_size_onnx_model_asked_for_another_size_is_one_line_before_anything_is_written(folders, tmp_path, capsys):
    from fgbg.cli import main

    bg, fg = folders
    model = tiny_onnx_depth(tmp_path / "tiny_256.onnx", side=256)
    assert OnnxEstimator(model).preprocess.side == 256  # no preset, no MODEL.json: the model's own size
    out = tmp_path / "out"
    base = ["generate", "--bg", str(bg), "--fg", str(fg), "--out", str(out), "--depth", "estimator", "--model", str(model)]
    assert main([*base, "--depth-preset", "depth-anything"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "takes 256x256 inputs only, but --depth-preset depth-anything gives 518x518" in err[0], err
    (tmp_path / "tiny_256.json").write_text(json.dumps({"size": 128}))
    for argv in (base, ["depth-maps", str(bg), "--model", str(model)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and 'tiny_256.json (size 128, multiple 1) gives 128x128; set "size": 256 in tiny_256.json' in err[0], err
    assert not out.exists() and not list(bg.glob("*.depth.png")) and not (bg / LOCK_FILE).exists()


def test_bench_depth_runs_without_transformers_and_prints_every_mode_it_reports(tmp_path):
    """README's bench_depth figures come from its own lines; on README's install (no transformers) it runs tiny-onnx."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_depth.py"
    hidden = "import runpy, sys; sys.modules['transformers'] = None; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    small = ["--placements", "1", "--bgs", "1", "--fgs", "2", "--size", "64", "--shard-size", "2", "--workers", "0", "--device", "cpu"]
    run = subprocess.run([sys.executable, "-c", hidden, str(script), *small], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("--arch tiny-onnx (transformers is not installed: pip install 'fgbg[transformers]'")
    assert re.search(r"^batch  16: 4 samples .* samples/s$", run.stdout, re.M) and "estimator-per-bg, batch 16: 4 samples" in run.stdout
    refused = subprocess.run([sys.executable, "-c", hidden, str(script), "--arch", "depth-anything-small"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "needs transformers: pip install 'fgbg[transformers]'" in refused.stderr.strip().splitlines()[-1]
