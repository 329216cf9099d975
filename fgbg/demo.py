"""``fgbg demo``: the whole job on the small asset set shipped inside the package.

Each step of the product adds one call here, so the demo always shows all of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from fgbg.config import GenerateConfig
from fgbg.make.assets import demo_assets
from fgbg.make.generate import generate


def run_demo(
    out: Path,
    workers: int | None = None,
    config: GenerateConfig | None = None,
    log: Callable[[str], None] = print,
    train_minutes: float = 3.0,
    train_size: int = 64,
    progress: bool | None = None,
) -> None:
    """The whole job from the bundled assets: the store in ``out/data`` (default config unless
    given), its stats and card, then ``train_minutes`` of training (0: skip) at ``train_size``
    px into ``out/run``, and an evaluation. ``progress``: None = a bar on a terminal, sparse
    lines in a log; True = a bar; False = none."""
    bg_dir, fg_dir = demo_assets()
    config = config or GenerateConfig()
    store, run = Path(out) / "data", Path(out) / "run"
    log(f"demo: generating from {bg_dir} and {fg_dir}")
    summary = generate(bg_dir, fg_dir, store, config, workers=workers, progress=progress, warn=log)
    log(f"store: {summary}")
    if summary.how_to_read():
        log(summary.how_to_read())
    demo_card(store, workers, log, progress)
    if train_minutes > 0:
        demo_train(store, run, train_minutes, train_size, log, progress)


def demo_train(
    store: Path, run: Path, minutes: float, size: int, log: Callable[[str], None] = print, progress: bool | None = None
) -> dict:
    """Train for ``minutes`` on ``store`` into ``run`` (replacing an earlier demo run), evaluate; returns the metrics."""
    import shutil

    from fgbg.learn.evaluate import evaluate
    from fgbg.learn.train import TrainConfig, train

    if (run / "run.json").exists():
        shutil.rmtree(run)
    log(f"demo: training for {minutes:g} min at {size} px (CPU)")
    train(store, run, TrainConfig(size=size, epochs=None, max_minutes=minutes, batch=32), progress=progress, log=log)
    m = evaluate(run / "best.ckpt", store, run / "eval", log=lambda _: None, progress=progress)
    log(f"demo: held-out mask IoU {m['mask_iou']:.4f} (differencing baseline {m['baseline_mask_iou']:.4f}), Dice {m['mask_dice']:.4f};"
        f" depth RMSE {m['depth_rmse']:.4f}, delta1 {m['depth_delta1']:.4f}, SSIM {m['depth_ssim']:.4f}")
    shifted = next((r for r in m.get("robustness", []) if r["bg"] == "shift 2 px"), None)
    if shifted is not None:  # the bg input as a second photograph would be (robustness table in report.md)
        log(f"demo: with the bg input shifted 2 px: mask IoU {shifted['mask_iou']:.4f} (differencing baseline"
            f" {shifted['baseline_mask_iou']:.4f})")
    log(f"demo: TensorBoard: tensorboard --logdir {run / 'tb'}; report: {run / 'eval' / 'report.md'}")
    return m


def demo_card(
    store: Path, workers: int | None = None, log: Callable[[str], None] = print, progress: bool | None = None
) -> Path:
    """Exact stats (STORE/stats.json) and the dataset card (STORE/README.md, previews/); returns the card."""
    from fgbg.inspect.card import write_card
    from fgbg.inspect.stats import read_stats

    card = write_card(store, workers=workers, progress=progress)
    fg_bg = read_stats(store)["kinds"]["fg_bg"]
    mean, std = (", ".join(f"{v:.4f}" for v in fg_bg[k]) for k in ("mean", "std"))
    log(f"demo: fg_bg mean [{mean}], std [{std}] (exact, {store / 'stats.json'})")
    log(f"demo: dataset card: {card} (pictures in {store / 'previews'})")
    return card
