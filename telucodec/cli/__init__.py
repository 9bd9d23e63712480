"""The `telucodec` command, the top layer. Parsers live here; each subcommand's work lives in
its own module (`cli/commands.py` for encode/decode/info, a job's `run_from_args` for the rest)
and is imported only when that subcommand runs, so `telucodec --help` imports no torch. Errors
the user can fix are raised as TelucodecError (or ValueError/OSError with a message) and printed
here as one line, exit 1."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence

from telucodec.errors import TelucodecError
from telucodec.formats.codes import SIDE_KINDS
from telucodec.runtime import RUNTIMES, bound_kernel_cache


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default: "(default: X)" unless the text already says
    what happens by default or the option is required; on/off flags say "(default: off)"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.default is argparse.SUPPRESS or action.required or not action.option_strings
                or "default" in text or "(required)" in text):
            return text
        if isinstance(action, argparse._StoreTrueAction):
            return f"{text} (default: off)"
        return f"{text} (default: %(default)s)"


class _NegativeNumber:
    """What argparse asks of its `_negative_number_matcher`: whether a word that starts with '-'
    is a number rather than an option. Its own pattern knows only -1 and -1.5, so `-1e-3`, `-inf`
    and `-nan` were taken for options ("expected one argument") and never reached the range check."""

    @staticmethod
    def match(text: str) -> bool:
        if not text.startswith("-"):
            return False
        try:
            float(text)
        except ValueError:
            return False
        return True


class Parser(argparse.ArgumentParser):
    """A usage mistake is one line (which flag, what was wrong, where help is) and exit 2, not
    the usage block followed by the error. A value that reads as a negative number, in any
    notation, is a value (and so gets its flag's range check), never an option."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NegativeNumber()

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def ranged(kind: type, low: float, high: float | None = None, *, low_open: bool = False) -> Callable[[str], int | float]:
    """An argparse `type`: the text as an int or a finite float within [low, high] (or above low
    with `low_open`); anything else is refused naming the value and the accepted range (argparse
    puts the flag in front), so a bad number never reaches the job."""
    if kind is int:
        accepted = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
    else:
        accepted = (f"a number > {low:g}" if low_open else f"a number >= {low:g}") + (f" and <= {high:g}" if high is not None else "")

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'} "
                                             f"(accepted: {accepted})") from None
        if (not math.isfinite(value) or value < low or (low_open and value == low)
                or (high is not None and value > high)):
            raise argparse.ArgumentTypeError(f"{text.strip()} is out of range (accepted: {accepted})")
        return value

    parse.__name__ = kind.__name__
    parse.bounds = (kind, low, high, low_open)  # type: ignore[attr-defined]  # what it accepts, for tests
    return parse


def kbps_list(text: str) -> str:
    """`eval --kbps`: 'none' or comma-separated positive numbers; returned as given."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if [p.lower() for p in parts] != ["none"]:
        for part in parts:
            ranged(float, 0.0, low_open=True)(part)
    if not parts:
        raise argparse.ArgumentTypeError("empty (accepted: comma-separated numbers > 0, or none)")
    return text


kbps_list.bounds = (float, 0.0, None, True)  # type: ignore[attr-defined]  # each number's range


def experiment_name(text: str) -> str:
    """`train --experiment_name`: one folder name inside --checkpoint_dir. A separator, `..` or
    an absolute path would put the experiment (and what `--overwrite` deletes) elsewhere; empty
    and `.` would make --checkpoint_dir itself the experiment."""
    if text.strip() in ("", ".", ".."):
        raise argparse.ArgumentTypeError(f"{text!r} names no folder of its own (give a name such as run1)")
    if "/" in text or "\\" in text or "\x00" in text:
        raise argparse.ArgumentTypeError(f"{text!r}: one folder name inside --checkpoint_dir, without / or \\ "
                                         "(put the experiment elsewhere with --checkpoint_dir)")
    if len(text.encode("utf-8", "surrogatepass")) > 255:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}...: longer than a folder name may be (255 bytes)")
    return text


def _parser(sub: argparse._SubParsersAction, name: str, help_text: str, description: str = "") -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_text, description=description or help_text, formatter_class=HelpFormatter)


MODEL_HELP = ("model folder, training checkpoint (.pt), experiment folder, or the name of a shipped model "
              "(a folder of telucodec/pretrained/) (default: the shipped default model)")


RUNTIME_HELP = ("engine that runs the model: torch (PyTorch), onnx (its ONNX export through onnxruntime, made "
                "once and cached) or auto (onnx when onnxruntime is installed and the export's codes equal "
                "PyTorch's, else torch, with a note); both write the same .tcd bytes "
                "(default: $TELUCODEC_RUNTIME, else auto)")


def add_beam_argument(p: argparse.ArgumentParser) -> None:
    """`--beam B` (encode, eval): the encoder's codebook search keeps the B best partial paths."""
    p.add_argument("--beam", type=ranged(int, 1, 256), default=1,
                   help="beam search over the codebooks at the encoder: keep the B best partial sums per frame "
                        "(same bitstream and decoder, closer codes, slower; runs in PyTorch) (default: 1, greedy)")


