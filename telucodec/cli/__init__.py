"""The `telucodec` command, the top layer. Parsers live here; each subcommand's work lives in
its own module (`cli/commands.py` for encode/decode/info, a job's `run_from_args` for the rest)
and is imported only when that subcommand runs, so `telucodec --help` imports no torch. Errors
the user can fix are raised as TelucodecError (or ValueError/OSError with a message) and printed
here as one line, exit 1."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from telucodec.errors import TelucodecError
from telucodec.formats.codes import SIDE_KINDS
from telucodec.runtime import bound_kernel_cache


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The seed's flags (train_codec.py takes exactly these too) plus telucodec's options."""
    p.add_argument("--data_dir", required=True, help="folder of audio (searched recursively) or a manifest .tsv/.csv")
    p.add_argument("--checkpoint_dir", required=True, help="experiments are written under CHECKPOINT_DIR/NAME")
    p.add_argument("--experiment_name", required=True)
    p.add_argument("--batch_size", type=int, default=None)
    p.add_argument("--num_epochs", type=int, default=None)
    p.add_argument("--learning_rate", type=float, default=None)
    p.add_argument("--config", default="small", help="preset (tiny, small, base, spectral) or a config .json")
    p.add_argument("--resume", action="store_true", help="continue the experiment from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing experiment folder")
    p.add_argument("--init_from", default=None, help="checkpoint or model folder: load the tensors that match")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--amplitude", default=None, choices=list(SIDE_KINDS))
    p.add_argument("--max_minutes", type=float, default=None, help="stop cleanly (with a checkpoint) after M minutes")
    p.add_argument("--max_steps", type=int, default=None, help="stop cleanly after this many optimizer steps in total")
    p.add_argument("--overfit_check", action="store_true",
                   help="short run on one clip that must show the pipeline learns; exits non-zero with a diagnosis otherwise")
    p.add_argument("--adversarial_after", type=int, default=None, help="switch discriminators on at this step (-1 never)")
    p.add_argument("--precision", default=None, choices=["fp32", "bf16"])
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--steps_per_epoch", type=int, default=None)
    p.add_argument("--val_speakers", default=None, help="comma-separated speakers (from a manifest) held out for validation")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="telucodec", description="Neural speech codec toolkit for Telugu.")
    sub = parser.add_subparsers(dest="command", required=True)

    add_train_arguments(sub.add_parser("train", help="train a codec (same flags as train_codec.py)"))

    p = sub.add_parser("encode", help="audio file -> .tcd bitstream")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--model", default=None, help="model folder or training checkpoint (default: shipped model)")
    p.add_argument("--kbps", type=float, default=None, help="target bitrate; picks the nearest n_q not above it")
    p.add_argument("--entropy", action="store_true", help="entropy-code the codes (smaller file, slower)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")

    p = sub.add_parser("decode", help=".tcd bitstream (or tokens) -> wav")
    p.add_argument("input", nargs="?", help="IN.tcd (omit with --tokens)")
    p.add_argument("output")
    p.add_argument("--model", default=None)
    p.add_argument("--tokens", default=None, help="a folder written by `telucodec tokenize`")
    p.add_argument("--id", default=None, help="utterance id inside --tokens")
    p.add_argument("--force", action="store_true")

    p = sub.add_parser("info", help="describe a .tcd file")
    p.add_argument("input")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("eval", help="score telucodec against Opus, Codec2 and Lyra on the same clips")
    p.add_argument("--data_dir", required=False)
    p.add_argument("--out", required=True)
    p.add_argument("--model", default=None)
    p.add_argument("--kbps", default="1.5,3,6")
    p.add_argument("--baselines", default="opus,codec2,lyra")
    p.add_argument("--lyra_models", default=None)
    p.add_argument("--max_clips", type=int, default=None)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--reference", default=None, help="score already decoded files in DIR against --data_dir")
    p.add_argument("--force", action="store_true")
    p.add_argument("--report_clips", type=int, default=4, help="clips with audio players in report.html")
    p.add_argument("--align", default="waveform", choices=["waveform", "envelope", "none"],
                   help="how --reference files are aligned to the originals")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("tokenize", help="turn a dataset into codes for TTS / speech LMs")
    p.add_argument("--data_dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--model", default=None)
    p.add_argument("--kbps", type=float, default=None)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--shard", default="0/1", help="I/N: this job does every N-th file starting at I")

    p = sub.add_parser("export-onnx", help="export encoder and decoder to ONNX with a parity check")
    p.add_argument("--out", required=True)
    p.add_argument("--model", default=None)
    p.add_argument("--parity_clip", default=None, help="audio file for the parity check (default: an example clip)")
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "train":
        from telucodec.train.loop import train_from_args
        return train_from_args(args)
    if args.command in ("encode", "decode", "info"):
        from telucodec.cli import commands
        return getattr(commands, args.command)(args)
    if args.command == "eval":
        from telucodec.evaluation.evaluate import run_from_args
        return run_from_args(args)
    if args.command == "tokenize":
        from telucodec.deploy.tokenize import run_from_args
        return run_from_args(args)
    if args.command == "export-onnx":
        from telucodec.deploy.export import run_from_args
        return run_from_args(args)
    raise AssertionError(args.command)


def main(argv: Sequence[str] | None = None) -> int:
    bound_kernel_cache()
    args = build_parser().parse_args(argv)
    try:
        return int(_dispatch(args) or 0)
    except (TelucodecError, ValueError, OSError) as exc:
        print(f"telucodec {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"telucodec {args.command}: interrupted", file=sys.stderr)
        return 130
