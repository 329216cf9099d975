"""ONNX export against torch, and predict on images of any size, with torch and with ONNX only."""

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
        "export": ["export", str(junk), "--out", str(tmp_path / "m.onnx")],
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
    assert main(["export", str(run / "run" / "best.ckpt"), "--onnx", str(onnx_path)]) == 0
    assert "max abs difference" in capsys.readouterr().out
    assert main(["predict", str(onnx_path), "--onnx", "--bg", str(bg), "--fg-bg", str(composite), "--out", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "room_with_box.side.png").exists()
    assert main(["predict", str(tmp_path / "missing.ckpt"), "--bg", str(bg), "--fg-bg", str(composite), "--out", str(tmp_path / "q")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
