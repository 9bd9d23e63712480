"""The `.tcd` file format: one clip's `Codes` as bytes, and back. (This module reads best whole:
the byte layout below and the parser that enforces it belong side by side.)

A file is a fixed 44-byte little-endian header followed by the payload::

    offset size  field
     0      4    magic b"TLCD"
     4      1    format version (u8: 1, 2 or 3, see "Versions")
     5      1    flags (u8): version 1: bit 0 = codes are entropy coded (static ANS), other bits 0;
                 version 2: exactly 0x02 = codes are context coded; version 3: 0x00 (plain),
                 0x01 (static ANS) or 0x02 (context coded)
     6      8    model id (the 16 hex chars of `Codes.model_id` as 8 raw bytes)
    14      4    sample rate (u32, 8000..48000)
    18      8    number of samples of the original clip (u64, >= 1)
    26      1    n_q, number of codebooks (u8, 1..64; version 3: the most any frame sends)
    27      1    codebook bits (u8, 1..16)
    28      2    frame rate in Hz (u16, 1..1000)
    30      1    side-info kind (u8: 0 none, 1 rms, 2 lufs)
    31      1    bits per side-info value (u8: 8 or 16)
    32      4    side-info value count (u32; 0 for kind "none")
    36      4    payload length in bytes (u32)
    40      4    CRC32 (zlib.crc32) of header bytes 0..39 followed by the payload

The frame count is not stored: F = ceil(num_samples * frame_rate / sample_rate), so the header
and the payload length must agree exactly.

Payload, plain (flag bit 0 clear): the side-info values packed at `side bits` each, then the
codes [n_q, F] packed at exactly `codebook bits` each in codebook-major order (all frames of
quantizer 0, then quantizer 1, ...) as one bit string, zero-padded to a whole byte.

Payload, entropy coded (flag bit 0 set): the same side info, then one segment per quantizer:

    u8 mode 0: raw   -- the F codes packed at `codebook bits` (zero-padded to a whole byte)
    u8 mode 1: ANS   -- u8 count width w (1..32); a bitmap of 2**bits bits, bit s set when
                        symbol s occurs (zero-padded to a whole byte); the counts of the symbols
                        that occur, in symbol order, packed at w bits (zero-padded to a whole
                        byte; each >= 1, summing to F); u32 number of 32-bit words n; n
                        little-endian u32 words from constriction's AnsCoder holding each code's
                        index among the occurring symbols, coded with a static Categorical model
                        built from the counts (see `_ans_probabilities`; n = 0 when only one
                        symbol occurs); then zero bytes until
                        the segment is at least ceil(F / 8) bytes long.

The zero padding bounds what a parser may allocate: no segment holds more than 8 codes per
payload byte, entropy coded or not, so a small hostile file can never claim a huge frame count.
The writer picks, per quantizer, whichever mode is smaller.

Payload, context coded (version 2, flags 0x02): the same side info; the 4-byte tag of the
model's entropy tables (`ContextTables.tag`, the first 4 bytes of their sha256; a reader with
other tables refuses the file); then the range-coded codes (`context_coder.py`: frame-major, each
code's integer distribution chosen by the same stage's previous code and the previous stage's code
in the frame), then zero bytes until the coded part is at least ceil(n_q * F / 32) bytes (the
bound on what a parser may allocate, as above; the decoder reads bytes past the end as zeros and
refuses nonzero bytes after the last frame).

Version 3: per-segment codebook counts (rate control's, `formats/rate.py`). Frame t sends only
stages 0..count[t]-1; the decoder adds nothing for the others. The payload starts with a count
block, then the side info as above, then the codes of the coding the flags name:

    u16 segment length L in frames (>= 1); u8 base count m (1 <= m < n_q); then one value per
    segment (ceil(F / L) segments, the last one possibly shorter), count - m, packed at
    w = bit_length(n_q - m) bits each, zero-padded to a whole byte. The counts span exactly
    m..n_q (some segment sends m stages, some n_q: uniform counts are written as version 1 or 2).

    plain (0x00): the sent codes at `codebook bits` each, codebook-major (stage 0's codes of the
        frames that send it, then stage 1's, ...), as one bit string zero-padded to a whole byte;
    static ANS (0x01): per stage s, a version-1 segment (mode 0 or 1, as above) of the F_s codes
        of the frames that send stage s (F_s in place of F);
    context (0x02): the tables' 4-byte tag, then the range-coded sent codes (frame-major; a stage
        the previous frame did not send is coded in the context of a stream's first frame).

The code part (after the side info; for context coding, after the tag) is zero-padded to at least
ceil(n_q * F / 32) bytes: the same bound as version 2, so the [n_q, F] array a reader allocates
stays within 32 code slots per payload byte however the counts are set.

Version 4: stages of different code widths (a model whose first stages have larger codebooks).
The header's codebook bits is the widest stage's width. The payload starts with a width block,
n_q bytes (stage s's width, 1..codebook bits; the widest is codebook bits, and they are not all
equal: equal widths are written as versions 1-3), then a version-3 count block that is always
there (its base count may be n_q: every segment sends every stage, and no values are packed),
then the side info and a version-3 code part of the flags' coding, every code at its own stage's
width (plain: stage after stage as one bit string; static ANS: each stage's segment at its
width; context: the tables name each stage's size).

Versions: version 2 adds only the context-coded payload, version 3 only per-segment counts. The
writer writes version 1 for plain and static-ANS files (byte for byte what earlier releases wrote,
so they read them) and version 2 for context-coded ones, whenever every frame sends every stage;
version 3 only when counts differ, which an older reader refuses as "newer than this telucodec".

Bits are packed most significant bit first (numpy's default `bitorder="big"`).
No pickle anywhere: every field is a fixed-size integer written with `struct`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from telucodec.errors import BitstreamError
from telucodec.formats.bitpack import pack_bits, pack_rows, unpack_bits, unpack_rows
from telucodec.formats.codes import SIDE_KINDS, TCD_RANGES, Codes, mean_sent_bits, stage_widths, widths_text
from telucodec.formats.context_coder import decode_codes, encode_codes
from telucodec.formats.context_tables import TABLES_FILE, ContextTables, tables_for
from telucodec.formats.entropy import decode_codebook, encode_codebook
from telucodec.formats.segment_counts import pack_counts, read_counts, sent_mask, stage_counts_of

MAGIC = b"TLCD"
FORMAT_VERSION = 4  # the newest version this telucodec reads and writes
VERSIONS = (1, 2, 3, 4)

FLAG_ENTROPY = 1
FLAG_CONTEXT = 2
KNOWN_FLAGS = {1: (0, FLAG_ENTROPY), 2: (FLAG_CONTEXT,), 3: (0, FLAG_ENTROPY, FLAG_CONTEXT),
               4: (0, FLAG_ENTROPY, FLAG_CONTEXT)}  # version -> flags
TAG_SIZE = 4
CONTEXT_CODES_PER_BYTE = 32  # a context-coded part holds at most this many codes per byte
CODINGS = ("plain", "static_ans", "context")

# Everything except the CRC; the CRC is the last header field and covers the bytes before it.
_HEADER_BODY = struct.Struct("<4sBB8sIQBBHBBII")
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEADER_BODY.size + _CRC.size  # 44

SAMPLE_RATE_RANGE, N_Q_RANGE, CODEBOOK_BITS_RANGE, FRAME_RATE_RANGE = TCD_RANGES.values()  # formats/codes.py
MAX_U32 = 2**32 - 1
MAX_U64 = 2**64 - 1

@dataclass(frozen=True)
class BitstreamHeader:
    """The validated header of a `.tcd` file (see the module docstring for the byte layout)."""

    format_version: int
    flags: int
    model_id: str
    sample_rate: int
    num_samples: int
    n_q: int
    codebook_bits: int
    frame_rate: int
    side_kind: str
    side_bits: int
    side_count: int
    payload_length: int
    crc32: int
    segment_frames: int = 0      # version 3: frames per segment (0: every frame sends n_q stages)
    segment_counts: bytes = b""  # version 3: the stages each segment sends, one byte each
    count_bytes: int = 0         # version 3: size of the count block at the payload's start
    stage_bits: tuple[int, ...] = ()  # version 4: each stage's code width (the width block)

    @property
    def widths(self) -> list[int]:
        """Each stage's code width in bits (n_q values)."""
        return stage_widths(self.stage_bits, self.codebook_bits, self.n_q)

    @property
    def head_bytes(self) -> int:
        """Bytes before the side info: the width block (version 4) and the count block (3, 4)."""
        return len(self.stage_bits) + self.count_bytes

    def frame_counts(self) -> np.ndarray:
        """int64 [F]: the stages each frame sends (n_q everywhere before version 3)."""
        if not self.segment_frames:
            return np.full(self.num_frames, self.n_q, dtype=np.int64)
        per_segment = np.frombuffer(self.segment_counts, dtype=np.uint8).astype(np.int64)
        return np.repeat(per_segment, self.segment_frames)[: self.num_frames]

    @property
    def entropy_coded(self) -> bool:
        return bool(self.flags & (FLAG_ENTROPY | FLAG_CONTEXT))

    @property
    def context_coded(self) -> bool:
        return bool(self.flags & FLAG_CONTEXT)

    @property
    def coding(self) -> str:
        """"plain", "static_ans" (version 1, per-quantizer raw or ANS segments) or "context"."""
        return "context" if self.context_coded else "static_ans" if self.entropy_coded else "plain"

    @property
    def num_frames(self) -> int:
        return num_frames_for(self.num_samples, self.sample_rate, self.frame_rate)

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate

    @property
    def side_bytes(self) -> int:
        return self.side_count * self.side_bits // 8


