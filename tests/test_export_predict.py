"""ONNX export against torch, and predict on images of any size, with torch and with ONNX only."""

import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from fgbg.cli import main
from fgbg.errors import UserError
from fgbg.learn.export import TOLERANCE, export_onnx
from fgbg.learn.model import ModelConfig, inference_net
from fgbg.learn.predict import find_pairs, predict
from fgbg.learn.train import TrainConfig, train

from .conftest import demo_folders, make_store


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A checkpoint trained for one epoch on a tiny store (32 px)."""
    root = tmp_path_factory.mktemp("run")
    make_store(demo_folders(root, 3, 2), root / "store", size=32, fg_size=16, placements=2, shard_size=1000)
    config = TrainConfig(size=32, epochs=1, batch=8, workers=0, threads=1)
    train(root / "store", root / "run", config, ModelConfig(width=8), progress=False, log=quiet)
    return root


@pytest.fixture(scope="module")
def onnx_file(run):
    path = run / "model.onnx"
    diff = export_onnx(run / "run" / "best.ckpt", path, log=quiet)
    assert diff < TOLERANCE
    return path


def test_onnx_matches_torch_at_any_batch_size(run, onnx_file):
    net, meta = inference_net(run / "run" / "best.ckpt")
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["bg", "fg_bg"]
    assert session.get_modelmeta().custom_metadata_map["fgbg.size"] == "32"
    for batch in (1, 5):
        bg, fg_bg = torch.rand(batch, 3, 32, 32), torch.rand(batch, 3, 32, 32)
        with torch.inference_mode():
            expected = net(bg, fg_bg)
        got = session.run(["mask_logits", "depth"], {"bg": bg.numpy(), "fg_bg": fg_bg.numpy()})
        for g, e in zip(got, expected):
            assert g.shape == (batch, 1, 32, 32)
            assert np.abs(g - e.numpy()).max() < TOLERANCE


def odd_pair(folder, size=(45, 37)):
    """A bg (another size) and a composite of an odd size with a red box pasted."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    bg = (rng.random((50, 50, 3)) * 255).astype(np.uint8)
    composite = np.asarray(Image.fromarray(bg).resize(size)).copy()
    composite[10:25, 12:30] = (230, 20, 20)
    Image.fromarray(bg).save(folder / "room.png")
    Image.fromarray(composite).save(folder / "room_with_box.jpg")
    return folder / "room.png", folder / "room_with_box.jpg"


def test_predict_returns_the_input_size_with_torch_and_onnx(run, onnx_file, tmp_path):
    bg, composite = odd_pair(tmp_path / "in")
    predict(run / "run" / "best.ckpt", bg, composite, tmp_path / "torch", log=quiet)
    predict(onnx_file, bg, composite, tmp_path / "onnx", onnx=True, log=quiet)
    for out in ("torch", "onnx"):
        mask = np.asarray(Image.open(tmp_path / out / "room_with_box.mask.png"))
        depth = Image.open(tmp_path / out / "room_with_box.depth.png")
        side = Image.open(tmp_path / out / "room_with_box.side.png")
        assert mask.shape == (37, 45) and set(np.unique(mask)) <= {0, 255}
        assert depth.size == (45, 37) and depth.mode == "L"
        assert side.size[1] == 37 and side.size[0] > 4 * 45
    d_torch = np.asarray(Image.open(tmp_path / "torch" / "room_with_box.depth.png")).astype(int)
    d_onnx = np.asarray(Image.open(tmp_path / "onnx" / "room_with_box.depth.png")).astype(int)
    assert np.abs(d_torch - d_onnx).max() <= 1


def test_predict_with_onnx_needs_no_torch(onnx_file, tmp_path):
    bg, composite = odd_pair(tmp_path / "in")
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now fails
        "from fgbg.learn.predict import predict\n"
        f"predict({str(onnx_file)!r}, {str(bg)!r}, {str(composite)!r}, {str(tmp_path / 'out')!r}, onnx=True)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert Image.open(tmp_path / "out" / "room_with_box.mask.png").size == (45, 37)


