"""Training: the loss falls, a run writes what it promises, a resume is exact, evaluate and the demo."""

import dataclasses
import json
import re
import time

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from fgbg.cli import main
from fgbg.config import GenerateConfig
from fgbg.learn.data import StoreDataset, make_loader
from fgbg.demo import demo_train, run_demo
from fgbg.learn.evaluate import METRIC_KEYS, evaluate
from fgbg.make.generate import generate
from fgbg.learn.losses import MaskDepthLoss
from fgbg.learn.model import ModelConfig, TwoHeadUNet, load_checkpoint
from fgbg.learn.callbacks import StopAfterEpochs
from fgbg.learn.module import one_cycle
from fgbg.learn.perturb import BgAugConfig
from fgbg.learn.train import TrainConfig, TrainError, plan_loading, train

from .conftest import make_store

TINY = dict(size=32, fg_size=16, placements=2, shard_size=5)
# one thread: the suite may share the cores with other work, and two OpenMP threads on one free core crawl
FAST = dict(size=32, batch=8, workers=0, log_images=4, threads=1)
SMALL_NET = ModelConfig(width=8)


@pytest.fixture
def store(folders, tmp_path):
    out = tmp_path / "store"
    generate(*folders, out, GenerateConfig(**TINY), workers=1, progress=False)
    return out


def quiet(_: str) -> None:
    pass


def assert_planned_by_the_patches(said: list[str], run) -> None:
    """The plans of a budget run follow its test's patches: 1e-7 s per sample, BUDGET_SHARE 0.5."""
    assert any("at 10000000 samples/s measured" in line for line in said), said
    steps = next(int(m[1]) for line in said if (m := re.search(r"re-planned after epoch 1 .*: (\d+) steps", line)))
    meta = json.loads((run / "run.json").read_text())
    budget, pace = meta["train"]["max_minutes"] * 60, meta["schedule"]["seconds_per_step"]
    assert steps <= budget * 0.5 / pace + 1, said  # half the budget at epoch 0's pace (0.95 of it: ~1.9x the steps)


def test_loss_decreases_over_a_few_steps(store):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    dataset = StoreDataset(store)
    batch = dataset.prepare(next(iter(make_loader(dataset, batch=16, shuffle=True))))  # in float, normalised
    net, loss = TwoHeadUNet(SMALL_NET), MaskDepthLoss()
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    x = torch.cat([batch["bg"], batch["fg_bg"]], 1)
    values = []
    for _ in range(30):
        total = loss(net(x), batch["mask"], batch["depth"]).total
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        values.append(total.item())
    assert values[-1] < 0.8 * values[0] and min(values[-5:]) < min(values[:5])


def state_of(path):
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return ckpt["state_dict"], ckpt["optimizer_states"][0]["state"], ckpt["global_step"], ckpt["epoch"]


