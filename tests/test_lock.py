"""One writer at a time: a second writer is refused at once and touches nothing; a kill frees the lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fgbg.cli import main
from fgbg.config import GenerateConfig
from fgbg.depth.sidecars import write_depth_sidecars
from fgbg.errors import StoreBusy
from fgbg.inspect.verify import verify
from fgbg.make.cutout import cutout_folder
from fgbg.make.generate import generate
from fgbg.store.layout import CRASH_AT_ENV, CRASH_SIGNAL_ENV, CRASH_STEPS_ENV
from fgbg.store.lock import LOCK_FILE
from fgbg.store.lock import store_lock

from .conftest import SMALL


def generate_cmd(folders, out: Path) -> list[str]:
    bg, fg = folders
    return [sys.executable, "-m", "fgbg", "generate", "--bg", str(bg), "--fg", str(fg), "--out", str(out),
            "--size", "32", "--fg-size", "16", "--placements", "2", "--shard-size", "4", "--workers", "0",
            "--no-progress"]  # fmt: skip


def files(folder: Path) -> dict[str, bytes | None]:
    return {p.relative_to(folder).as_posix(): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


def test_a_second_generate_is_refused_at_once_and_the_first_completes(folders, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, CRASH_STEPS_ENV: str(tmp_path / "steps"), CRASH_AT_ENV: "1", CRASH_SIGNAL_ENV: "SIGSTOP"}
    # the first writer stops itself at its first durable-write step, holding the lock, a temporary half-written
    first = subprocess.Popen(generate_cmd(folders, out), env=env, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _, status = os.waitpid(first.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status)
        before = files(out)
        assert any(name.endswith(".tmp") for name in before)
        second = subprocess.run(generate_cmd(folders, out), capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        lines = second.stderr.splitlines()
        assert len(lines) == 1 and f"being written by pid {first.pid} (fgbg generate" in lines[0]
        assert files(out) == before  # the second writer removed nothing, wrote nothing
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    stdout, stderr = first.communicate(timeout=60)
    assert first.returncode == 0, stderr
    assert verify(out, workers=0).ok


def test_a_killed_writer_leaves_no_lock_behind(folders, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, CRASH_STEPS_ENV: str(tmp_path / "steps"), CRASH_AT_ENV: "20"}
    killed = subprocess.Popen(generate_cmd(folders, out), env=env, start_new_session=True, stderr=subprocess.DEVNULL)
    assert killed.wait(timeout=60) == -signal.SIGKILL
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == killed.pid  # its record stays, its lock does not
    assert not (out / "dataset.json").exists()
    rerun = subprocess.run(generate_cmd(folders, out), capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert verify(out, workers=0).ok


def test_generate_depth_maps_and_cutout_refuse_a_locked_folder_and_write_nothing(folders, tmp_path):
    bg, fg = folders
    out = tmp_path / "out"
    with store_lock(out, "generate"):
        with pytest.raises(StoreBusy, match=rf"being written by pid {os.getpid()} \(fgbg generate"):
            generate(bg, fg, out, GenerateConfig(**SMALL), workers=0, progress=False)
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]
    with store_lock(bg, "generate"):
        before = files(bg)
        # refused before the model is even loaded: this one does not exist
        with pytest.raises(StoreBusy, match="being written by"):
            write_depth_sidecars(bg, str(tmp_path / "no-such-model.onnx"))
        assert main(["depth-maps", str(bg), "--model", str(tmp_path / "no-such-model.onnx")]) == 2
        assert files(bg) == before
    with store_lock(out, "generate"):
        with pytest.raises(StoreBusy, match="being written by"):
            cutout_folder(fg, out, tmp_path / "no-such-model.onnx")
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]


def test_every_verb_that_reads_a_store_names_a_running_generate_and_touches_nothing(folders, tmp_path, capsys):
    """README: a store being written says `being written by pid N (fgbg generate ...)`, to a reader too,
    not "an unfinished store ... rerun the fgbg generate command" (which would start a second writer)."""
    out = tmp_path / "out"
    env = {**os.environ, CRASH_STEPS_ENV: str(tmp_path / "steps"), CRASH_AT_ENV: "12", CRASH_SIGNAL_ENV: "SIGSTOP"}  # in its shards
    running = subprocess.Popen(generate_cmd(folders, out), env=env, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _, status = os.waitpid(running.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status) and (out / ".work").is_dir() and not (out / "dataset.json").exists()
        before = files(out)
        readers = [["stats"], ["verify"], ["show", "--out", str(tmp_path / "x.png")], ["card"], ["train", "--out", str(tmp_path / "run")],
                   ["evaluate", str(tmp_path / "best.ckpt"), "--out", str(tmp_path / "eval")]]  # fmt: skip
        for verb, *rest in readers:
            argv = [verb, *rest[:1], str(out), *rest[1:]] if verb == "evaluate" else [verb, str(out), *rest]
            assert main(argv) == 2, verb
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and f"store {out} is being written by pid {running.pid} (fgbg generate" in err[0], err
        with pytest.raises(StoreBusy, match=f"being written by pid {running.pid}"):  # the library's one reader too
            from fgbg.inspect.stats import write_stats

            write_stats(out, workers=0, progress=False)
        assert files(out) == before and not (tmp_path / "run").exists() and not (tmp_path / "x.png").exists()
    finally:
        os.killpg(running.pid, signal.SIGCONT)
    assert running.wait(timeout=60) == 0
    assert main(["stats", str(out), "--workers", "0", "--no-progress"]) == 0  # once it is done, the store reads
