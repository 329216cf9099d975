"""The Ray part of tests/test_ray.py and benchmarks/bench_generate.py, run inside a private network namespace.

    unshare -rnpf --mount-proc sh -c 'ip link set lo up && python -m tests.ray_runner SPEC.json'

Ray binds the machine's external address unless it is alone in a network namespace with
only loopback up; there it binds 127.0.0.1, so nothing of a test is reachable from outside.
The pid namespace (-p) ends every Ray process with the runner.

SPEC.json: {"result": PATH, "cluster": {"nodes": N, "cpus": C, "gpus": G} or null, "trace": FOLDER
or null, "steps": [STEP, ...]}; the runner starts the cluster (``ray.cluster_utils.Cluster``, C CPUs
(default 1) per node, G GPUs (default 0) on the head node) or nothing (the CLI's ``--ray-address auto`` then starts a local instance), runs
the steps in order and writes {"steps": [RESULT, ...]} to ``result``. Steps:

- {"cli": ARGV, "spread": bool}: ``fgbg.cli.main(ARGV)`` here -> {"rc", "seconds"}; with
  "spread", every node of the cluster renders a shard of it (see ``traced_render_shard``);
- {"cli": ARGV, "kill_worker_writing": STORE}: the same, while a watcher SIGKILLs the first
  worker process seen writing a shard's temporary file under STORE -> also {"killed": PID};
- {"cli": ARGV, "no_driver_network": true}: the same, with the driver unable to load a depth
  network (``generate`` and ``depth-maps`` must use their Ray actors for every map);
- {"verify": STORE, "engine": "ray"}: ``fgbg.inspect.verify.verify`` -> {"report": str};
- {"driver": ARGV, "env": {...}, "signal": "SIGKILL" | "SIGINT" | null, "after_records": N,
  "store": STORE}: ``python -m fgbg ARGV`` as its own process group (RAY_ADDRESS set to the
  cluster's), sent the signal once STORE holds N more finished shards than before
  -> {"rc", "stderr", "records_before"}.

With "trace", every generated shard leaves FOLDER/STORE_NAME/NODE_ID-SHARD (which node rendered it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

TRACE_ENV = "FGBG_TEST_RAY_TRACE"
BARRIER_SECONDS = 30.0
POLL_SECONDS = 0.002


def traced_render_shard(shared, task):
    """``render_shard``, leaving a file that names the Ray node that ran it.

    With "spread" (TRACE/STORE_NAME.spread holds the node count), a shard waits (seconds at
    most) until every node has started one: a node holds its
    one CPU meanwhile, so Ray must place the next shards on the others, however fast the
    first node would have been on its own (on a loaded machine it could do all of them
    before another node's worker process is up).
    """
    import ray

    from fgbg.make.render import render_shard

    store, index = Path(task[0]), task[1]
    folder = Path(os.environ[TRACE_ENV]) / store.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{ray.get_runtime_context().get_node_id()}-{index}").touch()
    spread = folder.parent / f"{store.name}.spread"
    nodes = int(spread.read_text()) if spread.exists() else 1
    deadline = time.monotonic() + BARRIER_SECONDS
    while len({p.name.split("-")[0] for p in folder.iterdir()}) < nodes and time.monotonic() < deadline:
        time.sleep(0.01)
    return render_shard(shared, task)


def records(store: Path) -> int:
    return len(list((store / ".work").glob("shard-*.json")))


def kill_first_writer(store: Path, stop: threading.Event, killed: list) -> None:
    """SIGKILL the first process seen with a shard's temporary file open (named NAME.PID.tmp)."""
    shards = store / "shards"
    while not stop.is_set():
        for tmp in shards.glob("*.tmp") if shards.is_dir() else ():
            pid = int(tmp.name.split(".")[-2])
            if pid != os.getpid():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(POLL_SECONDS)


def run_cli(step: dict, spec: dict) -> dict:
    from fgbg.cli import main

    if step.get("spread"):
        out = Path(step["cli"][step["cli"].index("--out") + 1])
        Path(spec["trace"]).mkdir(parents=True, exist_ok=True)
        Path(spec["trace"], f"{out.name}.spread").write_text(str(spec["cluster"]["nodes"]))
    started = time.monotonic()
    stop, killed, watcher = threading.Event(), [], None
    if "kill_worker_writing" in step:
        watcher = threading.Thread(target=kill_first_writer, args=(Path(step["kill_worker_writing"]), stop, killed))
        watcher.start()
    try:
        with no_network_here() if step.get("no_driver_network") else contextlib.nullcontext():
            rc = main(step["cli"])
    finally:
        stop.set()
        if watcher:
            watcher.join()
    return {"rc": rc, "seconds": time.monotonic() - started, "killed": killed[0] if killed else None}


@contextlib.contextmanager
def no_network_here():
    """This process (the driver) fails at loading a depth network meanwhile; Ray actors load theirs themselves."""
    import fgbg.depth.network
    import fgbg.depth.sidecars
    import fgbg.make.generate

    def refuse(*args, **kwargs):
        raise AssertionError("the driver loaded a depth network: its maps would not be the actors'")

    modules = (fgbg.depth.network, fgbg.depth.sidecars, fgbg.make.generate)
    kept = [m.load_estimator for m in modules]
    for m in modules:
        m.load_estimator = refuse
    try:
        yield
    finally:
        for m, load in zip(modules, kept):
            m.load_estimator = load


def listen_to_ctrl_c() -> None:
    """In a child before it runs: SIGINT at its default, as in a terminal's foreground job. A child inherits an
    ignored SIGINT (a test run started in the background by a script), and Python then installs no handler:
    the Ctrl-C the test sends would be lost and the run would end normally."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_driver(step: dict, address: str | None) -> dict:
    store = Path(step["store"])
    before = records(store) if store.exists() else 0
    env = {**os.environ, **({"RAY_ADDRESS": address} if address else {}), **step.get("env", {})}
    proc = subprocess.Popen([sys.executable, "-m", "fgbg", *step["driver"]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True, preexec_fn=listen_to_ctrl_c)  # fmt: skip
    if step.get("signal"):
        while proc.poll() is None and (not store.exists() or records(store) < before + step["after_records"]):
            time.sleep(POLL_SECONDS)
        if proc.poll() is None:
            os.killpg(proc.pid, getattr(signal, step["signal"]))  # as a terminal's Ctrl-C: the driver's group
    _, err = proc.communicate(timeout=300)
    return {"rc": proc.returncode, "stderr": quiet(err), "records_before": before}


def quiet(stderr: str) -> str:
    """stderr without Ray's notes about the namespace having no route out."""
    return "\n".join(line for line in stderr.splitlines() if "network_util.cc" not in line)


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    if spec.get("trace"):
        os.environ[TRACE_ENV] = spec["trace"]
        import fgbg.make.generate

        fgbg.make.generate.render_shard = traced_render_shard
    cluster = None
    if spec.get("cluster"):
        import ray
        from ray.cluster_utils import Cluster

        cpus, gpus = spec["cluster"].get("cpus", 1), spec["cluster"].get("gpus", 0)
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus, "num_gpus": gpus, "include_dashboard": False})
        for _ in range(spec["cluster"]["nodes"] - 1):
            cluster.add_node(num_cpus=cpus)
        ray.init(address=cluster.address, logging_level=logging.WARNING)
    try:
        run_steps(spec, cluster.address if cluster else None)
    finally:
        if cluster:
            ray.shutdown()
            cluster.shutdown()  # else the runner exits 1


def run_steps(spec: dict, address: str | None) -> None:
    results = []
    for step in spec["steps"]:
        if "cli" in step:
            results.append(run_cli(step, spec))
        elif "verify" in step:
            from fgbg.inspect.verify import verify

            results.append({"report": str(verify(Path(step["verify"]), engine=step.get("engine", "ray"), progress=False))})
        else:
            results.append(run_driver(step, address))
        Path(spec["result"]).write_text(json.dumps({"steps": results}))


if __name__ == "__main__":
    main(sys.argv[1])