def test_a_run_writes_checkpoints_logs_and_summary_and_resumes_exactly(store, tmp_path):
    config = TrainConfig(epochs=2, **FAST)
    straight = train(store, tmp_path / "a", config, SMALL_NET, progress=False, log=quiet)
    train(store, tmp_path / "b", config, SMALL_NET, progress=False, log=quiet, callbacks=[StopAfterEpochs(1)])
    assert state_of(tmp_path / "b" / "last.ckpt")[2] == 3  # 24 train samples // 8 = 3 steps per epoch
    with pytest.raises(TrainError, match="--resume"):
        train(store, tmp_path / "b", config, SMALL_NET, progress=False, log=quiet)
    resumed = train(store, tmp_path / "b", config, SMALL_NET, resume=True, progress=False, log=quiet)

    weights_a, optim_a, step_a, epoch_a = state_of(tmp_path / "a" / "last.ckpt")
    weights_b, optim_b, step_b, epoch_b = state_of(tmp_path / "b" / "last.ckpt")
    assert step_a == step_b == 6 and epoch_a == epoch_b
    for k in weights_a:
        torch.testing.assert_close(weights_b[k], weights_a[k], rtol=0, atol=0, msg=k)
    for i in optim_a:
        torch.testing.assert_close(optim_b[i]["exp_avg"], optim_a[i]["exp_avg"], rtol=0, atol=0)
    assert resumed["best"] == straight["best"] and resumed["global_step"] == 6

    run = tmp_path / "a"
    assert {"best.ckpt", "last.ckpt", "run.json", "summary.json", "tb"} <= {p.name for p in run.iterdir()}
    assert list((run / "tb").glob("events.out.tfevents.*"))
    meta = json.loads((run / "run.json").read_text())
    assert meta["split"]["by"] == "bg" and len(meta["split"]["held_out"]) == 1 and meta["split"]["n_val"] == 12
    assert meta["schedule"]["total_steps"] == 6 and meta["parameters"] < 1_000_000
    assert 0 < meta["baseline"]["threshold"]
    # the bg input perturbed apart from the composite by default, its settings in run.json and the checkpoint
    assert meta["train"]["bg_aug"] == "real" and meta["bg_augment"] == json.loads(json.dumps(dataclasses.asdict(BgAugConfig())))
    assert BgAugConfig.from_dict(torch.load(run / "best.ckpt", weights_only=True)["hyper_parameters"]["meta"]["bg_augment"]) == BgAugConfig()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_epoch"] in (1, 2) and summary["train_samples_per_s"] > 0
    net, ckpt_meta = load_checkpoint(run / "best.ckpt")
    assert net.config == SMALL_NET and ckpt_meta["split"] == meta["split"]

    # evaluate: stable keys, the same numbers as validation during training, report and grids
    out = tmp_path / "eval"
    result = evaluate(run / "best.ckpt", store, out, log=quiet)
    saved = json.loads((out / "metrics.json").read_text())
    names = ["mask_iou", "mask_dice", "baseline_mask_iou", "depth_rmse", "depth_absrel", "depth_delta1", "depth_ssim"]
    assert list(saved) == [*names, "n_images", "size", "split", "store", "robustness"] == [*METRIC_KEYS, "robustness"] and saved["n_images"] == 12 and saved["size"] == 32
    assert saved["split"] == "val" and saved["store"] == str(store.resolve())  # the run's own store: its held-out split
    assert set(names) <= set(straight["best"])  # validation logs the same names
    assert saved["mask_iou"] == pytest.approx(straight["best"]["mask_iou"], abs=1e-5)
    assert saved["baseline_mask_iou"] == pytest.approx(straight["best"]["baseline_mask_iou"], abs=1e-5)
    assert saved["depth_rmse"] == pytest.approx(straight["best"]["depth_rmse"], abs=1e-5)
    report = (out / "report.md").read_text()
    assert "baseline" in report and "worst.png" in report and result == saved
    assert (out / "random.png").stat().st_size > 0 and (out / "worst.png").stat().st_size > 0


def test_epochs_are_counted_from_1_in_progress_lines_validation_history_and_summary(store, tmp_path, capsys):
    said = []
    summary = train(store, tmp_path / "run", TrainConfig(epochs=2, **FAST), SMALL_NET, progress=None, log=said.append)
    progress = capsys.readouterr().err  # a log, not a terminal: progress lines
    assert re.search(r"^epoch 1/2, step 1/6", progress, re.M) and re.search(r"^epoch 2/2, step 6/6", progress, re.M), progress
    assert (summary["last"]["epoch"], summary["last"]["step"]) == (2, 6)  # the second epoch's validation, as its lines said
    assert summary["best"]["epoch"] == summary["best_epoch"] in (1, 2)
    assert f"best epoch {summary['best_epoch']}: val" in said[-1]


