"""Context-model entropy coding (formats/context_*.py, .tcd version 2): exact round trips for any
codes, streaming equals whole files, a second process and the ONNX path decode the same, damaged
data is refused, the writer picks the smallest coding, and tables are part of the model id."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_pieces_round_trip, mixed_tables
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telucodec.errors import BitstreamError, ModelError
from telucodec.formats.bitstream import (
    HEADER_SIZE,
    describe,
    read_arrays,
    read_bitstream,
    read_header,
    write_bitstream,
    write_smallest,
)
from telucodec.formats.codes import Codes
from telucodec.formats.context_coder import ContextDecoder, decode_codes, encode_codes
from telucodec.formats.context_fit import fit_tables, stage_cost_bits
from telucodec.formats.context_tables import TABLES_FILE, ContextTables, register

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("uniform", "constant", "repeats", "rarest", "likeliest", "extremes", "markov")
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_tables(seed: int, bits: int, n_stages: int, a: int = 3, b: int = 2, k: int = 3) -> ContextTables:
    """Valid tables from integer draws only (any shape within the limits: an adversary's tables),
    every stage `bits` wide (`conftest.mixed_tables` of one width)."""
    return mixed_tables(seed, [bits] * n_stages, a, b, k)


def make_codes_for(tables: ContextTables, n_q: int, frames: int, kind: str, seed: int) -> np.ndarray:
    """Codes [n_q, frames] of one kind; "rarest"/"likeliest" pick, frame by frame, the code the
    tables find least / most likely in its context (the costliest and the cheapest streams)."""
    rng = np.random.default_rng(seed)
    v = tables.size
    if kind == "uniform":
        return rng.integers(0, v, (n_q, frames))
    if kind == "constant":
        return np.full((n_q, frames), int(rng.integers(0, v)))
    if kind == "extremes":
        return np.where(rng.random((n_q, frames)) < 0.5, 0, v - 1)
    if kind in ("repeats", "markov"):  # held codes; else a code near the last one or the previous stage's
        out = np.empty((n_q, frames), dtype=np.int64)
        block = max(1, v // 16)
        for q in range(n_q):
            x = int(rng.integers(0, v))
            for t in range(frames):
                u = rng.random()
                if u < (0.8 if kind == "repeats" else 0.3):
                    pass
                elif u < 0.75:
                    x = x // block * block + int(rng.integers(0, block))
                else:
                    x = (int(out[q - 1, t]) if q else int(rng.integers(0, v))) // block * block + int(rng.integers(0, block))
                out[q, t] = x
        return out
    out = np.zeros((n_q, frames), dtype=np.int64)
    for t in range(frames):
        for q in range(n_q):
            prev_class, stage_class, context, _, freq, _ = tables.lookups()[q][:6]
            p = out[q, t - 1] if t else v
            k = context[prev_class[p], stage_class[out[q - 1, t]] if q else 0]
            out[q, t] = int(np.argmin(freq[k]) if kind == "rarest" else np.argmax(freq[k]))
    return out


def clip_codes(arr: np.ndarray, bits: int, model_id: str = "00112233aabbccdd") -> Codes:
    return Codes(codes=torch.from_numpy(np.asarray(arr, dtype=np.int64)), num_samples=arr.shape[1] * 320 - 7,
                 model_id=model_id, sample_rate=16000, frame_rate=50, codebook_bits=bits)


@pytest.fixture(scope="module")
def fitted() -> tuple[ContextTables, list[np.ndarray]]:
    """Tables fitted on synthetic 10-bit, 12-stage Markov codes, and held-out clips of the same kind."""
    clips = [make_codes_for(random_tables(0, 10, 1), 12, 120 + 7 * i, "markov", i) for i in range(24)]
    return fit_tables(clips[:20], 10, prev_classes_first=8, prev_classes=4, stage_classes=4, contexts=8,
                      alphas=(64.0,)), clips[20:]


# ---- exact round trips ----------------------------------------------------------------------


@PROPERTY
@given(seed=st.integers(0, 2**31), bits=st.sampled_from([1, 2, 3, 10, 12]), n_stages=st.integers(1, 12),
       n_q=st.integers(1, 12), frames=st.integers(0, 150), kind=st.sampled_from(KINDS),
       shape=st.tuples(st.integers(1, 6), st.integers(1, 4), st.integers(1, 6)))
def test_round_trip_any_codes_any_tables(seed, bits, n_stages, n_q, frames, kind, shape) -> None:
    tables = random_tables(seed, bits, n_stages, *shape)
    n_q = min(n_q, n_stages)
    arr = make_codes_for(tables, n_q, frames, kind, seed)
    data = encode_codes(tables, arr)
    np.testing.assert_array_equal(decode_codes(tables, data, n_q, frames), arr)
    if frames:
        codes = clip_codes(arr, bits)
        tcd = write_bitstream(codes, tables=tables)
        assert describe(tcd)["coding"] == "context" and describe(tcd)["format_version"] == 2
        assert torch.equal(read_bitstream(tcd, tables=tables).codes, codes.codes)
        best, plain, coded = write_smallest(codes, tables)
        assert len(best) == min(plain, coded) and coded <= len(tcd)
        assert torch.equal(read_bitstream(best, tables=tables).codes, codes.codes)


@PROPERTY
@given(seed=st.integers(0, 2**31), frames=st.integers(0, 160), kind=st.sampled_from(KINDS),
       n_q=st.integers(1, 12), cuts=st.lists(st.integers(0, 160), max_size=12),
       byte_cuts=st.lists(st.integers(0, 4000), max_size=20))
def test_streaming_equals_whole_file(fitted, seed, frames, kind, n_q, cuts, byte_cuts) -> None:
    """Frames pushed in any pieces give the whole-file bytes; bytes fed in any pieces give the
    frames, each as soon as its bytes are in, never a frame the encoder has not taken."""
    tables = fitted[0]
    assert_pieces_round_trip(tables, make_codes_for(tables, n_q, frames, kind, seed), cuts, byte_cuts)


def test_carry_through_pending_bytes_round_trips(monkeypatch) -> None:
    """The range coder's rarest path, a carry into a run of held-back 0xFF bytes, is taken by
    real streams here, and they decode exactly."""
    from telucodec.formats import context_coder

    seen = []
    shift = context_coder.ContextEncoder._shift_low

    def spy(self, low: int, out: bytearray) -> int:
        if low >= 1 << 32 and self._pending:
            seen.append(self._pending)
        return shift(self, low, out)

    monkeypatch.setattr(context_coder.ContextEncoder, "_shift_low", spy)
    for seed in range(40):
        tables = random_tables(seed, 10, 4)
        arr = make_codes_for(tables, 4, 200, "uniform", seed)
        before = len(seen)
        data = encode_codes(tables, arr)
        if len(seen) > before:
            np.testing.assert_array_equal(decode_codes(tables, data, 4, 200), arr)
    assert seen, "no stream carried into pending bytes"


def test_unseen_codes_round_trip() -> None:
    """Tables fitted on codes 0..15 only still code every other value (each has frequency >= 1)."""
    rng = np.random.default_rng(3)
    tables = fit_tables([rng.integers(0, 16, (3, 200)) for _ in range(10)], 10, 4, 2, 2, 4, alphas=(16.0,))
    unseen = rng.integers(1000, 1024, (3, 300))
    np.testing.assert_array_equal(decode_codes(tables, encode_codes(tables, unseen), 3, 300), unseen)


def test_context_coding_saves_on_structured_codes(fitted) -> None:
    """On held-out codes of the kind it was fitted on, the context coder beats raw packing by far
    and costs within a few bytes per file of the ideal code length."""
    tables, held = fitted
    for arr in held:
        tcd = write_bitstream(clip_codes(arr, 10), tables=tables)
        ideal = stage_cost_bits(tables, [arr], 12).sum() / 8
        plain = len(write_bitstream(clip_codes(arr, 10)))
        assert len(tcd) < 0.9 * plain
        assert len(tcd) - HEADER_SIZE - 4 <= ideal + 3


def test_writer_picks_the_smallest_and_info_says_which(fitted) -> None:
    tables, held = fitted
    register("feedfacecafef00d", tables)  # what a loaded model with tables does under its id
    structured = clip_codes(held[0], 10, "feedfacecafef00d")
    data, plain, coded = write_smallest(structured)  # tables found from the model id
    assert describe(data)["coding"] == "context" and len(data) == coded < plain
    assert torch.equal(read_bitstream(data).codes, structured.codes)
    noise = clip_codes(np.random.default_rng(1).integers(0, 1024, (12, 20)), 10, "feedfacecafef00d")
    data, plain, _ = write_smallest(noise)  # 20 frames of noise: no coding beats plain
    assert describe(data)["coding"] == "plain" and len(data) == plain
    skewed = clip_codes(np.minimum(np.random.default_rng(2).geometric(0.02, (2, 4000)) - 1, 1023), 10)
    data, _, _ = write_smallest(skewed)  # no tables for this model id: static ANS as before
    assert describe(data)["coding"] == "static_ans" and describe(data)["format_version"] == 1


# ---- a second process, and the ONNX path --------------------------------------------------------


def test_second_process_decodes_identically(fitted, tmp_path) -> None:
    """Files written here decode to the same codes in a fresh interpreter that loads the tables
    from their file and never imports torch (the numpy path `read_arrays`)."""
    tables, held = fitted
    tables.save(tmp_path / TABLES_FILE)
    expected = {}
    for i, (arr, n_q) in enumerate(zip(held, (1, 3, 6, 12))):
        (tmp_path / f"{i}.tcd").write_bytes(write_bitstream(clip_codes(arr[:n_q], 10), tables=tables))
        expected[i] = arr[:n_q]
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        import numpy as np
        from telucodec.formats.bitstream import read_arrays
        from telucodec.formats.context_tables import ContextTables
        folder = Path({str(tmp_path)!r})
        tables = ContextTables.load(folder / {TABLES_FILE!r})
        for i in range({len(expected)}):
            header, codes, side = read_arrays((folder / f"{{i}}.tcd").read_bytes(), tables=tables)
            np.save(folder / f"{{i}}.npy", codes)
        assert "torch" not in sys.modules, "torch was imported"
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for i, arr in expected.items():
        np.testing.assert_array_equal(np.load(tmp_path / f"{i}.npy"), arr)


def test_onnx_runner_decodes_a_context_coded_file_like_pytorch(example_clips, tmp_path) -> None:
    """Codes read from a context-coded .tcd (numpy path, tables from their file) and decoded by the
    ONNX runner give PyTorch's audio."""
    from telucodec.config import get_config
    from telucodec.deploy.export import export_onnx
    from telucodec.formats.audio import load_audio
    from telucodec.model.codec import Codec

    torch.manual_seed(0)
    model = Codec(get_config("tiny")).eval()
    model.entropy_tables = random_tables(5, model.codebook_bits, model.max_n_q)
    export_onnx(model, tmp_path / "onnx", example_clips[1])
    model.entropy_tables.save(tmp_path / "onnx" / TABLES_FILE)  # what an export with tables should carry
    wav = load_audio(example_clips[2])[:24000]
    codes = model.encode(wav, 16000)
    (tmp_path / "clip.tcd").write_bytes(write_bitstream(codes, tables=model.entropy_tables))
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        import numpy as np
        from telucodec.deploy.onnx_runtime import OnnxCodec
        from telucodec.formats.bitstream import read_arrays
        from telucodec.formats.context_tables import ContextTables
        folder = Path({str(tmp_path)!r})
        codec = OnnxCodec(folder / "onnx")
        tables = ContextTables.load(folder / "onnx" / {TABLES_FILE!r})
        header, codes, side = read_arrays((folder / "clip.tcd").read_bytes(), codec.model_id, tables)
        np.save(folder / "codes.npy", codes)
        np.save(folder / "out.npy", codec.decode(codes, side, header.num_samples))
        assert "torch" not in sys.modules, "torch was imported"
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "codes.npy"), codes.codes.numpy())
    assert float(np.abs(np.load(tmp_path / "out.npy") - model.decode(codes).numpy()).max()) < 1e-4


