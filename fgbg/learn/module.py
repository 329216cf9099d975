"""The LightningModule of a run: glue around the model, its losses and metrics, with AdamW and
the one-cycle learning-rate schedule.

Its only hyperparameter is the run's ``meta`` (see :func:`fgbg.learn.train.make_meta`), so a
checkpoint rebuilds the module by itself.

Batches arrive compact (uint8 images, stored depth, each sample's augmentation parameters; see
:mod:`fgbg.learn.data`) and become float on the device, in ``on_after_batch_transfer``
(:func:`~fgbg.learn.data.prepare_batch`): scaled, augmented and normalised with the run's stats.

Validation streams: a :class:`~fgbg.learn.metrics.PerImageMeans` adds up the per-image metrics
(the definitions of ``fgbg evaluate``: per image, then averaged over images), reduces the sums
across DDP ranks itself, and the module logs its means once per validation, the same on every
rank. Nothing per batch is kept but the first batch's picture rows. Under bf16/fp16 autocast the
losses and metrics are computed in fp32.
"""

from __future__ import annotations

import lightning as L
import torch

from fgbg.learn import metrics
from fgbg.learn.data import Stats, content_slices, denormalize, prepare_batch
from fgbg.learn.losses import LossConfig, MaskDepthLoss
from fgbg.learn.model import ModelConfig, Prediction, TwoHeadUNet
from fgbg.learn.perturb import batch_noise_seed
from fgbg.learn.viz import image_grid, prediction_rows

PCT_START = 0.15  # share of the one-cycle schedule spent warming up


def full_precision(pred: Prediction) -> Prediction:
    """The heads' outputs in fp32 (they are bf16/fp16 under autocast), for losses and metrics."""
    return Prediction(*(metrics.full_precision(t) for t in pred))


def to_input(batch: dict) -> torch.Tensor:
    """Normalised bg and fg_bg (B, 3, S, S) each -> (B, 6, S, S), channels_last."""
    return torch.cat([batch["bg"], batch["fg_bg"]], dim=1).contiguous(memory_format=torch.channels_last)


class FgbgModule(L.LightningModule):
    """Glue: TwoHeadUNet + MaskDepthLoss + metrics + AdamW with a one-cycle schedule.

    ``meta`` (saved as the only hyperparameter) holds every config, the stats, the split, the
    baseline threshold and the schedule: a checkpoint rebuilds the run by itself.
    """

    def __init__(self, meta: dict) -> None:
        super().__init__()
        self.save_hyperparameters({"meta": meta})
        self.meta = meta
        self.stats = Stats(meta["stats"]["mean"], meta["stats"]["std"], meta["stats"].get("source", "run"))  # what prepare_batch normalises with
        self.net = TwoHeadUNet(ModelConfig.from_dict(meta["model"])).to(memory_format=torch.channels_last)
        self.loss = MaskDepthLoss(LossConfig(**meta["loss"]))
        self.history: list[dict] = []  # one dict of val metrics per validation, equal on every rank
        self.val_means = metrics.PerImageMeans((*metrics.REPORTED, "loss"))
        self._grid: list | None = None  # the first validation batch's picture rows (CPU copies)

    def forward(self, x: torch.Tensor):
        return self.net(x)

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """The batch's noise seed and the image's box in a padded sample as ints while still on the CPU
        (read back from a GPU, they would make the step wait)."""
        if "bg_aug" in batch:
            batch["bg_aug"]["noise_seed"] = batch_noise_seed(batch["bg_aug"]["noise_seed"])
        if "content" in batch:
            batch["content"] = [tuple(int(v) for v in batch["content"][0])]
        return batch

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """A compact batch, now on the device, in float: scaled, augmented (training) and normalised."""
        return prepare_batch(batch, self.stats)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        pred = full_precision(self.net(to_input(batch)))
        ys, xs = content_slices(batch)  # a padded sample's padding is in no loss
        losses = self.loss(Prediction(pred.mask_logits[..., ys, xs], pred.depth[..., ys, xs]), batch["mask"][..., ys, xs], batch["depth"][..., ys, xs])
        n = batch["mask"].shape[0]
        self.log("train/loss", losses.total, on_step=True, on_epoch=True, batch_size=n, prog_bar=True)
        self.log("train/mask_loss", losses.mask, on_step=False, on_epoch=True, batch_size=n)
        self.log("train/depth_loss", losses.depth, on_step=False, on_epoch=True, batch_size=n)
        return losses.total

    def on_validation_epoch_start(self) -> None:
        self.val_means.reset()
        self._grid = None

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        pred = full_precision(self.net(to_input(batch)))
        ys, xs = content_slices(batch)  # a padded sample's padding is in no loss or metric
        seen = Prediction(pred.mask_logits[..., ys, xs], pred.depth[..., ys, xs])
        losses = self.loss(seen, batch["mask"][..., ys, xs], batch["depth"][..., ys, xs])
        stats = self.meta["stats"]
        bg = denormalize(batch["bg"], stats["mean"][:3], stats["std"][:3])
        fg_bg = denormalize(batch["fg_bg"], stats["mean"][3:], stats["std"][3:])
        values = metrics.reported_metrics(
            seen.mask_logits, seen.depth, batch["mask"][..., ys, xs], batch["depth"][..., ys, xs], bg[..., ys, xs], fg_bg[..., ys, xs],
            self.meta["baseline"]["threshold"],
        )
        values["loss"] = losses.total.expand(batch["mask"].shape[0])  # the batch's mean, once per image
        self.val_means.update(values)
        if self._grid is None and self.trainer.is_global_zero:  # only rank 0 writes images
            k = self.meta["train"]["log_images"]
            self._grid = prediction_rows(
                bg[:k], fg_bg[:k], batch["mask"][:k], torch.sigmoid(pred.mask_logits[:k]), batch["depth"][:k], pred.depth[:k]
            )

    def on_validation_epoch_end(self) -> None:
        computed = self.val_means.compute()  # a collective under DDP: every rank gets here
        self.val_means.reset()
        grid, self._grid = self._grid, None
        means = {k: v.item() for k, v in computed.items()}
        n_images = int(means.pop("n_images"))
        if n_images == 0 or self.trainer.sanity_checking:
            return
        for k, v in means.items():
            # Already reduced and equal on every rank: sync_dist only tells Lightning so (it averages equal numbers).
            self.log(f"val/{k}", v, prog_bar=k == "mask_iou", sync_dist=True)
        # epochs counted from 1, as the progress lines, the summary and a resume say them
        self.history.append({"epoch": self.current_epoch + 1, "step": self.global_step, **means, "n_images": n_images})
        logger = self.logger
        if grid and logger is not None and hasattr(logger.experiment, "add_image"):
            logger.experiment.add_image("val/bg_fgbg_gtmask_predmask_gtdepth_preddepth", image_grid(grid), self.current_epoch)

    def configure_optimizers(self):
        t = self.meta["train"]
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])
        schedule = one_cycle(optimizer, t["lr"], self.meta["schedule"]["total_steps"])
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = list(checkpoint.get("history", []))


def one_cycle(optimizer: torch.optim.Optimizer, lr: float, total_steps: int, done: int = 0):
    """The one-cycle schedule over ``total_steps`` optimizer steps, positioned after ``done`` of them."""
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps, pct_start=PCT_START, last_epoch=done - 1)