def test_cli_train_and_budget(store, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", str(store), "--out", str(run), "--size", "32", "--batch", "8", "--workers", "0", "--width", "8", "--threads", "1", "--quiet"]
    assert main([*args, "--max-minutes", "0.05", "--val", "fg"]) == 0
    meta = json.loads((run / "run.json").read_text())
    assert meta["split"]["by"] == "fg" and meta["train"]["epochs"] >= 1
    assert "M parameters" in capsys.readouterr().out
    assert main(args) == 2  # a UserError
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"fgbg train {store} --out {run} --resume" in err[0]
    # --bg-aug none trains on the composite's own bg, as before
    assert main([*args[:2], "--out", str(tmp_path / "none"), *args[4:], "--epochs", "1", "--bg-aug", "none"]) == 0
    meta = json.loads((tmp_path / "none" / "run.json").read_text())
    assert meta["train"]["bg_aug"] == "none" and meta["bg_augment"] is None


@pytest.mark.parametrize("flags, named", [(["--epochs", "0"], "--epochs"), (["--val-fraction", "1.5"], "--val-fraction"),
                                          (["--max-minutes", "inf"], "--max-minutes"), (["--width", "1"], "--width")])  # fmt: skip
def test_impossible_train_numbers_are_one_line_before_any_work(tmp_path, capsys, flags, named):
    assert main(["train", str(tmp_path / "store"), "--out", str(tmp_path / "run"), *flags]) == 2  # checked before the store is read
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0] and not (tmp_path / "run").exists()


def test_a_schedule_moved_mid_run_continues_where_it_was():
    """Re-sizing a one-cycle schedule after 40 steps gives, from then on, the learning rate and
    momentum of a schedule that had the new size from the start."""

    def run(first_total: int) -> tuple:
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
        schedule = one_cycle(opt, 3e-3, first_total)
        for step in range(60):
            if step == 40:
                schedule = one_cycle(opt, 3e-3, 100, done=40)
            opt.step()
            schedule.step()
        return opt.param_groups[0]["lr"], opt.param_groups[0]["betas"]

    assert run(300) == run(100)