# ---- damaged data is refused ----------------------------------------------------------------


def _refix_crc(data: bytes) -> bytes:
    body, payload = data[: HEADER_SIZE - 4], data[HEADER_SIZE:]
    return body + zlib.crc32(payload, zlib.crc32(body)).to_bytes(4, "little") + payload


def test_damage_is_refused(fitted) -> None:
    """Truncation at every byte and stale-CRC bit flips: BitstreamError; flips behind a valid CRC:
    BitstreamError or codes of the announced shape, nothing else."""
    tables, held = fitted
    files = [write_bitstream(clip_codes(arr[:n_q], 10), tables=tables) for arr, n_q in zip(held, (1, 3, 12))]
    for data in files:
        for n in range(len(data)):
            with pytest.raises(BitstreamError):
                read_bitstream(data[:n], tables=tables)
    rng = np.random.default_rng(0)
    refused = 0
    for i in range(900):
        data = bytearray(files[i % len(files)])
        for _ in range(int(rng.integers(1, 4))):
            pos = int(rng.integers(HEADER_SIZE * 8 if i % 3 else 0, len(data) * 8))
            data[pos // 8] ^= 1 << (pos % 8)
        with pytest.raises(BitstreamError):
            read_bitstream(bytes(data), tables=tables)
        try:
            header, codes, _ = read_arrays(_refix_crc(bytes(data)), tables=tables)
        except BitstreamError:
            refused += 1
            continue
        assert codes.shape == (header.n_q, header.num_frames)
    assert refused > 100


@settings(max_examples=150, deadline=None)
@given(payload=st.binary(max_size=600), n_q=st.integers(1, 12), frames=st.integers(1, 400),
       good_tag=st.booleans())
def test_arbitrary_payload_behind_a_valid_crc(fitted, payload, n_q, frames, good_tag) -> None:
    """Any coded bytes under a valid header and CRC: codes of the announced shape or BitstreamError."""
    tables = fitted[0]
    template = write_bitstream(clip_codes(np.zeros((n_q, frames), dtype=np.int64), 10), tables=tables)
    tag = tables.tag if good_tag else payload[:4].ljust(4, b"\x00")
    body = tag + payload.ljust(-(-n_q * frames // 32), b"\x00")
    data = bytearray(template[:HEADER_SIZE] + body)
    data[36:40] = len(body).to_bytes(4, "little")
    try:
        header, codes, _ = read_arrays(_refix_crc(bytes(data)), tables=tables)
    except BitstreamError:
        return
    assert codes.shape == (n_q, frames) and int(codes.min()) >= 0 and int(codes.max()) < 1024


def test_named_errors(fitted) -> None:
    tables, held = fitted
    data = write_bitstream(clip_codes(held[0][:3], 10, "0badc0de0badc0de"), tables=tables)
    with pytest.raises(BitstreamError, match="needs the entropy tables of model 0badc0de0badc0de"):
        read_bitstream(data)
    with pytest.raises(BitstreamError, match="coded with entropy tables .*these are"):
        read_bitstream(data, tables=random_tables(1, 10, 12))
    with pytest.raises(BitstreamError, match="tables code 2 codebooks"):
        write_bitstream(clip_codes(held[0][:3], 10), tables=random_tables(1, 10, 2))
    assert read_header(data).coding == "context"
    older = bytearray(data)  # a version-2 header with version 1's flags is refused
    older[5] = 1
    with pytest.raises(BitstreamError, match="flags 0x01 are not defined in format version 2"):
        read_bitstream(_refix_crc(bytes(older)), tables=tables)
    too_short = bytearray(data[: HEADER_SIZE + 5])
    too_short[36:40] = (5).to_bytes(4, "little")
    with pytest.raises(BitstreamError, match="sizes inconsistent"):
        read_bitstream(_refix_crc(bytes(too_short)), tables=tables)
    dec = ContextDecoder(tables, 3)
    with pytest.raises(BitstreamError, match="nonzero bytes after"):
        dec.feed(encode_codes(tables, held[0][:3, :10]) + bytes(8) + b"\x07", 10)
        dec.finish(10)


# ---- the tables: validation, files, model ids ------------------------------------------------


def test_tables_file_round_trip_and_validation(fitted, tmp_path) -> None:
    tables = fitted[0]
    path = tables.save(tmp_path / TABLES_FILE)
    again = ContextTables.load(path)
    assert again.digest == tables.digest and again.tag == tables.tag
    base = tables.to_arrays()
    bad_cases = {
        "sums to": {"stage1.repeat": base["stage1.repeat"] + 1},
        "frequency >= 1": {"stage0.freq": np.where(np.arange(1024) == 5, 0, base["stage0.freq"]).astype(np.uint16)},
        "out of range": {"stage2.prev_class": np.full(1025, 200, dtype=np.uint8)},
        "must be uint16": {"stage0.freq": base["stage0.freq"].astype(np.int32)},
        "missing arrays": {"stage0.extra": np.zeros(3, dtype=np.uint8)},
    }
    for message, change in bad_cases.items():
        with pytest.raises(ModelError, match=message):
            ContextTables.from_arrays({**base, **change}, "t")
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(ModelError, match="junk.safetensors: not a valid safetensors"):
        ContextTables.load(tmp_path / "junk.safetensors")


def test_fit_is_deterministic_here() -> None:
    """Two fits of the same codes give the same tables (the held-out choice of smoothing included)."""
    clips = [make_codes_for(random_tables(0, 6, 1), 3, 60 + i, "markov", i) for i in range(20)]
    first, again = (fit_tables(clips, 6, 8, 4, 4, 8, alphas=(16.0, 256.0)) for _ in range(2))
    assert first.digest == again.digest and first.n_stages == 3 and first.bits == 6


def test_tables_enter_the_model_id_only_when_present(tmp_path) -> None:
    from telucodec.config import get_config
    from telucodec.model.codec import Codec
    from telucodec.model.loading import load_model

    torch.manual_seed(0)
    model = Codec(get_config("tiny")).eval()
    bare = model.model_id
    model.save_pretrained(tmp_path / "bare")
    assert not (tmp_path / "bare" / TABLES_FILE).exists() and load_model(tmp_path / "bare").model_id == bare
    model.entropy_tables = random_tables(2, model.codebook_bits, model.max_n_q)
    with_tables = model.model_id
    assert with_tables != bare
    model.save_pretrained(tmp_path / "tables")
    loaded = load_model(tmp_path / "tables")
    assert loaded.model_id == with_tables and loaded.entropy_tables.digest == model.entropy_tables.digest
    assert Codec.from_bytes(model.to_bytes()).model_id == with_tables  # a worker process gets the same id
    codes = loaded.encode(np.sin(np.arange(16000) * 0.05).astype(np.float32) * 0.3, 16000)
    data, _, _ = write_smallest(codes)  # the loaded model registered its tables under its id
    assert torch.equal(read_bitstream(data, expected_model_id=loaded.model_id).codes, codes.codes)
    model.entropy_tables = None
    assert model.model_id == bare
    model.save_pretrained(tmp_path / "tables")  # re-saved without tables: the stale file goes
    assert load_model(tmp_path / "tables").model_id == bare
    (tmp_path / "tables" / TABLES_FILE).write_bytes(b"junk")
    with pytest.raises(ModelError, match=TABLES_FILE):
        load_model(tmp_path / "tables")


def test_shipped_model_ids_are_unchanged() -> None:
    """Only telugu-v6 and telugu-v7 (shipped with their tables) have tables, so every shipped id is the one its model
    card (and its released .tcd files) carry, the older models' ids as they were shipped."""
    from telucodec.model.loading import PRETRAINED_DIR, load_model, shipped_models

    assert sorted(p.parent.name for p in PRETRAINED_DIR.glob(f"*/{TABLES_FILE}")) == ["telugu-v6", "telugu-v7"]
    for name in shipped_models():
        card = PRETRAINED_DIR / name / "MODEL_CARD.md"
        if card.is_file():
            assert load_model(name).model_id in card.read_text(), name
