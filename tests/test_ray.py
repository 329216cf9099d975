"""``--engine ray`` gives what ``--engine local`` gives: the same bytes, stats and findings, after faults too.

Every Ray process runs inside a private network (and pid) namespace that the test makes
itself (``unshare -rnpf``, loopback only; see tests/ray_runner.py): there Ray binds
127.0.0.1, and nothing outlives the runner. One runner invocation does all the Ray work on a
simulated 2-node cluster (``ray.cluster_utils.Cluster``, one CPU per node), plus one driver
that starts a local Ray instance of its own; the local-engine references are made here.
Depth labelling runs on a CPU depth actor there (a tiny ONNX model), with a driver that cannot
load the network itself; on GPUs it is the same code with ``num_gpus`` per actor. What a GPU actor
would record, and the resumes that it refuses, are checked here without Ray, on stand-in actors.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

import pytest

from fgbg.cli import main as fgbg
from fgbg.depth.testing import tiny_onnx_depth, tiny_transformers_depth
from fgbg.inspect.verify import verify
from fgbg.store.lock import LOCK_FILE

from .conftest import demo_folders
from .ray_runner import quiet

ROOT = Path(__file__).resolve().parents[1]
RUNNER_TIMEOUT = 300
FORMATS = ("wds", "folder", "zip")
SMALL = ["--size", "64", "--fg-size", "32", "--placements", "2", "--shard-size", "7", "--quiet"]
# 3 x 3 x 2 x 40 = 720 samples in 36 shards, ~5 s on 2 cores: long enough to interrupt mid-run
BIG = ["--size", "160", "--fg-size", "80", "--placements", "40", "--shard-size", "20", "--quiet"]
SHARDS_BIG = 36
INTERRUPTS = 10  # Ctrl-C of a driver on the cluster, one after another on one store
OBJECTS = ["--objects", "2:4", "--format", "wds"]  # several objects per composite, each drawn by its sample's generator


@lru_cache(maxsize=1)
def namespace_refusal() -> str | None:
    """Why a private network namespace cannot be made here (None: it can)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare and ip (util-linux, iproute2) to run Ray on loopback only"
    probe = subprocess.run(["unshare", "-rnpf", "--mount-proc", "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`unshare -rnpf` is not permitted here ({probe.stderr.strip() or probe.returncode}); Ray must not bind a real interface"
    return None


pytestmark = pytest.mark.skipif(__import__("importlib").util.find_spec("ray") is None, reason="needs ray (pip install 'fgbg[ray]')")


def in_namespace(spec: dict, folder: Path) -> dict:
    """Run tests/ray_runner.py on ``spec`` inside a private network + pid namespace; its results."""
    spec = {**spec, "result": str(folder / "result.json")}
    (folder / "spec.json").write_text(json.dumps(spec))
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    cmd = ["unshare", "-rnpf", "--mount-proc", "sh", "-c", 'ip link set lo up && "$0" "$@"',
           sys.executable, "-m", "tests.ray_runner", str(folder / "spec.json")]  # fmt: skip
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=RUNNER_TIMEOUT,
                              env={**os.environ, "RAY_TMPDIR": ray_tmp})  # fmt: skip
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, quiet(proc.stderr)[-4000:]
    return json.loads((folder / "result.json").read_text())


def snapshot(store: Path) -> dict[str, str | None]:
    """Every file and folder of a store: files' bytes (as hex), folders None; the lock file by name only."""
    return {
        p.relative_to(store).as_posix(): None if p.is_dir() or p.name == LOCK_FILE else p.read_bytes().hex()
        for p in sorted(store.rglob("*"))
    }


def generate_args(folders, out: Path, size: list[str], *extra: str) -> list[str]:
    bg, fg = folders
    return ["generate", "--bg", str(bg), "--fg", str(fg), "--out", str(out), *size, *extra]


def damage(store: Path) -> None:
    """Garbage in the middle of a shard: checksum, member and decoding findings."""
    tar = store / "shards" / "shard-000001.tar"
    data = bytearray(tar.read_bytes())
    data[2000:6000] = b"\xff" * 4000
    tar.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The local references (made here) and the Ray runs (in one namespace), by name."""
    if namespace_refusal() is not None:
        pytest.skip(namespace_refusal())
    root = tmp_path_factory.mktemp("ray")
    folders = demo_folders(root)
    local, ray = root / "local", root / "ray"
    for fmt in FORMATS:
        assert fgbg(generate_args(folders, local / fmt, SMALL, "--format", fmt, "--workers", "2")) == 0
    assert fgbg(generate_args(folders, local / "big", BIG, "--workers", "2")) == 0
    assert fgbg(generate_args(folders, local / "objects", SMALL, *OBJECTS, "--workers", "2")) == 0
    network = ["--depth", "estimator", "--depth-model", str(tiny_onnx_depth(root / "tiny.onnx")), "--depth-batch", "4"]
    assert fgbg(generate_args(folders, local / "estimator", SMALL, *network, "--workers", "2")) == 0
    maps = {engine: shutil.copytree(folders[0], root / f"maps_{engine}") for engine in ("local", "ray")}
    assert fgbg(["depth-maps", str(maps["local"]), "--model", network[3], "--device", "cpu", "--batch-size", "3", "--quiet"]) == 0
    assert fgbg(["stats", str(local / "wds"), "--quiet"]) == 0
    shutil.copytree(local / "wds", root / "damaged")
    damage(root / "damaged")
    ray_big = lambda name, *extra: generate_args(folders, ray / name, BIG, "--engine", "ray", *extra)  # noqa: E731
    steps = [
        *({"cli": generate_args(folders, ray / fmt, SMALL, "--format", fmt, "--engine", "ray"), "spread": True}
          for fmt in FORMATS),
        {"cli": generate_args(folders, ray / "objects", SMALL, *OBJECTS, "--engine", "ray")},
        {"cli": generate_args(folders, ray / "estimator", SMALL, *network, "--engine", "ray"), "no_driver_network": True},
        {"cli": ["depth-maps", str(maps["ray"]), "--model", network[3], "--engine", "ray", "--batch-size", "2", "--quiet"],
         "no_driver_network": True},  # on a CPU actor; the images read and the sidecars written by the driver
        {"cli": ["stats", str(ray / "wds"), "--engine", "ray", "--quiet"]},
        {"verify": str(ray / "wds")},
        {"verify": str(root / "damaged")},
        {"cli": ray_big("killed_worker"), "kill_worker_writing": str(ray / "killed_worker")},
        {"driver": ray_big("killed_driver"), "store": str(ray / "killed_driver"), "signal": "SIGKILL", "after_records": 1},
        {"driver": ray_big("killed_driver", "--ray-address", "local"), "store": str(ray / "killed_driver"),
         "signal": "SIGINT", "after_records": 2},  # a driver with a Ray instance of its own
        {"driver": ray_big("killed_driver"), "store": str(ray / "killed_driver")},
        *({"driver": ray_big("interrupted"), "store": str(ray / "interrupted"), "signal": "SIGINT", "after_records": 1}
          for _ in range(INTERRUPTS)),  # each resumes the last and is interrupted after one more shard
        {"driver": ray_big("interrupted"), "store": str(ray / "interrupted")},
    ]  # fmt: skip
    result = in_namespace({"cluster": {"nodes": 2}, "trace": str(root / "trace"), "steps": steps}, root)
    names = [*FORMATS, "objects", "estimator", "depth_maps", "stats", "verify", "verify_damaged", "killed_worker", "sigkill", "sigint", "resumed"]
    done = dict(zip(names, result["steps"]))
    done["interrupts"], done["after_interrupts"] = result["steps"][len(names) : -1], result["steps"][-1]
    return {"root": root, "local": local, "ray": ray, **done}


@pytest.mark.parametrize("fmt", FORMATS)
def test_generate_on_a_two_node_cluster_is_byte_identical_to_the_local_engine(runs, fmt):
    assert runs[fmt]["rc"] == 0
    ray_store, local_store = runs["ray"] / fmt, runs["local"] / fmt
    assert snapshot(ray_store) == snapshot(local_store) and len(snapshot(local_store)) > 10
    nodes = {p.name.split("-")[0] for p in (runs["root"] / "trace" / fmt).iterdir()}
    assert len(nodes) == 2, f"only {len(nodes)} node(s) rendered shards"


def test_several_objects_on_ray_are_byte_identical_to_the_local_engine(runs):
    assert runs["objects"]["rc"] == 0
    assert snapshot(runs["ray"] / "objects") == snapshot(runs["local"] / "objects")
    assert json.loads((runs["ray"] / "objects" / "dataset.json").read_text())["members"][3] == "instances.png"


def test_estimator_labelling_on_ray_actors_is_byte_identical_to_the_local_engine(runs):
    assert runs["estimator"]["rc"] == 0  # with a driver that cannot load the network: bgs and composites on the actor
    assert snapshot(runs["ray"] / "estimator") == snapshot(runs["local"] / "estimator")
    depth = json.loads((runs["ray"] / "estimator" / "dataset.json").read_text())["depth"]
    assert depth["source"] == "estimator"
    assert depth["depth_model"]["compute"] == {"device": "cpu", "precision": "fp32", "providers": ["CPUExecutionProvider"]}


def test_depth_maps_on_ray_actors_writes_the_local_engines_sidecars(runs):
    assert runs["depth_maps"]["rc"] == 0  # with a driver that cannot load the network
    sidecars = {engine: {p.name: p.read_bytes() for p in (runs["root"] / f"maps_{engine}").glob("*.depth.png")}
                for engine in ("local", "ray")}  # fmt: skip
    assert sidecars["ray"] == sidecars["local"] and len(sidecars["local"]) == 3


def test_stats_and_verify_on_ray_equal_the_local_engine(runs):
    assert runs["stats"]["rc"] == 0
    local_stats = json.loads((runs["local"] / "wds" / "stats.json").read_text())
    assert json.loads((runs["ray"] / "wds" / "stats.json").read_text()) == local_stats
    assert runs["verify"]["report"] == str(verify(runs["local"] / "wds")).replace(str(runs["local"]), str(runs["ray"]))
    assert "every check passed" in runs["verify"]["report"]
    damaged = str(verify(runs["root"] / "damaged", workers=2))
    assert runs["verify_damaged"]["report"] == damaged and "problem(s) found" in damaged


def test_a_ray_worker_killed_while_writing_a_shard_is_retried_and_the_store_is_byte_identical(runs):
    run = runs["killed_worker"]
    assert run["rc"] == 0 and run["killed"] is not None, run
    assert snapshot(runs["ray"] / "killed_worker") == snapshot(runs["local"] / "big")


def test_kill_9_then_ctrl_c_of_the_driver_then_a_rerun_gives_the_uninterrupted_store(runs):
    sigkill, sigint, resumed = runs["sigkill"], runs["sigint"], runs["resumed"]
    assert sigkill["rc"] == -9
    assert 1 <= sigint["records_before"] < SHARDS_BIG, sigint
    assert sigint["rc"] == 130, sigint  # a driver with a Ray instance of its own
    assert "Traceback" not in sigint["stderr"] and "rerun the same command to resume" in sigint["stderr"]
    assert resumed["rc"] == 0 and sigint["records_before"] < resumed["records_before"] < SHARDS_BIG, resumed["stderr"]
    assert snapshot(runs["ray"] / "killed_driver") == snapshot(runs["local"] / "big")




def test_ctrl_c_of_a_driver_exits_130_every_time_and_the_store_resumes_to_the_uninterrupted_one(runs):
    interrupts, last = runs["interrupts"], runs["after_interrupts"]
    assert len(interrupts) == INTERRUPTS
    for i, run in enumerate(interrupts):  # each saw its store grow by a shard before its Ctrl-C: mid-run
        assert run["rc"] == 130 and "Traceback" not in run["stderr"], (i, run)
        assert "rerun the same command to resume" in run["stderr"], (i, run)
    before = [run["records_before"] for run in interrupts] + [last["records_before"]]
    assert all(a < b for a, b in zip(before, before[1:])) and before[-1] < SHARDS_BIG, before  # each kept what it recorded
    assert last["rc"] == 0, last["stderr"]
    assert snapshot(runs["ray"] / "interrupted") == snapshot(runs["local"] / "big")


@pytest.mark.cuda
def test_gpu_actors_label_as_the_local_engine_does_on_the_gpu_whatever_cuda_index_was_asked(tmp_path):
    if namespace_refusal() is not None:
        pytest.skip(namespace_refusal())
    folders = demo_folders(tmp_path)
    model = str(tiny_transformers_depth(tmp_path / "tiny-glpn"))  # torch: on the GPU without onnxruntime-gpu
    network = ["--depth", "estimator", "--depth-model", model, "--depth-batch", "4"]
    assert fgbg(generate_args(folders, tmp_path / "local", SMALL, *network, "--device", "cuda")) == 0
    maps = {engine: shutil.copytree(folders[0], tmp_path / f"maps_{engine}") for engine in ("local", "ray")}
    assert fgbg(["depth-maps", str(maps["local"]), "--model", model, "--device", "cuda", "--quiet"]) == 0
    on_gpu_actors = [  # cuda:1 of a one-GPU node: the actor's own GPU, cuda:0 inside it
        generate_args(folders, tmp_path / "ray", SMALL, *network, "--device", "cuda:1", "--engine", "ray"),
        ["depth-maps", str(maps["ray"]), "--model", model, "--device", "cuda:1", "--engine", "ray", "--quiet"],
    ]
    spec = {"cluster": {"nodes": 1, "cpus": 2, "gpus": 1}, "steps": [{"cli": argv, "no_driver_network": True} for argv in on_gpu_actors]}
    assert [step["rc"] for step in in_namespace(spec, tmp_path)["steps"]] == [0, 0]
    assert snapshot(tmp_path / "ray") == snapshot(tmp_path / "local")
    compute = json.loads((tmp_path / "ray" / "dataset.json").read_text())["depth"]["depth_model"]["compute"]
    assert compute["device"] == "cuda" and compute["precision"] in ("bf16", "fp16") and compute["name"]
    sidecars = {engine: {p.name: p.read_bytes() for p in maps[engine].glob("*.depth.png")} for engine in maps}
    assert sidecars["ray"] == sidecars["local"] and len(sidecars["local"]) == 3


# ---------------------------------------------------------------- depth actors, without Ray

GPU_COMPUTE = {"device": "cuda", "precision": "bf16", "name": "NVIDIA H100 80GB HBM3",
               "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}  # fmt: skip


class StandInActors:
    """Ray's ActorEstimator as the driver sees it: a local CPU network whose maps are ``gain`` times its own,
    described with ``compute`` (what actors on a GPU would report about themselves)."""

    def __init__(self, model: str, compute: dict, gain: float = 1.0):
        from fgbg.depth.estimator import load_estimator

        self.net, self.gain = load_estimator(model, device="cpu"), gain
        self.description = {**self.net.description, "compute": compute}
        self.device, self.threads = self.net.device, 1

    def to_input(self, image):
        return self.net.to_input(image)

    def infer(self, inputs):
        return self.net.infer(inputs) * self.gain

    def to_map(self, raw, hw):
        return self.net.to_map(raw, hw)


@pytest.mark.parametrize(
    ("device", "gpus", "cluster_gpus", "expected"),
    [("cuda:3", 1, 4, (1, "cuda:0")), ("cuda", None, 2, (1.0, "cuda:0")), ("auto", 0.5, 1, (0.5, "cuda:0")),
     ("auto", None, 0, (0.0, "cpu")), ("auto", 0, 8, (0, "cpu")), ("cpu", None, 8, (0.0, "cpu"))],
)  # fmt: skip
def test_an_actor_runs_on_the_gpu_ray_gave_it_whatever_cuda_index_was_asked(device, gpus, cluster_gpus, expected):
    from fgbg.engine.ray_engine import actor_placement

    assert actor_placement(device, gpus, cluster_gpus) == expected


@pytest.mark.parametrize(
    ("device", "gpus", "cluster_gpus", "message"),
    [("cuda", None, 0, "the Ray cluster has no GPUs"), ("cuda:1", 0, 4, "--gpus-per-worker 0 makes CPU actors"),
     ("auto", 1, 0, "the Ray cluster has no GPUs"), ("cpu", 1, 4, "would hold GPUs they do not use")],
)  # fmt: skip
def test_a_gpu_asked_for_where_an_actor_has_none_is_refused_in_one_line(device, gpus, cluster_gpus, message):
    from fgbg.engine.ray_engine import actor_placement
    from fgbg.errors import UserError

    with pytest.raises(UserError, match=message):
        actor_placement(device, gpus, cluster_gpus)


def test_actors_on_different_kinds_of_gpu_are_refused(tmp_path):
    from fgbg.depth.estimator import load_estimator
    from fgbg.engine.ray_engine import agreed_description
    from fgbg.errors import UserError

    cpu = load_estimator(str(tiny_onnx_depth(tmp_path / "tiny.onnx")), device="cpu").description
    assert agreed_description([cpu, dict(cpu)]) == cpu
    with pytest.raises(UserError, match="the depth actors run on different devices"):
        agreed_description([cpu, {**cpu, "compute": GPU_COMPUTE}])


def test_a_depth_actor_that_cannot_load_the_model_reports_the_estimators_own_error(tmp_path):
    from fgbg.depth.estimator import EstimatorError
    from fgbg.engine.ray_engine import DepthActor

    actor = DepthActor(str(tmp_path / "missing.onnx"), None, "cpu")  # Ray would lose the type of an __init__ error
    with pytest.raises(EstimatorError, match="missing.onnx: depth model file not found"):
        actor.describe()


def test_a_depth_actor_given_a_gpu_that_torch_cannot_see_says_so_in_one_line(tmp_path, monkeypatch):
    import fgbg.engine.devices
    from fgbg.engine.devices import DeviceError
    from fgbg.engine.ray_engine import DepthActor

    monkeypatch.setattr(fgbg.engine.devices, "cuda_device_count", lambda: 0)  # a CPU-only torch on a GPU node
    actor = DepthActor(str(tiny_onnx_depth(tmp_path / "tiny.onnx")), None, "cuda:0")
    with pytest.raises(DeviceError, match="holds a Ray GPU but torch sees none there"):
        actor.describe()


def test_the_record_and_the_bg_scales_are_the_actors_and_a_resume_on_another_device_kind_is_refused(tmp_path, monkeypatch):
    import numpy as np

    import fgbg.make.generate as g
    from fgbg.config import GenerateConfig
    from fgbg.depth.estimator import bg_scales
    from fgbg.depth.network import label_images, prepare_network_depth
    from fgbg.errors import UserError

    folders, model = demo_folders(tmp_path), str(tiny_onnx_depth(tmp_path / "tiny.onnx"))
    config = GenerateConfig(size=64, fg_size=32, placements=2, shard_size=7, depth="estimator", depth_model=model, depth_device="cpu")
    assets = g.load_inputs(*folders, config, "fail", print)
    actors = StandInActors(model, GPU_COMPUTE, gain=3.0)
    network = prepare_network_depth(config, assets, None, actors)
    assert network["depth_model"]["compute"] == GPU_COMPUTE
    expected = bg_scales(label_images(actors, assets.bg, 4), "bg")
    np.testing.assert_allclose(network["depth_scales"], expected, rtol=1e-6)
    assert network["depth_scales"] != prepare_network_depth(config, assets)["depth_scales"]  # not the driver's network

    out = tmp_path / "store"
    g.generate(*folders, out, config, workers=0, progress=False)  # made here, on the CPU
    ray_generate = lambda: g.generate(*folders, out, config, progress=False, engine="ray")  # noqa: E731
    monkeypatch.setattr(g, "ray_labeller", lambda *args: StandInActors(model, GPU_COMPUTE))
    with pytest.raises(UserError, match=r"ran on cpu, fp32: resume it there.*would run on cuda \(NVIDIA H100"):
        ray_generate()
    cpu_compute = json.loads((out / "dataset.json").read_text())["depth"]["depth_model"]["compute"]
    monkeypatch.setattr(g, "ray_labeller", lambda *args: StandInActors(model, cpu_compute))
    assert ray_generate().already_complete  # CPU actors: the same run
