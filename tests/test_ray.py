"""``--engine ray`` gives what ``--engine local`` gives: the same bytes, stats and findings, after faults too.

Every Ray process runs inside a private network (and pid) namespace that the test makes
itself (``unshare -rnpf``, loopback only; see tests/ray_runner.py): there Ray binds
127.0.0.1, and nothing outlives the runner. One runner invocation does all the Ray work on a
simulated 2-node cluster (``ray.cluster_utils.Cluster``, one CPU per node), plus one driver
that starts a local Ray instance of its own; the local-engine references are made here.
Depth labelling runs on a CPU depth actor there (a tiny ONNX model); on GPUs it is the same code
with ``num_gpus`` per actor.
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
from fgbg.depth.testing import tiny_onnx_depth
from fgbg.inspect.verify import verify
from fgbg.store.layout import LOCK_FILE

from .conftest import demo_folders
from .ray_runner import quiet

ROOT = Path(__file__).resolve().parents[1]
RUNNER_TIMEOUT = 300
FORMATS = ("wds", "folder", "zip")
SMALL = ["--size", "64", "--fg-size", "32", "--placements", "2", "--shard-size", "7", "--quiet"]
# 3 x 3 x 2 x 40 = 720 samples in 36 shards, ~5 s on 2 cores: long enough to interrupt mid-run
BIG = ["--size", "160", "--fg-size", "80", "--placements", "40", "--shard-size", "20", "--quiet"]
SHARDS_BIG = 36


@lru_cache(maxsize=1)
def namespace_refusal() -> str | None:
    """Why a private network namespace cannot be made here (None: it can)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare and ip (util-linux, iproute2) to run Ray on loopback only"
    probe = subprocess.run(["unshare", "-rnpf", "--mount-proc", "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`unshare -rnpf` is not permitted here ({probe.stderr.strip() or probe.returncode}); Ray must not bind a real interface"
    return None


pytestmark = [
    pytest.mark.skipif(__import__("importlib").util.find_spec("ray") is None, reason="needs ray (pip install 'fgbg[ray]')"),
    pytest.mark.skipif(namespace_refusal() is not None, reason=str(namespace_refusal())),
]


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
    root = tmp_path_factory.mktemp("ray")
    folders = demo_folders(root)
    local, ray = root / "local", root / "ray"
    for fmt in FORMATS:
        assert fgbg(generate_args(folders, local / fmt, SMALL, "--format", fmt, "--workers", "2")) == 0
    assert fgbg(generate_args(folders, local / "big", BIG, "--workers", "2")) == 0
    network = ["--depth", "estimator", "--depth-model", str(tiny_onnx_depth(root / "tiny.onnx")), "--depth-batch", "4"]
    assert fgbg(generate_args(folders, local / "estimator", SMALL, *network, "--workers", "2")) == 0
    assert fgbg(["stats", str(local / "wds"), "--quiet"]) == 0
    shutil.copytree(local / "wds", root / "damaged")
    damage(root / "damaged")
    ray_big = lambda name, *extra: generate_args(folders, ray / name, BIG, "--engine", "ray", *extra)  # noqa: E731
    steps = [
        *({"cli": generate_args(folders, ray / fmt, SMALL, "--format", fmt, "--engine", "ray"), "spread": True}
          for fmt in FORMATS),
        {"cli": generate_args(folders, ray / "estimator", SMALL, *network, "--engine", "ray")},  # on a CPU actor
        {"cli": ["stats", str(ray / "wds"), "--engine", "ray", "--quiet"]},
        {"verify": str(ray / "wds")},
        {"verify": str(root / "damaged")},
        {"cli": ray_big("killed_worker"), "kill_worker_writing": str(ray / "killed_worker")},
        {"driver": ray_big("killed_driver"), "store": str(ray / "killed_driver"), "signal": "SIGKILL", "after_records": 1},
        {"driver": ray_big("killed_driver", "--ray-address", "local"), "store": str(ray / "killed_driver"),
         "signal": "SIGINT", "after_records": 2},  # a driver with a Ray instance of its own
        {"driver": ray_big("killed_driver"), "store": str(ray / "killed_driver")},
    ]  # fmt: skip
    result = in_namespace({"cluster": {"nodes": 2}, "trace": str(root / "trace"), "steps": steps}, root)
    names = [*FORMATS, "estimator", "stats", "verify", "verify_damaged", "killed_worker", "sigkill", "sigint", "resumed"]
    return {"root": root, "local": local, "ray": ray, **dict(zip(names, result["steps"]))}


@pytest.mark.parametrize("fmt", FORMATS)
def test_generate_on_a_two_node_cluster_is_byte_identical_to_the_local_engine(runs, fmt):
    assert runs[fmt]["rc"] == 0
    ray_store, local_store = runs["ray"] / fmt, runs["local"] / fmt
    assert snapshot(ray_store) == snapshot(local_store) and len(snapshot(local_store)) > 10
    nodes = {p.name.split("-")[0] for p in (runs["root"] / "trace" / fmt).iterdir()}
    assert len(nodes) == 2, f"only {len(nodes)} node(s) rendered shards"


def test_estimator_labelling_on_ray_actors_is_byte_identical_to_the_local_engine(runs):
    assert runs["estimator"]["rc"] == 0
    assert snapshot(runs["ray"] / "estimator") == snapshot(runs["local"] / "estimator")
    assert json.loads((runs["local"] / "estimator" / "dataset.json").read_text())["depth"]["source"] == "estimator"


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
    assert sigint["rc"] == 130 and 1 <= sigint["records_before"] < SHARDS_BIG, sigint
    assert "Traceback" not in sigint["stderr"] and "rerun the same command to resume" in sigint["stderr"]
    assert resumed["rc"] == 0 and sigint["records_before"] < resumed["records_before"] < SHARDS_BIG, resumed["stderr"]
    assert snapshot(runs["ray"] / "killed_driver") == snapshot(runs["local"] / "big")

