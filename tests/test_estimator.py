"""Depth networks: ONNX and transformers backends on tiny models built here, scales, errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fgbg import codecs
from fgbg.make.assets import load_assets
from fgbg.config import GenerateConfig
from fgbg.depth.estimator import EstimatorError, OnnxEstimator, load_estimator, robust_range
from fgbg.depth.testing import tiny_onnx_depth, tiny_transformers_depth, tiny_u2net
from fgbg.make.generate import GenerateError, generate
from fgbg.make.plan import Plan
from fgbg.make.render import Renderer
from fgbg.store import iter_samples, read_dataset_json

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