def test_pairs_from_folders(tmp_path):
    for name in ("a.jpg", "b.png", "notes.txt"):
        (tmp_path / "fg_bg").mkdir(exist_ok=True)
        (tmp_path / "fg_bg" / name).write_bytes(b"")
    (tmp_path / "bg").mkdir()
    (tmp_path / "bg" / "a.png").write_bytes(b"")
    assert [f.name for _, f in find_pairs(tmp_path / "bg" / "a.png", tmp_path / "fg_bg")] == ["a.jpg", "b.png"]
    said = []
    assert [(b.name, f.name) for b, f in find_pairs(tmp_path / "bg", tmp_path / "fg_bg", said.append)] == [("a.png", "a.jpg")]
    assert said == ["1 composite has no background of the same name, skipped: b.png"]
    with pytest.raises(UserError, match="nope.jpg: no such file"):
        find_pairs(tmp_path / "nope.jpg", tmp_path / "fg_bg")


def test_predict_on_folders_reports_unpaired_files_and_predicts_the_pairs(run, tmp_path, capsys):
    bg, composite = odd_pair(tmp_path / "bg")
    fg_bg = tmp_path / "fg_bg"
    fg_bg.mkdir()
    composite.rename(fg_bg / "room.jpg")  # pairs with bg/room.png
    for name in ("hall.jpg", "kitchen.jpg", "porch.png"):
        Image.open(fg_bg / "room.jpg").save(fg_bg / name)
    Image.open(bg).save(tmp_path / "bg" / "attic.png")
    code = main(["predict", str(run / "run" / "best.ckpt"), "--bg", str(tmp_path / "bg"), "--fg-bg", str(fg_bg), "--out", str(tmp_path / "p")])
    assert code == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if "skipped" in line] == [
        "3 composites have no background of the same name, skipped: hall.jpg, kitchen.jpg, porch.png",
        "1 background has no composite of the same name, skipped: attic.png",
    ]
    assert sorted(p.name for p in (tmp_path / "p").glob("*.mask.png")) == ["room.mask.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"no \(bg, fg_bg\) pairs"):
        predict(run / "run" / "best.ckpt", tmp_path / "bg", tmp_path / "empty", tmp_path / "q", log=quiet)


def onnx_without_fgbg_metadata(path):
    """A valid ONNX model (bg -> mask_logits, identity) that `fgbg export` did not write."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("bg", TensorProto.FLOAT, [None, 3, None, None])
    y = helper.make_tensor_value_info("mask_logits", TensorProto.FLOAT, [None, 3, None, None])
    graph = helper.make_graph([helper.make_node("Identity", ["bg"], ["mask_logits"])], "plain", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_models_that_are_not_ours_are_one_line_for_evaluate_predict_and_export(run, tmp_path, capsys):
    bg, composite = odd_pair(tmp_path / "in")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(np.random.default_rng(1).bytes(1000))
    plain_onnx = onnx_without_fgbg_metadata(tmp_path / "plain.onnx")
    calls = {
        "evaluate": ["evaluate", str(junk), str(run / "store"), "--out", str(tmp_path / "e")],
        "predict": ["predict", str(junk), "--bg", str(bg), "--fg-bg", str(composite), "--out", str(tmp_path / "p")],
        "export": ["export", "onnx", str(junk), "--out", str(tmp_path / "m.onnx")],
        "export, the old spelling": ["export", str(junk), "--out", str(tmp_path / "m.onnx")],
        "predict onnx": ["predict", str(plain_onnx), "--bg", str(bg), "--fg-bg", str(composite), "--out", str(tmp_path / "p")],
        "predict missing onnx": ["predict", str(tmp_path / "nope.onnx"), "--bg", str(bg), "--fg-bg", str(composite), "--out", str(tmp_path / "p")],
    }
    for what, argv in calls.items():
        assert main(argv) == 2, what
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(tmp_path) in err[0] and "Traceback" not in err[0], (what, err)
    assert not (tmp_path / "p").exists() and not (tmp_path / "m.onnx").exists()


def test_cli_export_and_predict(run, tmp_path, capsys):
    bg, composite = odd_pair(tmp_path / "in")
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", "onnx", str(run / "run" / "best.ckpt"), "--out", str(onnx_path)]) == 0
    assert "max abs difference" in capsys.readouterr().out
    assert main(["export", str(run / "run" / "best.ckpt"), "--onnx", str(onnx_path)]) == 0  # the old spelling
    assert f"`fgbg export onnx {run / 'run' / 'best.ckpt'} --out {onnx_path}`" in capsys.readouterr().err
    assert main(["predict", str(onnx_path), "--onnx", "--bg", str(bg), "--fg-bg", str(composite), "--out", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "room_with_box.side.png").exists()
    assert main(["predict", str(tmp_path / "missing.ckpt"), "--bg", str(bg), "--fg-bg", str(composite), "--out", str(tmp_path / "q")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


# ---------------------------------------------------------------- devices (the GPU itself: tests/test_devices.py, -m cuda)


def composites(folder, n, size=(45, 37)):
    """(bg folder, fg_bg folder) of ``n`` pairs matched by name: random backgrounds, a coloured box pasted on each."""
    rng = np.random.default_rng(1)
    (folder / "bg").mkdir(parents=True, exist_ok=True)
    (folder / "fg_bg").mkdir(exist_ok=True)
    for i in range(n):
        bg = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
        composite = bg.copy()
        y, x = rng.integers(0, 15, 2)
        composite[y : y + 20, x : x + 25] = rng.integers(0, 256, 3)
        Image.fromarray(bg).save(folder / "bg" / f"p{i}.png")
        Image.fromarray(composite).save(folder / "fg_bg" / f"p{i}.png")
    return folder / "bg", folder / "fg_bg"


def assert_same_masks(a, b, share, depth_levels):
    """The predictions in folders ``a`` and ``b``: masks equal on at least ``share`` of the pixels, depth within ``depth_levels`` of 255."""
    names = sorted(p.name for p in a.glob("*.mask.png"))
    assert names and names == sorted(p.name for p in b.glob("*.mask.png"))
    masks = [np.stack([np.asarray(Image.open(folder / n)) for n in names]) for folder in (a, b)]
    assert (masks[0] == masks[1]).mean() >= share
    depth = [np.stack([np.asarray(Image.open(folder / n.replace("mask", "depth"))) for n in names]).astype(int) for folder in (a, b)]
    assert np.abs(depth[0] - depth[1]).max() <= depth_levels


def test_evaluate_says_where_it_ran_and_takes_the_batch_size(run, tmp_path, capsys, monkeypatch):
    from fgbg.engine import devices

    monkeypatch.setattr(devices, "cuda_device_count", lambda: 0)  # a machine without a GPU, whatever this one has
    ckpt, store = str(run / "run" / "best.ckpt"), str(run / "store")
    assert main(["evaluate", ckpt, store, "--out", str(tmp_path / "auto"), "--split", "all", "--quiet"]) == 0
    assert [line for line in capsys.readouterr().err.splitlines() if line.strip()] == [f"note: {devices.NO_CUDA_NOTE}"]
    assert main(["evaluate", ckpt, store, "--out", str(tmp_path / "b5"), "--split", "all", "--device", "cpu", "--batch-size", "5", "--quiet"]) == 0
    assert capsys.readouterr().err == ""  # the CPU asked for: nothing to say
    how = json.loads((tmp_path / "b5" / "evaluation.json").read_text())
    assert (how["device"], how["precision"], how["batch_size"], how["loader_workers"]) == ("cpu", "fp32", 5, 0)
    assert json.loads((tmp_path / "auto" / "evaluation.json").read_text())["batch_size"] == 64
    assert "`cpu`, fp32, batch 5" in (tmp_path / "b5" / "report.md").read_text()
    by_64, by_5 = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("auto", "b5"))
    rows_64, rows_5 = by_64.pop("robustness"), by_5.pop("robustness")
    assert by_5 == pytest.approx(by_64, abs=1e-6) and by_5["n_images"] == 24
    assert [r.pop("bg") for r in rows_5] == [r.pop("bg") for r in rows_64] and rows_5 == [pytest.approx(r, abs=1e-6) for r in rows_64]
    assert main(["evaluate", ckpt, store, "--out", str(tmp_path / "b0"), "--batch-size", "0"]) == 2
    assert "--batch-size must be at least 1" in capsys.readouterr().err


def test_the_autocast_path_gives_fp32_metrics_close_to_fp32(run, tmp_path):
    """The GPU's code path (autocast, outputs cast to fp32 before the metrics) run with CPU bf16 autocast."""
    from fgbg.engine.devices import Device
    from fgbg.learn.data import StoreDataset, load_stats
    from fgbg.learn.evaluate import evaluate, evaluation_indices, predict_dataset
    from fgbg.learn.model import read_checkpoint

    bf16 = Device("cpu", "CPU, bf16 autocast", "bf16")
    ckpt, store = run / "run" / "best.ckpt", run / "store"
    fp32 = evaluate(ckpt, store, tmp_path / "fp32", split="all", log=quiet, progress=False, device="cpu", robustness="none")
    mixed = evaluate(ckpt, store, tmp_path / "bf16", split="all", log=quiet, progress=False, device=bf16, robustness="none")
    assert mixed == pytest.approx(fp32, abs=0.01) and mixed != fp32  # the network ran in bf16, and it barely shows
    assert json.loads((tmp_path / "bf16" / "evaluation.json").read_text())["precision"] == "bf16"
    net, meta = inference_net(ckpt)
    dataset = StoreDataset(store, evaluation_indices(store, meta, "all"), 32, load_stats(store), normalized=False)
    per_image = predict_dataset(net, dataset, 0.5, batch=10, device=bf16)
    assert {k: v.dtype for k, v in per_image.items() if k != "index"} == dict.fromkeys(per_image.keys() - {"index"}, torch.float32)
    assert read_checkpoint(ckpt)["state_dict"]  # evaluate left the checkpoint as it was


def test_predict_under_autocast_writes_the_fp32_masks(run, tmp_path):
    from fgbg.engine.devices import Device

    bg, fg_bg = composites(tmp_path / "in", 6)
    checkpoint = run / "run" / "best.ckpt"
    predict(checkpoint, bg, fg_bg, tmp_path / "fp32", log=quiet, device="cpu")
    predict(checkpoint, bg, fg_bg, tmp_path / "bf16", log=quiet, device=Device("cpu", "CPU, bf16 autocast", "bf16"), batch_size=4)
    assert_same_masks(tmp_path / "fp32", tmp_path / "bf16", 0.99, depth_levels=4)


def test_predict_onnx_on_a_gpu_without_the_cuda_provider_says_so_and_runs_on_the_cpu(onnx_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    bg, fg_bg = composites(tmp_path / "in", 3)
    base = ["predict", str(onnx_file), "--bg", str(bg), "--fg-bg", str(fg_bg), "--quiet"]
    assert main([*base, "--out", str(tmp_path / "cpu"), "--device", "cpu"]) == 0
    assert capsys.readouterr().err == ""
    assert main([*base, "--out", str(tmp_path / "cuda"), "--device", "cuda", "--batch-size", "2"]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "note: ONNX Runtime has no CUDA provider here; running the ONNX model on the CPU (pip install 'fgbg[gpu]' (onnxruntime-gpu) to run ONNX models on the GPU)"
    ]
    assert "(ONNX Runtime CPUExecutionProvider)" in captured.out
    for name in ("p0.mask.png", "p1.depth.png", "p2.side.png"):
        assert (tmp_path / "cuda" / name).read_bytes() == (tmp_path / "cpu" / name).read_bytes()


def test_export_takes_a_checkpoint_saved_on_a_gpu_in_bf16(run, tmp_path, monkeypatch):
    """A checkpoint whose tensors were saved from cuda:0 (as Lightning writes on a GPU), weights in bf16."""
    from fgbg.learn.model import read_checkpoint

    ckpt = read_checkpoint(run / "run" / "best.ckpt")
    ckpt["state_dict"] = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    gpu_ckpt = tmp_path / "gpu.ckpt"
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
    torch.save(ckpt, gpu_ckpt)
    monkeypatch.undo()
    seen = set()
    torch.load(gpu_ckpt, map_location=lambda storage, location: seen.add(location) or storage, weights_only=True)
    assert seen == {"cuda:0"}  # the file names the GPU, as one saved there does
    assert export_onnx(gpu_ckpt, tmp_path / "gpu.onnx", log=quiet) < TOLERANCE
    net, _ = inference_net(gpu_ckpt)
    assert {p.dtype for p in net.parameters()} == {torch.float32} and {p.device.type for p in net.parameters()} == {"cpu"}


class Differencing:
    """A stand-in model of size S: the mask probability is 1 where |fg_bg - bg| summed over channels > 0.3, the depth fg_bg's red.
    Pointwise, so tiling and padding must give exactly what it gives on the whole image."""

    size = 16

    def __init__(self):
        self.shapes = []

    def __call__(self, bg, fg_bg):
        self.shapes.append(bg.shape)
        return (np.abs(fg_bg - bg).sum(1) > 0.3).astype(np.float32), fg_bg[:, 0].copy()


def test_predict_keeps_the_aspect_pads_the_short_side_and_tiles_what_is_larger():
    from fgbg.learn.predict import predict_tiled, tile_starts

    rng = np.random.default_rng(1)
    bg = rng.random((3, 20, 53)).astype(np.float32)
    fg_bg = bg.copy()
    fg_bg[:, 5:15, 30:41] = 1 - fg_bg[:, 5:15, 30:41]  # an object
    model = Differencing()
    mask, depth = predict_tiled(model, bg, fg_bg, batch_size=4)
    expected = (np.abs(fg_bg - bg).sum(0) > 0.3).astype(np.float32)
    assert mask.shape == depth.shape == (20, 53)
    np.testing.assert_allclose(mask, expected, atol=1e-6)
    np.testing.assert_allclose(depth, fg_bg[0], atol=1e-6)
    # 20 x 53 at S = 16: 3 rows and 6 columns of 16 x 16 tiles overlapping by half, 4 to a call
    assert tile_starts(20, 16) == [0, 4] and tile_starts(53, 16) == [0, 8, 16, 24, 32, 37]
    assert all(s[1:] == (3, 16, 16) for s in model.shapes) and sum(s[0] for s in model.shapes) == 12
    # smaller than S: padded, the edge replicated (background to a model: no difference there)
    small, _ = predict_tiled(model, bg[:, :9, :12], fg_bg[:, :9, :12])
    assert small.shape == (9, 12) and model.shapes[-1] == (1, 3, 16, 16)


def test_predict_default_scale_fits_the_longer_side_without_stretching(tmp_path, monkeypatch):
    import fgbg.learn.predict as p

    model = Differencing()
    monkeypatch.setattr(p, "make_predictor", lambda *a, **k: (model, "a stand-in"))
    bg = np.full((60, 160, 3), 60, np.uint8)
    composite = bg.copy()
    composite[20:40, 100:130] = 250
    Image.fromarray(bg).save(tmp_path / "wide.png")
    Image.fromarray(composite).save(tmp_path / "wide_obj.png")
    p.predict("m.ckpt", tmp_path / "wide.png", tmp_path / "wide_obj.png", tmp_path / "out", log=quiet)
    assert model.shapes == [(1, 3, 16, 16)]  # 160 x 60 seen at 16 x 6, padded to 16 x 16: one tile
    mask = np.asarray(Image.open(tmp_path / "out" / "wide_obj.mask.png")) > 0
    ys, xs = np.nonzero(mask)
    assert mask.shape == (60, 160) and abs(ys.mean() - 30) < 6 and abs(xs.mean() - 115) < 12  # where the object is, not stretched
    p.predict("m.ckpt", tmp_path / "wide.png", tmp_path / "wide_obj.png", tmp_path / "tiled", log=quiet, scale=0.5)
    assert model.shapes[1:] == [(16, 3, 16, 16), (11, 3, 16, 16)]  # 80 x 30: 3 rows x 9 columns of tiles, 16 to a call
    assert main(["predict", "m.ckpt", "--bg", str(tmp_path / "wide.png"), "--fg-bg", str(tmp_path / "wide_obj.png"), "--out", str(tmp_path / "x"), "--scale", "0"]) == 2
