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
    p.add_argument("--depth", default="layered", choices=["layered"], help="depth source: 'layered' = background depth map (a NAME.depth.png beside the background, else a ground-plane prior) with the foreground as a flat layer at its foot point")
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
    demo.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default demo-out/)")
    demo.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    return parser


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
        format=args.format,
        jpeg_quality=args.jpeg_quality,
        bg_fit=args.bg_fit,
        shard_size=args.shard_size,
        seed=args.seed,
    )


def cmd_generate(args: argparse.Namespace) -> None:
    from fgbg.generate import generate

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

    run_demo(args.out, workers=args.workers)


COMMANDS = {"generate": cmd_generate, "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    from fgbg.generate import GenerateError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        COMMANDS[args.command](args)
    except (GenerateError, ValueError, FileNotFoundError) as e:
        for line in str(e).splitlines():
            print(f"fgbg {args.command}: error: {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0
