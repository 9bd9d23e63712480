"""`telucodec encode | decode | info`: files in, files out, one clear line on any problem. encode and
decode run the engine `--runtime` picks and end with one stderr line saying which ran (`runtime: ...`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from telucodec.api import load_model, read_codes
from telucodec.deploy.runtimes import Runtime, choose_runtime
from telucodec.errors import TelucodecError
from telucodec.formats.audio import load_audio, output_format, write_audio
from telucodec.formats.bitstream import describe, write_bitstream, write_smallest
from telucodec.formats.rate import encode_to_rate
from telucodec.model.codec import Codec
from telucodec.model.loading import shipped_model_name

T = TypeVar("T")


def _check_output(path: Path, force: bool, suffix: str, source: Path | None = None) -> None:
    """Refuse an output that would destroy something: a folder, an existing file without
    --force, and the input file itself (same file, whatever the names, --force or not)."""
    if path.is_dir():
        raise TelucodecError(f"{path}: is a folder; give the output file's name (e.g. {path / 'out'}{suffix})")
    if source is not None and path.exists() and source.exists() and os.path.samefile(path, source):
        raise TelucodecError(f"{path}: is the input file; writing it would destroy the input (give another output name)")
    if path.exists() and not force:
        raise TelucodecError(f"{path} exists; use --force to overwrite it")
    if not path.parent.exists():
        raise TelucodecError(f"{path.parent}: output folder does not exist")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _parse_tcd(src: Path, parse: Callable[[bytes], T]) -> T:
    """Read a .tcd file and parse it; every failure becomes one line naming the file."""
    try:
        data = src.read_bytes()
    except OSError as exc:
        raise TelucodecError(f"{src}: cannot read ({exc.strerror})") from exc
    try:
        return parse(data)
    except ValueError as exc:
        raise TelucodecError(f"{src}: {exc}") from exc


def _runtime(model: Codec, args: argparse.Namespace) -> Runtime:
    """The engine `--runtime` picks (deploy/runtimes.py); an export being made says so first."""
    return choose_runtime(model, getattr(args, "runtime", None), model_path=args.model,
                          log=lambda line: print(line, file=sys.stderr), beam=getattr(args, "beam", 1))


def encode(args: argparse.Namespace) -> int:
    src, dst = Path(args.input), Path(args.output)
    if dst.suffix.lower() != ".tcd" and not dst.is_dir():  # a folder: _check_output says so
        raise TelucodecError(f"{dst}: encode writes a .tcd bitstream; name the output .tcd "
                             f"(e.g. {dst.with_suffix('.tcd')}), not '{dst.suffix or 'no extension'}'")
    _check_output(dst, args.force, ".tcd", src)
    model = load_model(args.model)
    wav = load_audio(src, model.sample_rate)
    note = model.kbps_cap_note(args.kbps)
    if note:
        print(note, file=sys.stderr)
    runtime = _runtime(model, args)
    if args.kbps is not None:  # rate control: the actual rate, header included, within --kbps
        choice = encode_to_rate(runtime, wav, model.sample_rate, args.kbps)
        print(choice.note(args.kbps), file=sys.stderr)
        data = choice.data
    elif args.entropy:
        data, plain, coded = write_smallest(runtime.encode(wav, model.sample_rate))
        if len(data) < plain:
            print(f"entropy coding: {coded} bytes vs {plain} plain ({100 * (1 - coded / plain):.1f}% saved): "
                  "wrote the entropy-coded file", file=sys.stderr)
        else:
            print(f"entropy coding: {coded} bytes vs {plain} plain: no saving on this clip, wrote the plain file",
                  file=sys.stderr)
    else:
        data = write_bitstream(runtime.encode(wav, model.sample_rate))
    _write_atomic(dst, data)
    info = describe(data)
    print(f"{dst}: {info['duration_s']:.2f} s, n_q {info['n_q']}, {info['kbps_nominal']:g} kbps nominal, "
          f"{info['kbps_actual']:.3f} kbps actual, {len(data)} bytes")
    print(runtime.note, file=sys.stderr)
    return 0


def decode(args: argparse.Namespace) -> int:
    dst = Path(args.output)
    _check_output(dst, args.force, ".wav", Path(args.input) if args.input else None)
    output_format(dst)  # an extension we cannot write is refused before any work
    model = load_model(args.model)
    if args.tokens:
        if not args.id:
            raise TelucodecError("--tokens needs --id UTTERANCE_ID")
        from telucodec.formats.tokens import codes_for
        codes = codes_for(args.tokens, args.id, model)
    else:
        if not args.input:
            raise TelucodecError("give IN.tcd (or --tokens DIR --id X)")
        codes = _parse_tcd(Path(args.input), lambda data: read_codes(data, model))
    runtime = _runtime(model, args)
    wav = runtime.decode(codes)
    tmp = dst.with_name(f".{dst.stem}.tmp{dst.suffix}")
    try:
        clipped = write_audio(tmp, wav, codes.sample_rate)
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)
    note = f"; {clipped} samples clipped to [-1, 1]" if clipped else ""
    print(f"{dst}: {len(wav) / codes.sample_rate:.2f} s at {codes.sample_rate} Hz{note}")
    print(runtime.note, file=sys.stderr)
    return 0


def info(args: argparse.Namespace) -> int:
    described = _parse_tcd(Path(args.input), describe)
    d: dict = {}
    for key, value in described.items():  # the shipped model's name right after its id (None: not a shipped model)
        d[key] = value
        if key == "model_id":
            d["model_name"] = shipped_model_name(value)
    if args.json:
        print(json.dumps(d, indent=2))
    else:
        for key, value in d.items():
            print(f"{key:16s} {value}")
    return 0