def num_frames_for(num_samples: int, sample_rate: int, frame_rate: int) -> int:
    """F = ceil(num_samples / (sample_rate / frame_rate)), in exact integer arithmetic."""
    return -(-num_samples * frame_rate // sample_rate)


# ---------------------------------------------------------------------------------------------
# Header


def _check_range(name: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise BitstreamError(f"bad field value: {name} = {value}, must be in {lo}..{hi}")


def _validate_fields(
    sample_rate: int, num_samples: int, n_q: int, codebook_bits: int, frame_rate: int
) -> None:
    _check_range("sample_rate", sample_rate, *SAMPLE_RATE_RANGE)
    _check_range("n_q", n_q, *N_Q_RANGE)
    _check_range("codebook_bits", codebook_bits, *CODEBOOK_BITS_RANGE)
    _check_range("frame_rate", frame_rate, *FRAME_RATE_RANGE)
    _check_range("num_samples", num_samples, 1, MAX_U64)


def _min_payload(h: BitstreamHeader) -> int:
    """Smallest payload the header allows; for plain files also the exact size."""
    f = h.num_frames
    if h.segment_frames:  # version 3: sizes of the sent codes, the code part >= n_q * F / 32 bytes
        counts = h.frame_counts()
        per_stage = np.bincount(counts, minlength=h.n_q + 1)[::-1].cumsum()[::-1][1:]  # F_s, s = 0..n_q-1
        bound, head = -(-h.n_q * f // CONTEXT_CODES_PER_BYTE), h.head_bytes + h.side_bytes
        if h.context_coded:
            return head + TAG_SIZE + bound
        if h.entropy_coded:
            return head + max(bound, sum(max(2, -(-int(fs) // 8)) for fs in per_stage))
        return head + max(bound, -(-int(per_stage @ np.asarray(h.widths)) // 8))
    if h.context_coded:
        return h.side_bytes + TAG_SIZE + -(-h.n_q * f // CONTEXT_CODES_PER_BYTE)
    if h.entropy_coded:
        # every segment is >= ceil(F/8) bytes (and >= 2: a mode byte plus data)
        return h.side_bytes + h.n_q * max(2, -(-f // 8))
    return h.side_bytes + -(-h.n_q * f * h.codebook_bits // 8)


def read_header(data: bytes) -> BitstreamHeader:
    """Parse and fully validate the header of a `.tcd` file, including its CRC.

    Checks the header against the payload length (truncation, trailing bytes, sizes implied by
    n_q, F, codebook bits and the side info) without decoding the codes.
    """
    data = bytes(data) if not isinstance(data, bytes) else data
    if len(data) < len(MAGIC):
        if MAGIC.startswith(data):
            raise BitstreamError(f"truncated: {len(data)} bytes is too short for a .tcd file")
        raise BitstreamError(f"bad magic: expected {MAGIC!r}, got {data[:4]!r} (not a .tcd file)")
    if data[:4] != MAGIC:
        raise BitstreamError(f"bad magic: expected {MAGIC!r}, got {data[:4]!r} (not a .tcd file)")
    if len(data) > 4 and data[4] not in VERSIONS:
        hint = "; the file is newer than this telucodec, upgrade it" if data[4] > FORMAT_VERSION else ""
        raise BitstreamError(
            f"unsupported format version {data[4]} (this telucodec reads versions "
            f"{', '.join(map(str, VERSIONS))}){hint}"
        )
    if len(data) < HEADER_SIZE:
        raise BitstreamError(f"truncated: header needs {HEADER_SIZE} bytes, file has {len(data)}")
    (
        _magic,
        version,
        flags,
        model_raw,
        sample_rate,
        num_samples,
        n_q,
        codebook_bits,
        frame_rate,
        side_kind_i,
        side_bits,
        side_count,
        payload_length,
    ) = _HEADER_BODY.unpack_from(data, 0)
    (crc_stored,) = _CRC.unpack_from(data, _HEADER_BODY.size)
    actual_payload = len(data) - HEADER_SIZE
    if actual_payload < payload_length:
        raise BitstreamError(
            f"truncated: header announces {payload_length} payload bytes, file has {actual_payload}"
        )
    if actual_payload > payload_length:
        raise BitstreamError(
            f"sizes inconsistent: {actual_payload - payload_length} trailing bytes after the "
            f"{payload_length}-byte payload"
        )
    crc = zlib.crc32(memoryview(data)[HEADER_SIZE:], zlib.crc32(memoryview(data)[: _HEADER_BODY.size]))
    if crc != crc_stored:
        raise BitstreamError(
            f"checksum mismatch: stored CRC32 {crc_stored:08x}, computed {crc:08x} (file is corrupt)"
        )
    if flags not in KNOWN_FLAGS[version]:
        raise BitstreamError(f"bad field value: flags {flags:#04x} are not defined in format version {version}")
    _validate_fields(sample_rate, num_samples, n_q, codebook_bits, frame_rate)
    if side_kind_i >= len(SIDE_KINDS):
        raise BitstreamError(
            f"bad field value: side-info kind {side_kind_i}, must be 0 (none), 1 (rms) or 2 (lufs)"
        )
    if side_bits not in (8, 16):
        raise BitstreamError(f"bad field value: side-info bits {side_bits}, must be 8 or 16")
    if side_kind_i == 0 and side_count != 0:
        raise BitstreamError(f"bad field value: side-info kind 'none' with {side_count} values")
    header = BitstreamHeader(
        format_version=version,
        flags=flags,
        model_id=model_raw.hex(),
        sample_rate=sample_rate,
        num_samples=num_samples,
        n_q=n_q,
        codebook_bits=codebook_bits,
        frame_rate=frame_rate,
        side_kind=SIDE_KINDS[side_kind_i],
        side_bits=side_bits,
        side_count=side_count,
        payload_length=payload_length,
        crc32=crc_stored,
    )
    if version == 4:  # the width block
        header = replace(header, stage_bits=_read_widths(data[HEADER_SIZE:], n_q, codebook_bits))
    if version >= 3:  # the count block, bounded by the payload before anything is allocated
        seg, counts, count_bytes = read_counts(data[HEADER_SIZE + n_q * (version == 4):], n_q, header.num_frames,
                                               header.side_bytes, -(-n_q * header.num_frames // CONTEXT_CODES_PER_BYTE),
                                               uniform_ok=version == 4)
        header = replace(header, segment_frames=seg, segment_counts=counts, count_bytes=count_bytes)
    need = _min_payload(header)
    plain_mismatch = not header.entropy_coded and need != payload_length
    if plain_mismatch or need > payload_length:
        raise BitstreamError(
            f"sizes inconsistent: n_q={n_q}, {header.num_frames} frames of {codebook_bits} bits and "
            f"{side_count} side values need {'at least ' if header.entropy_coded else ''}{need} "
            f"payload bytes, header says {payload_length}"
        )
    return header


def _read_widths(payload: bytes, n_q: int, codebook_bits: int) -> tuple[int, ...]:
    """A version-4 width block: n_q stage widths, each 1..codebook bits, the widest codebook bits,
    not all equal."""
    if len(payload) < n_q:
        raise BitstreamError(f"sizes inconsistent: a version-4 payload starts with {n_q} stage widths, "
                             f"the payload has {len(payload)} bytes")
    widths = tuple(payload[:n_q])
    if min(widths) < 1 or max(widths) != codebook_bits or len(set(widths)) == 1:
        raise BitstreamError(f"bad field value: stage widths {list(widths)[:8]}{'...' if n_q > 8 else ''} must be "
                             f"1..{codebook_bits} bits, the widest {codebook_bits}, not all equal")
    return widths


# ---------------------------------------------------------------------------------------------
# Public API


def _codes_array(codes: Codes) -> np.ndarray:
    """Validate a `Codes` for writing; returns its codes as int64 numpy [n_q, F]."""
    try:
        model_raw = bytes.fromhex(codes.model_id)
    except (ValueError, TypeError) as e:
        raise BitstreamError(f"model_id must be 16 hex chars, got {codes.model_id!r}") from e
    if len(model_raw) != 8:
        raise BitstreamError(f"model_id must be 16 hex chars, got {codes.model_id!r}")
    tensor = codes.codes
    arr = tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)
    if arr.ndim != 2:
        raise BitstreamError(f"codes must be [n_q, F], got shape {tuple(arr.shape)}")
    if arr.dtype.kind not in "iu":
        raise BitstreamError(f"codes must be integers, got dtype {arr.dtype}")
    widths = codes.widths
    if len(widths) != arr.shape[0]:
        raise BitstreamError(f"codes have {arr.shape[0]} stages but {len(widths)} stage widths")
    _validate_fields(codes.sample_rate, codes.num_samples, arr.shape[0], max(widths, default=1), codes.frame_rate)
    if min(widths, default=1) < 1:
        raise BitstreamError(f"stage widths must be >= 1 bit, got {widths}")
    f = num_frames_for(codes.num_samples, codes.sample_rate, codes.frame_rate)
    if arr.shape[1] != f:
        raise BitstreamError(
            f"codes have {arr.shape[1]} frames but {codes.num_samples} samples at {codes.sample_rate} Hz "
            f"and {codes.frame_rate} frames/s imply ceil(...) = {f}"
        )
    for q, (row, bits) in enumerate(zip(arr, widths)):
        if row.size and (int(row.min()) < 0 or int(row.max()) >= 1 << bits):
            raise BitstreamError(f"code values of stage {q} must be in [0, {1 << bits}), "
                                 f"got [{int(row.min())}, {int(row.max())}]")
    if codes.side_kind not in SIDE_KINDS:
        raise BitstreamError(f"side_kind must be one of {SIDE_KINDS}, got {codes.side_kind!r}")
    if codes.side_kind == "none" and len(codes.side) > 0:
        raise BitstreamError(f"side_kind 'none' must have no side values, got {len(codes.side)}")
    if any(int(v) < 0 or int(v) > 0xFFFF for v in codes.side):
        raise BitstreamError("side values must be integers in 0..65535")
    return arr.astype(np.int64, copy=False)


def _code_part(arr: np.ndarray, counts: np.ndarray, widths: list[int], entropy: bool,
               tables: ContextTables | None) -> list[bytes]:
    """Versions 3 and 4: the code part of the payload for per-frame stage `counts` (module docstring)."""
    sent = sent_mask(counts, arr.shape[0])
    bound = -(-arr.shape[0] * arr.shape[1] // CONTEXT_CODES_PER_BYTE)
    if tables is not None:
        coded = encode_codes(tables, arr, counts)
        return [tables.tag, coded, bytes(max(0, bound - len(coded)))]
    if entropy:
        coded = b"".join(encode_codebook(row[keep], bits) for row, keep, bits in zip(arr, sent, widths))
    else:
        coded = pack_rows([row[keep] for row, keep in zip(arr, sent)], widths)
    return [coded, bytes(max(0, bound - len(coded)))]


def tables_fit(tables: ContextTables | None, widths: list[int]) -> bool:
    """Whether `tables` can context-code stages of these code widths (`Codes.widths`)."""
    return tables is not None and tables.fits(widths)


def write_bitstream(codes: Codes, entropy: bool = False, tables: ContextTables | None = None) -> bytes:
    """Serialize `codes` to the bytes of a `.tcd` file.

    With `entropy=True` the file is flagged entropy coded and each quantizer is stored in the
    smaller of raw and ANS form, so it is never more than n_q bytes larger than a plain file.
    With `tables` (a model's `ContextTables`) it is a context-coded version-2 file instead. Codes whose
    `stage_counts` differ between frames make a version-3 file (per-segment counts) in that coding.
    """
    arr = _codes_array(codes)
    widths = codes.widths
    bits = max(widths)
    counts = stage_counts_of(codes.stage_counts, arr)  # None: every frame sends every stage
    side = np.asarray([int(v) for v in codes.side], dtype=np.int64)
    side_bits = 16 if side.size and int(side.max()) > 0xFF else 8
    parts = [pack_bits(side, side_bits)]
    version, flags = 1, FLAG_ENTROPY if entropy else 0
    if tables is not None and not tables_fit(tables, widths):
        raise BitstreamError(f"the entropy tables code {tables.n_stages} codebooks of {widths_text(tables.stage_bits)} bits, "
                             f"not {arr.shape[0]} of {widths_text(widths)}")
    mixed = len(set(widths)) > 1
    if mixed and counts is None:  # version 4 always has a count block
        counts = np.full(arr.shape[1], arr.shape[0], dtype=np.int64)
    if counts is not None:  # versions 3, 4: the count block first, then the side info and the sent codes
        parts = [pack_counts(counts, arr.shape[0]), *parts, *_code_part(arr, counts, widths, entropy, tables)]
        version, flags = 3, FLAG_CONTEXT if tables is not None else flags
        if mixed:
            parts.insert(0, bytes(widths))
            version = 4
    elif tables is not None:
        coded = encode_codes(tables, arr)
        need = -(-arr.size // CONTEXT_CODES_PER_BYTE)
        parts += [tables.tag, coded, bytes(max(0, need - len(coded)))]
        version, flags = 2, FLAG_CONTEXT
    elif entropy:
        parts += [encode_codebook(row, bits) for row in arr]
    else:
        parts.append(pack_bits(arr, bits))
    payload = b"".join(parts)
    if len(payload) > MAX_U32 or side.size > MAX_U32:
        raise BitstreamError(f"payload of {len(payload)} bytes is too large for one .tcd file")
    body = _HEADER_BODY.pack(
        MAGIC,
        version,
        flags,
        bytes.fromhex(codes.model_id),
        codes.sample_rate,
        codes.num_samples,
        arr.shape[0],
        bits,
        codes.frame_rate,
        SIDE_KINDS.index(codes.side_kind),
        side_bits,
        side.size,
        len(payload),
    )
    crc = zlib.crc32(payload, zlib.crc32(body))
    return body + _CRC.pack(crc) + payload


def write_smallest(codes: Codes, tables: ContextTables | None = None) -> tuple[bytes, int, int]:
    """(the smallest of the plain, the static-ANS and (when the model has entropy tables) the
    context-coded file, the plain file's size, the smallest entropy-coded file's size). On short
    clips the static coder's tables can cost more than they save; the header says which coding a
    file uses, so the reader needs no hint. A tie keeps the earlier of plain, static ANS, context
    (they read faster). `tables`: None = the tables registered for `codes.model_id` (a loaded
    model with tables registers them), if any."""
    tables = tables if tables is not None else tables_for(codes.model_id)
    plain = write_bitstream(codes)
    coded = [write_bitstream(codes, entropy=True)]
    if tables_fit(tables, codes.widths):
        coded.append(write_bitstream(codes, tables=tables))
    best = min(coded, key=len)
    return (best if len(best) < len(plain) else plain), len(plain), len(best)


def read_arrays(data: bytes, expected_model_id: str | None = None,
                tables: ContextTables | None = None) -> tuple[BitstreamHeader, np.ndarray, list[int]]:
    """Parse a `.tcd` file without torch: (header, codes int64 [n_q, F], side info). Every problem
    raises `BitstreamError` naming it. `expected_model_id`: refuse a file made by another model
    rather than decode it to noise. `tables`: the entropy tables a context-coded file needs (None:
    the ones registered for the file's model id)."""
    data = bytes(data) if not isinstance(data, bytes) else data
    header = read_header(data)
    if expected_model_id is not None and header.model_id != expected_model_id.lower():
        raise BitstreamError(
            f"wrong model: file was encoded by model {header.model_id}, this model is {expected_model_id}"
        )
    payload = data[HEADER_SIZE:]
    side_at = header.head_bytes  # 0 before version 3
    side = unpack_bits(payload[side_at : side_at + header.side_bytes], header.side_bits, header.side_count)
    f, n_q, bits = header.num_frames, header.n_q, header.codebook_bits
    if header.context_coded:
        arr = _read_context(header, payload, tables if tables is not None else tables_for(header.model_id))
    elif header.segment_frames:  # versions 3 and 4
        arr = _read_sent(header, payload)
    elif header.entropy_coded:
        pos = header.side_bytes
        rows = []
        for q in range(n_q):
            row, pos = decode_codebook(payload, pos, f, bits, q)
            rows.append(row)
        if pos != len(payload):
            raise BitstreamError(
                f"sizes inconsistent: {len(payload) - pos} unused bytes after the last quantizer"
            )
        arr = np.stack(rows)
    else:
        body = payload[header.side_bytes :]
        arr = unpack_bits(body, bits, n_q * f).reshape(n_q, f)
        used_bits = n_q * f * bits
        if used_bits % 8 and body[-1] & ((1 << (8 - used_bits % 8)) - 1):
            raise BitstreamError("bad field value: nonzero padding bits after the codes")
    return header, np.ascontiguousarray(arr, dtype=np.int64), [int(v) for v in side]


def _read_sent(header: BitstreamHeader, payload: bytes) -> np.ndarray:
    """Versions 3 and 4, plain or static ANS: the sent codes into [n_q, F] (unsent codes 0), the
    code part's padding checked (zero bytes, only up to ceil(n_q * F / 32))."""
    n_q, f, widths = header.n_q, header.num_frames, header.widths
    sent = sent_mask(header.frame_counts(), n_q)
    start = pos = header.head_bytes + header.side_bytes
    arr = np.zeros((n_q, f), dtype=np.int64)
    if header.entropy_coded:
        for q in range(n_q):
            arr[q, sent[q]], pos = decode_codebook(payload, pos, int(sent[q].sum()), widths[q], q)
    else:
        per_stage = [int(n) for n in sent.sum(1)]
        for q, row in enumerate(unpack_rows(payload[pos:], widths, per_stage)):
            arr[q, sent[q]] = row
        total = sum(n * b for n, b in zip(per_stage, widths))
        pos += -(-total // 8)
        if total % 8 and payload[pos - 1] & ((1 << (8 - total % 8)) - 1):
            raise BitstreamError("bad field value: nonzero padding bits after the codes")
    want = max(pos - start, -(-n_q * f // CONTEXT_CODES_PER_BYTE))
    if len(payload) - start != want:
        raise BitstreamError(f"sizes inconsistent: the code part is {len(payload) - start} bytes, its codes "
                             f"and padding make {want}")
    if any(payload[pos:]):
        raise BitstreamError("bad field value: nonzero padding bytes after the codes")
    return arr


def _read_context(header: BitstreamHeader, payload: bytes, tables: ContextTables | None) -> np.ndarray:
    """The codes of a context-coded payload, after checking the tables are the ones it names."""
    pos = header.head_bytes + header.side_bytes
    tag = payload[pos : pos + TAG_SIZE]
    if tables is None:
        raise BitstreamError(f"context-coded file: needs the entropy tables of model {header.model_id} "
                             f"(tag {tag.hex()}): load that model first (its folder holds {TABLES_FILE})")
    if tag != tables.tag:
        raise BitstreamError(f"context-coded file: coded with entropy tables {tag.hex()}, these are "
                             f"{tables.tag.hex()} (another model's tables)")
    if not tables_fit(tables, header.widths):
        raise BitstreamError(f"context-coded file: {header.n_q} codebooks of {widths_text(header.widths)} bits, "
                             f"the entropy tables code {tables.n_stages} of {widths_text(tables.stage_bits)}")
    counts = header.frame_counts() if header.segment_frames else None
    return decode_codes(tables, payload[pos + TAG_SIZE :], header.n_q, header.num_frames, counts)


def read_bitstream(data: bytes, expected_model_id: str | None = None,
                   tables: ContextTables | None = None) -> Codes:
    """Parse a `.tcd` file into `Codes` (`read_arrays`, then the codes as a torch tensor)."""
    import torch

    header, arr, side = read_arrays(data, expected_model_id, tables)
    return Codes(
        codes=torch.from_numpy(arr),
        num_samples=header.num_samples,
        model_id=header.model_id,
        sample_rate=header.sample_rate,
        frame_rate=header.frame_rate,
        codebook_bits=header.codebook_bits,
        side_kind=header.side_kind,
        side=side,
        stage_counts=header.frame_counts() if header.segment_frames and not _uniform(header) else None,
        stage_bits=header.stage_bits,
    )


def _uniform(header: BitstreamHeader) -> bool:
    """Every segment sends every stage (a version-4 file's count block may say so)."""
    return set(header.segment_counts) == {header.n_q}



def describe(data: bytes) -> dict[str, Any]:
    """The `telucodec info --json` dict of a `.tcd` file (header only; codes not decoded).
    "coding": how the codes are stored: "plain", "static_ans" or "context"."""
    h = read_header(data)
    duration = h.duration_s
    mean_n_q = float(h.frame_counts().mean()) if h.segment_frames else float(h.n_q)
    bits_per_frame = mean_sent_bits(h.widths, h.frame_counts())
    return {
        "format_version": h.format_version,
        "model_id": h.model_id,
        "sample_rate": h.sample_rate,
        "num_samples": h.num_samples,
        "duration_s": duration,
        "n_q": h.n_q,
        "codebook_bits": h.codebook_bits,
        "frame_rate": h.frame_rate,
        "kbps_nominal": bits_per_frame * h.frame_rate / 1000.0,
        "stage_bits": h.widths,  # each stage's code width (all codebook_bits before version 4)
        "kbps_actual": len(data) * 8 / duration / 1000.0,
        "num_frames": h.num_frames,
        "side_kind": h.side_kind,
        "side_count": h.side_count,
        "entropy_coded": h.entropy_coded,
        "coding": h.coding,
        "bytes": len(data),
        "header_bytes": HEADER_SIZE,
        "n_q_mean": mean_n_q,  # version 3: the mean stages per frame (n_q is the most any frame sends)
        "segment_frames": h.segment_frames,  # version 3: frames per segment of one count; else 0
    }


def entropy_saving(codes: Codes, tables: ContextTables | None = None) -> float:
    """Fraction of file bytes saved by the smallest entropy-coded file (0.1 = 10 % smaller; may be
    slightly < 0); `tables` as in `write_smallest`."""
    _, plain, coded = write_smallest(codes, tables)
    return 1.0 - coded / plain


__all__ = ["CODINGS", "FORMAT_VERSION", "HEADER_SIZE", "MAGIC", "VERSIONS", "BitstreamError", "BitstreamHeader",
           "describe", "entropy_saving", "num_frames_for", "pack_bits", "read_arrays", "read_bitstream",
           "read_header", "tables_fit", "write_smallest", "unpack_bits", "write_bitstream"]