def add_runtime_argument(p: argparse.ArgumentParser) -> None:
    """`--runtime auto|torch|onnx` (encode, decode, eval, tokenize; deploy/runtimes.py)."""
    p.add_argument("--runtime", default=None, choices=list(RUNTIMES), help=RUNTIME_HELP)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The seed's flags (train_codec.py takes exactly these too) plus telucodec's options."""
    p.add_argument("--data_dir", required=True, help="folder of audio (searched recursively), a manifest .tsv/.csv, "
                   "WebDataset .tar shards (a folder or a brace pattern) or Parquet files")
    p.add_argument("--checkpoint_dir", required=True, help="experiments are written under CHECKPOINT_DIR/NAME")
    p.add_argument("--experiment_name", required=True, type=experiment_name,
                   help="the experiment's folder name NAME under --checkpoint_dir (one name: no /, \\ or ..)")
    p.add_argument("--batch_size", type=ranged(int, 1), default=None, help="crops per step (default: the preset's; 16 for small)")
    p.add_argument("--num_epochs", type=ranged(int, 1), default=None, help="epochs to train (default: the preset's; 100)")
    p.add_argument("--learning_rate", type=ranged(float, 0.0, 10.0, low_open=True), default=None,
                   help="peak learning rate after the warm-up (default: the preset's; 3e-4 for small, 1e-3 for tiny)")
    p.add_argument("--config", default=None,
                   help="preset (tiny, small, base, spectral) or a config .json (default: with --init_from, that "
                        "model's own config; else small)")
    p.add_argument("--resume", action="store_true", help="continue the experiment from its last checkpoint")
    p.add_argument("--accept_changed_data", action="store_true",
                   help="with --resume: continue although the data (the files --data_dir lists, by name and "
                        "length), the number of processes or --batch_size differ from the checkpoint's, which is "
                        "refused otherwise; the crops then differ from the run's, the epoch takes the new number "
                        "of steps, and the start says where the epoch continues and where the learning-rate "
                        "schedule now ends")
    p.add_argument("--overwrite", action="store_true", help="replace an existing experiment folder")
    p.add_argument("--init_from", default=None,
                   help="checkpoint or model folder: load the tensors that match (default: fresh weights)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where to train; auto = CUDA when available, else CPU")
    p.add_argument("--amplitude", default=None, choices=list(SIDE_KINDS),
                   help="who owns loudness (docs/amplitude.md) (default: the preset's; rms for small)")
    p.add_argument("--max_minutes", type=ranged(float, 0.0, low_open=True), default=None,
                   help="stop cleanly (with a checkpoint) after M minutes (default: no time limit)")
    p.add_argument("--max_steps", type=ranged(int, 1), default=None,
                   help="stop cleanly after this many optimizer steps in total (default: no step limit)")
    p.add_argument("--warmup_steps", type=ranged(int, 0), default=None,
                   help="steps of linear learning-rate warm-up (default: the preset's; 200 for small, 20 for tiny)")
    p.add_argument("--overfit_check", action="store_true",
                   help="short run on one clip that must show the pipeline learns; exits non-zero with a diagnosis otherwise")
    p.add_argument("--adversarial_after", type=ranged(int, -1), default=None,
                   help="switch discriminators on at this step, -1 never (default: the preset's; -1 for small)")
    p.add_argument("--precision", default=None, choices=["fp32", "bf16"],
                   help="bf16 autocast on CUDA (on the CPU too: the same code path, slower) (default: the preset's, fp32)")
    p.add_argument("--seed", type=ranged(int, 0, 2**32 - 1), default=None, help="random seed (default: the preset's, 1234)")
    p.add_argument("--steps_per_epoch", type=ranged(int, 1), default=None,
                   help="optimizer steps per epoch (default: from the data, one 1 s crop per second of audio)")
    p.add_argument("--val_speakers", default=None,
                   help="comma-separated speakers (from a manifest) held out for validation "
                        "(default: whole speakers picked by hash, else 10%% of the files)")
    p.add_argument("--threads", type=ranged(int, 1), default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--num_workers", type=ranged(int, 0), default=None,
                   help="DataLoader processes decoding training crops, 0 = in the training process; the crops are "
                        "the same with any number, and it is this machine's setting, not the run's (no config "
                        "holds it; each start, resumed or not, picks its own) (default: this process's share of "
                        "the cores less one, at most 4)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("telucodec")
    except Exception:  # running from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="telucodec", description="Neural speech codec toolkit for Telugu.",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"telucodec {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    add_train_arguments(_parser(sub, "train", "train a codec (same flags as train_codec.py)"))

    p = _parser(sub, "encode", "audio file -> .tcd bitstream")
    p.add_argument("input", help="audio file (.wav, .flac, .mp3, .ogg; any rate, mixed to mono)")
    p.add_argument("output", help="the .tcd file to write")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--kbps", type=ranged(float, 0.0, low_open=True), default=None,
                   help="the file's actual bitrate, header included: the most codebooks whose file fits in it, "
                        "entropy coded when that is smaller (default: every codebook)")
    p.add_argument("--entropy", action="store_true",
                   help="without --kbps: entropy-code the codes when that makes the file smaller (else the plain "
                        "file); --kbps always writes the smallest")
    add_beam_argument(p)
    p.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    add_runtime_argument(p)

    p = _parser(sub, "decode", ".tcd bitstream (or tokens) -> audio file")
    p.add_argument("input", nargs="?", help="IN.tcd (omit with --tokens)")
    p.add_argument("output", help="the audio file to write: .wav or .flac (16-bit) or .ogg (Vorbis)")
    p.add_argument("--model", default=None,
                   help=MODEL_HELP.replace("(default:", "that made the file (default:"))
    p.add_argument("--tokens", default=None, help="a folder written by `telucodec tokenize` (default: decode IN.tcd)")
    p.add_argument("--id", default=None, help="utterance id inside --tokens (default: none; needed with --tokens)")
    p.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    add_runtime_argument(p)

    p = _parser(sub, "info", "describe a .tcd file")
    p.add_argument("input", help="the .tcd file")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (keys in docs/design.md) instead of a table")

    p = _parser(sub, "eval", "score telucodec against Opus, Codec2 and Lyra on the same clips")
    p.add_argument("--data_dir", required=True,
                   help="folder of clips, a manifest .tsv/.csv with path and speaker columns, .tar shards or Parquet "
                        "files (silent and too-short clips are skipped and listed, as training skips them)")
    p.add_argument("--out", required=True, help="folder for results.json, results.csv, results.md, plots, report.html")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--kbps", default="1.5,3,6", type=kbps_list,
                   help="comma-separated telucodec bitrates in kbps, e.g. 1.5,3,6; 'none' for baselines only")
    p.add_argument("--baselines", default="opus,codec2,lyra",
                   help="comma-separated, from: opus, codec2, lyra; 'none' for telucodec only "
                        "(a baseline whose tool or model is missing is skipped with a warning)")
    p.add_argument("--lyra_models", default=None,
                   help="folder with Lyra v2's .tflite models (default: $TELUCODEC_LYRA_MODELS, else the copy "
                        "shipped in telucodec/third_party/lyra)")
    p.add_argument("--max_clips", type=ranged(int, 1), default=None,
                   help="score at most N clips, spread over speakers (default: every clip)")
    p.add_argument("--workers", type=ranged(int, 1), default=1, help="processes to spread the clips over")
    p.add_argument("--reference", default=None,
                   help="score already decoded files in DIR against --data_dir (default: none)")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out folder")
    p.add_argument("--report_clips", type=ranged(int, 0), default=4, help="clips with audio players in report.html")
    p.add_argument("--align", default="waveform", choices=["waveform", "envelope", "none"],
                   help="how --reference files are aligned to the originals")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_beam_argument(p)
    add_runtime_argument(p)

    p = _parser(sub, "tokenize", "turn a dataset into codes for TTS / speech LMs")
    p.add_argument("--data_dir", required=True, help="folder of audio, a manifest .tsv/.csv, .tar shards or Parquet files")
    p.add_argument("--out", required=True, help="folder for the shards, index.jsonl and meta.json (resumable)")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--kbps", type=ranged(float, 0.0, low_open=True), default=None,
                   help="bitrate; picks the nearest n_q not above it (default: the model's maximum)")
    p.add_argument("--workers", type=ranged(int, 1), default=1, help="processes to spread the files over")
    p.add_argument("--shard", default="0/1", help="I/N: this job does every N-th file starting at I")
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: this process and --workers processes; ray: a Ray Data actor pool of --workers "
                        "actors (1: one per CPU of the cluster)")
    p.add_argument("--ray_address", default=None,
                   help="with --engine ray: the cluster to join, e.g. HEAD:6379 (default: a local Ray)")
    p.add_argument("--format", default="shards", choices=["shards", "parquet"],
                   help="shards: uint16 .npy shards + index.jsonl (fastest to load); parquet: rows in OUT/data/*.parquet")
    add_runtime_argument(p)

    p = _parser(sub, "shard", "pack a dataset into WebDataset .tar shards (~256 MB each)",
                "Packs every clip of --data_dir (a folder, a manifest, shards or Parquet) into WebDataset tar shards: "
                "the audio bytes as they are plus KEY.json with id, speaker and seconds. Training, eval and tokenize "
                "read the shards with --data_dir OUT.")
    p.add_argument("--data_dir", required=True, help="folder of audio, a manifest .tsv/.csv, .tar shards or Parquet files")
    p.add_argument("--out", required=True, help="folder for shard-NNNNNN.tar and skipped.tsv (must hold no shards yet)")
    p.add_argument("--shard_mb", type=ranged(float, 0.0, low_open=True), default=256.0,
                   help="start a new shard past this many MB")

    p = _parser(sub, "export-onnx", "export encoder and decoder to ONNX with a parity check")
    p.add_argument("--out", required=True, help="folder for encoder.onnx, decoder.onnx, codebooks.npy, config.json")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--parity_clip", default=None, help="audio file for the parity check (default: an example clip)")

    p = _parser(sub, "demo", "the shipped model on a real Telugu clip next to Opus, then a few minutes of training",
                "Round-trips a real Telugu clip through the shipped model at 1.5, 3 and 6 kbps (real kbps, level "
                "and PESQ next to Opus on the same clip, a spectrogram PNG), then trains the tiny preset on the "
                "example clips for a few minutes and round-trips the clip through that model too.")
    p.add_argument("--out", default="runs/demo", help="folder for everything the demo writes")
    p.add_argument("--clip", default=None, help="the clip to round-trip (default: a Common Voice clip in examples/)")
    p.add_argument("--data_dir", default=None, help="training clips (default: examples/te_cv)")
    p.add_argument("--minutes", type=ranged(float, 0.0), default=3.0, help="training time budget in minutes; 0 skips training")
    p.add_argument("--max_steps", type=ranged(int, 1), default=None, help="also stop training after N steps (default: no limit)")
    p.add_argument("--threads", type=ranged(int, 1), default=None, help="torch CPU threads for training (default: torch's choice)")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out that is not a demo folder")
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "train":
        from telucodec.train.loop import train_from_args
        return train_from_args(args)
    if args.command in ("encode", "decode", "info"):
        from telucodec.cli import commands
        return getattr(commands, args.command)(args)
    if args.command == "eval":
        from telucodec.deploy.runtimes import choose_runtime
        from telucodec.evaluation.evaluate import run_from_args
        return run_from_args(args, choose_runtime)  # the runtime switch lives above evaluation
    if args.command == "tokenize":
        from telucodec.deploy.tokenize import run_from_args
        return run_from_args(args)
    if args.command == "shard":
        from telucodec.formats.packing import run_from_args
        return run_from_args(args)
    if args.command == "demo":
        from telucodec.cli.demo import run_from_args
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