def test_a_budget_run_replans_from_its_first_epoch_and_ends_annealed(store, tmp_path, monkeypatch):
    monkeypatch.setattr("fgbg.learn.budget.seconds_per_sample", lambda *a, **k: 1e-7)  # a plan far too optimistic
    monkeypatch.setattr("fgbg.learn.budget.BUDGET_SHARE", 0.5)  # tiny epochs: per-epoch checkpoint writes weigh a lot
    said = []
    config = TrainConfig(epochs=None, max_minutes=0.1, **FAST)
    summary = train(store, tmp_path / "run", config, SMALL_NET, progress=False, log=said.append)
    assert any("re-planned after epoch 1 " in line for line in said)
    assert_planned_by_the_patches(said, tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    ckpt = torch.load(tmp_path / "run" / "last.ckpt", map_location="cpu", weights_only=False)
    total = meta["schedule"]["total_steps"]
    assert ckpt["hyper_parameters"]["meta"]["schedule"] == meta["schedule"]
    assert summary["global_step"] == total == ckpt["lr_schedulers"][0]["total_steps"]  # the schedule ended the run
    assert ckpt["lr_schedulers"][0]["last_epoch"] == total  # every step of the one cycle taken: fully annealed


def test_demo_trains_and_evaluates(tmp_path, capsys):
    config = GenerateConfig(size=32, fg_size=16, placements=1, flip=False)
    run_demo(tmp_path / "demo", workers=1, config=config, train_minutes=0.05, train_size=32)
    printed = capsys.readouterr().out
    assert "differencing baseline" in printed and "tensorboard --logdir" in printed
    metrics = json.loads((tmp_path / "demo" / "run" / "eval" / "metrics.json").read_text())
    assert set(metrics) == {*METRIC_KEYS, "robustness"}


def test_the_demo_passes_progress_to_training_and_evaluation(tmp_path, monkeypatch):
    import fgbg.learn.evaluate
    import fgbg.learn.train

    seen = {}
    monkeypatch.setattr(fgbg.learn.train, "train", lambda *a, progress=None, **kw: seen.update(train=progress))
    metrics = dict.fromkeys(METRIC_KEYS, 0.5)
    monkeypatch.setattr(fgbg.learn.evaluate, "evaluate", lambda *a, progress=None, **kw: seen.update(evaluate=progress) or metrics)
    demo_train(tmp_path / "store", tmp_path / "run", 0.1, 32, log=quiet, progress=False)
    assert seen == {"train": False, "evaluate": False}


class SlowSteps(Callback):
    """A slow machine: every training step takes ``seconds`` longer."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        time.sleep(self.seconds)


class LearningRates(Callback):
    """The learning rate each training step used."""

    def __init__(self) -> None:
        self.used: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.used.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_a_budget_far_shorter_than_an_epoch_still_anneals_and_the_run_ends_within_it(folders, tmp_path, monkeypatch):
    """120 steps of 0.5 s make an epoch of a minute; the budget is 8 s, start-up and validation included,
    and the plan before training (timed on random inputs) thinks the steps 40% faster than they are."""
    store = make_store(folders, tmp_path / "store", **{**TINY, "placements": 10})  # 180 samples: 120 train
    monkeypatch.setattr("fgbg.learn.budget.seconds_per_sample", lambda *a, **k: 0.3)
    budget, margin = 8.0, 2.0  # seconds; the margin: the last step and validation after the clock's last check
    config = TrainConfig(epochs=None, max_minutes=budget / 60, val_samples=5, **{**FAST, "batch": 1})
    started, rates = time.perf_counter(), LearningRates()
    summary = train(store, tmp_path / "run", config, SMALL_NET, progress=False, log=quiet, callbacks=[SlowSteps(0.5), rates])
    wall = time.perf_counter() - started
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    ckpt = torch.load(tmp_path / "run" / "last.ckpt", map_location="cpu", weights_only=False)
    total, per_epoch = meta["schedule"]["total_steps"], meta["schedule"]["steps_per_epoch"]
    assert per_epoch == 120 and 3 < total < 16  # a schedule of a few steps, not of an epoch
    assert summary["global_step"] == total == ckpt["lr_schedulers"][0]["total_steps"]
    assert ckpt["lr_schedulers"][0]["last_epoch"] == total  # the schedule's last step was taken
    final_lr = config.lr / 25 / 1e4  # OneCycleLR: max_lr / div_factor / final_div_factor
    assert len(rates.used) == total and rates.used[-1] == pytest.approx(final_lr, rel=1e-6)  # annealed to the end
    assert rates.used[-2] < 0.2 * config.lr  # over its last steps: cut early enough, not in one jump at the end
    assert wall <= budget + margin and summary["train_seconds"] <= budget + margin
    assert meta["validation"] == {"samples": 5, "of": 60, "seed": 0} and summary["best"]["n_images"] == 5
    assert summary["evaluate"] == f"fgbg evaluate {tmp_path / 'run' / 'best.ckpt'} {store} --out {tmp_path / 'run' / 'eval'}"


class ScriptedPace(Callback):
    """A machine whose pace changes under the run: the training clock (:func:`fgbg.learn.callbacks.now`)
    runs ``extra`` seconds ahead for each of the first ``slow`` steps (a busy machine, a cold start),
    then at the real pace of the steps (fast: a few milliseconds). Nothing sleeps."""

    def __init__(self, slow: int, extra: float) -> None:
        self.slow, self.extra, self.added = slow, extra, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step < self.slow:
            self.added += self.extra

    def now(self) -> float:
        return time.perf_counter() + self.added


def test_a_budget_run_whose_steps_speed_up_lengthens_its_schedule_uses_the_budget_and_ends_annealed(folders, tmp_path, monkeypatch):
    """The plan is timed as slow as the first steps (0.5 s each): a schedule of about 14 steps, much
    shorter than an epoch of 120; then the steps run 50x faster. The run must re-plan longer, use
    most of its 8 s and still end on the schedule's last, annealed step."""
    store = make_store(folders, tmp_path / "store", **{**TINY, "placements": 10})  # 180 samples: 120 train
    pace = ScriptedPace(slow=6, extra=0.5)
    monkeypatch.setattr("fgbg.learn.callbacks.now", pace.now)
    monkeypatch.setattr("fgbg.learn.budget.seconds_per_sample", lambda *a, **k: 0.5)
    budget, said, rates = 8.0, [], LearningRates()
    config = TrainConfig(epochs=None, max_minutes=budget / 60, val_samples=5, **{**FAST, "batch": 1})
    summary = train(store, tmp_path / "run", config, SMALL_NET, progress=False, log=said.append, callbacks=[pace, rates])
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    ckpt = torch.load(tmp_path / "run" / "last.ckpt", map_location="cpu", weights_only=False)
    planned = int(next(m[1] for line in said if (m := re.search(r"a schedule of (\d+) steps", line))))
    total = meta["schedule"]["total_steps"]
    assert planned < 20 and total > 3 * planned, said  # lengthened from the measured pace
    assert summary["train_seconds"] >= 0.8 * budget, summary  # the budget is used, not a third of it
    assert summary["global_step"] == total == ckpt["lr_schedulers"][0]["total_steps"]
    final_lr = config.lr / 25 / 1e4  # OneCycleLR: max_lr / div_factor / final_div_factor
    assert len(rates.used) == total and rates.used[-1] == pytest.approx(final_lr, rel=1e-6)  # annealed to the end


def test_loader_workers_are_sized_to_the_free_shared_memory_and_said_in_one_line(store):
    from fgbg.engine.devices import resolve_training

    cpu, said = resolve_training("cpu"), []
    t = {"workers": 15, "batch": 8, "size": 32}
    assert plan_loading(store, t, cpu, said.append, lambda: 2**30) == (15, 4) and said == []  # fits: as asked, nothing said
    # a batch ahead: 8 + 64 (validation's) samples of 32 x 32 x 8 bytes (bg, fg_bg, mask, 8-bit depth), 580 KiB
    assert plan_loading(store, t, cpu, said.append, lambda: 12 * 2**20) == (10, 1)  # 6 MiB of room: 10 of them
    [line] = said
    assert line.startswith("/dev/shm has 12 MiB free: 10 loader workers x 1 batch ahead instead of 15 x 4") and "--shm-size=0.1g" in line
    with pytest.raises(TrainError) as e:
        plan_loading(store, t, cpu, said.append, lambda: 2**20)
    assert "/dev/shm has 1 MiB free" in str(e.value) and "--shm-size" in str(e.value) and "--workers 0" in str(e.value)
    assert plan_loading(store, {**t, "workers": 0}, cpu, said.append, lambda: 0) == (0, 4)  # loading in the training process


class LoaderShapes(Callback):
    def on_train_start(self, trainer, pl_module):
        self.loaders = [(d.num_workers, d.prefetch_factor) for d in (trainer.train_dataloader, trainer.val_dataloaders)]
        trainer.should_stop = True


def test_a_small_dev_shm_trains_with_fewer_workers_or_is_refused_in_one_line_before_any_work(store, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("fgbg.learn.train.shm_free_bytes", lambda: 2 * 2**20)  # a container's /dev/shm, in miniature: 1 MiB of room
    said, shapes = [], LoaderShapes()
    train(store, tmp_path / "run", TrainConfig(epochs=1, **{**FAST, "workers": 3}), SMALL_NET, progress=False, log=said.append, callbacks=[shapes])
    assert shapes.loaders == [(1, 1), (1, 1)]  # 580 KiB a batch ahead: one worker, one batch, for both loaders
    assert sum(line.startswith("/dev/shm has 2 MiB free: 1 loader worker x 1 batch ahead instead of 3 x 4") for line in said) == 1
    monkeypatch.setattr("fgbg.learn.train.shm_free_bytes", lambda: 2**20)
    assert main(["train", str(store), "--out", str(tmp_path / "refused"), "--workers", "2", "--size", "32", "--batch", "8", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/dev/shm has 1 MiB free" in err[0] and "--workers 0" in err[0]
    assert not (tmp_path / "refused").exists()


def test_accelerator_gpu_without_a_gpu_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("fgbg.engine.devices.cuda_device_count", lambda: 0)  # also on a GPU machine
    assert main(["train", str(tmp_path / "store"), "--out", str(tmp_path / "run"), "--accelerator", "gpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--accelerator gpu" in err[0] and "fgbg train: error:" in err[0]
    assert not (tmp_path / "run").exists()


def test_the_cpu_run_records_its_devices_and_a_resume_may_change_them(store, tmp_path):
    run = tmp_path / "run"
    train(store, run, TrainConfig(epochs=1, **FAST), SMALL_NET, progress=False, log=quiet, callbacks=[StopAfterEpochs(1)])
    meta = json.loads((run / "run.json").read_text())
    assert meta["devices"] == {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "world_size": 1, "strategy": "auto",
                               "precision": "32-true", "name": meta["devices"]["name"], "batch_per_device": 8, "global_batch": 8}  # fmt: skip


@pytest.mark.cuda
def test_a_gpu_run_trains_in_mixed_precision_and_evaluates_like_its_validation(store, tmp_path):
    run = tmp_path / "run"
    summary = train(store, run, TrainConfig(epochs=2, **{**FAST, "workers": 2}), SMALL_NET, progress=False, log=quiet)
    meta = json.loads((run / "run.json").read_text())
    assert meta["devices"]["accelerator"] == "gpu" and meta["devices"]["precision"] in ("bf16-mixed", "16-mixed")
    assert summary["global_step"] == 6
    single = evaluate(run / "best.ckpt", store, tmp_path / "eval", device="cuda", log=quiet)
    assert summary["best"]["mask_iou"] == pytest.approx(single["mask_iou"], abs=5e-3)  # both in bf16 on the GPU


@pytest.mark.parametrize("env", [{"LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "4"},  # torchrun --nnodes 2 --nproc-per-node 2
                                 {"SLURM_NTASKS_PER_NODE": "2(x2)", "SLURM_NNODES": "2", "SLURM_JOB_NAME": "fgbg"}])  # fmt: skip
def test_torchrun_and_slurm_say_how_many_processes_and_machines(monkeypatch, env):
    from fgbg.learn.train import training_devices

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    got = training_devices(TrainConfig(epochs=1, accelerator="cpu"))
    assert (got.devices, got.num_nodes, got.world_size, got.strategy) == (2, 2, 4, "ddp")  # what Lightning checks against them
    given = training_devices(TrainConfig(epochs=1, accelerator="cpu", devices="1", num_nodes=4))
    assert (given.devices, given.num_nodes) == (1, 4)  # flags win


class SlowingPace(ScriptedPace):
    """A machine that slows down step by step: each step from the third on costs ``extra`` seconds more
    than the one before it (on the training clock; nothing sleeps)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.added += self.extra * max(0, trainer.global_step - 2)


class Lengths(Callback):
    """The schedule's length after every step."""

    def __init__(self) -> None:
        self.totals = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.totals.append(pl_module.meta["schedule"]["total_steps"])


def test_a_slowing_run_re_plans_at_many_steps_and_logs_only_changes_of_a_tenth(folders, tmp_path, monkeypatch):
    store = make_store(folders, tmp_path / "store", **{**TINY, "placements": 10})
    pace, lengths = SlowingPace(slow=0, extra=0.004), Lengths()
    monkeypatch.setattr("fgbg.learn.callbacks.now", pace.now)
    monkeypatch.setattr("fgbg.learn.budget.seconds_per_sample", lambda *a, **k: 0.01)
    said = []
    config = TrainConfig(epochs=None, max_minutes=6 / 60, val_samples=5, **{**FAST, "batch": 1})
    train(store, tmp_path / "run", config, SMALL_NET, progress=False, log=said.append, callbacks=[pace, lengths])
    changes = sum(a != b for a, b in zip(lengths.totals, lengths.totals[1:]))
    logged = [int(m[1]) for line in said if (m := re.search(r"re-planned at step \d+ .*: (\d+) steps", line))]
    assert changes >= 5 and 1 <= len(logged) < changes, (changes, said)
    for before, after in zip(logged, logged[1:]):
        assert abs(after - before) >= 0.1 * before or after == logged[-1]
