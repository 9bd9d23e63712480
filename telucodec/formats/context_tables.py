"""A model's context entropy tables: integer frequency tables for coding its codes in context.

For each RVQ stage q (V_q = 2**b_q codes, b_q in 1..15; stages may differ in size) the probability
of a code c at frame t depends on two earlier codes, both known to the decoder before it decodes c:

    p = codes[q, t-1]   the same stage's code one frame earlier (none at a stream's first frame)
    s = codes[q-1, t]   the previous stage's code in the same frame (stage 0 has none)

Each is mapped to a small class (`prev_class[p]`, `stage_class[s]`; the classes were fitted by
merging codes whose next-code distributions are alike, `context_fit.py`), and the pair of classes
to one of K contexts (`context[a, b]`). `prev_class` has V_q + 1 entries (entry V_q: no previous
code), `stage_class` V_{q-1} (stage 0: V_0 zeros). Context k has an integer frequency per code,
`freq[k]` (each >= 1, so every code can be coded, including codes the fit never saw), and a repeat
mass `repeat[k]` added to the code p itself (speech holds a code over several frames far more
often than chance), with sum(freq[k]) + repeat[k] == 2**T_q exactly. At a stream's first frame
there is no p: the repeat mass is unused.

The total 2**T_q follows from the stage's size: T_q = 16 (uint16 frequencies) for stages of up to
4096 codes, as every table so far, and T_q = LARGE_TOTAL_BITS (uint32 frequencies) for larger
ones, where a total of 2**16 would spend half or more of its mass on the floor of one per code
(32768 codes: half). The coder's resolution r = range >> T_q stays >= 2**(24 - T_q) (the range is
renormalized to >= 2**24), so a larger T_q costs up to -log2(1 - 2**(T_q - 24)) bits a code in
truncation (T = 21: 0.19 at worst), a smaller one more on the floor and on rounding small
probabilities. Measured on telugu-v7 latents coded by 2 x 15-bit k-means stages (real bytes of
both stages, bits a frame; books fitted on frames that included these clips, so the level is
flattering, the order between totals is what counts): T = 19: 23.95, 20: 23.88, 21: 23.86,
22: 23.88, 23: 23.93, 24: 24.05; so T = 21.

The tables are integers end to end (uint8 maps, uint16/uint32 frequencies), stored in the model
folder as `entropy_tables.safetensors`; the coder (`context_coder.py`) does integer arithmetic
only, so a file decodes to the same codes on every machine. `digest` (sha256 of the canonical bytes) enters
the model id of a model that has tables, and its first 4 bytes (`tag`) are written into every
context-coded payload, so a file is never decoded with other tables. A stage with T_q != 16 adds
its T_q to the digest; tables of stages of up to 4096 codes hash exactly as before (their ids, and
every file coded with them, are unchanged).

Imports numpy and safetensors only (no torch): the ONNX runtime can read the tables too.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from telucodec.errors import ModelError

TABLES_FILE = "entropy_tables.safetensors"
TABLES_FORMAT = "telucodec-context-tables"
TABLES_VERSION = "1"
TOTAL_BITS = 16
TOTAL = 1 << TOTAL_BITS  # every context's frequencies + repeat mass sum to exactly this
MAX_STAGES = 64
MAX_BITS = 15  # a stage has 2..2**15 codes
SMALL_MAX_BITS = 12  # stages of up to 2**12 codes: total 2**16, uint16 (every table before mixed sizes)
LARGE_TOTAL_BITS = 21  # larger stages: total 2**21, uint32 (measured: see the docstring)
_FIELDS = ("prev_class", "stage_class", "context", "freq", "repeat")
_DTYPES = {"prev_class": np.uint8, "stage_class": np.uint8, "context": np.uint8, "freq": np.uint16,
           "repeat": np.uint16}


def total_bits_for(size: int) -> int:
    """T of a stage of `size` codes: its frequencies and repeat mass sum to 2**T."""
    return TOTAL_BITS if size <= 1 << SMALL_MAX_BITS else LARGE_TOTAL_BITS


def freq_dtype(size: int) -> type:
    """The stored dtype of the frequencies and repeat mass of a stage of `size` codes."""
    return np.uint16 if total_bits_for(size) == TOTAL_BITS else np.uint32


def _dtype(name: str, size: int) -> type:
    """The stored dtype of field `name` of a stage of `size` codes."""
    return freq_dtype(size) if name in ("freq", "repeat") else _DTYPES[name]


def _stage_size(prev_class: np.ndarray, q: int, source: str) -> int:
    """V_q from the length of stage q's prev_class (V_q + 1), checked: a power of two 2..2**15."""
    v = prev_class.shape[0] - 1 if isinstance(prev_class, np.ndarray) and prev_class.ndim == 1 else 0
    if v < 2 or v & (v - 1) or v > 1 << MAX_BITS:
        raise ModelError(f"{source}: stage {q} has {max(v, 0)} codes (prev_class has {v + 1} entries), "
                         f"must be a power of two 2..{1 << MAX_BITS}")
    return v


@dataclass(frozen=True)
class StageTables:
    """One stage's tables (shapes: V = 2**bits codes of this stage, V' of the previous stage, A prev
    classes, B stage classes, K contexts; uint16 frequencies for V <= 4096, else uint32)."""

    prev_class: np.ndarray   # uint8 [V + 1]: class of the previous frame's code; [V]: no previous frame
    stage_class: np.ndarray  # uint8 [V']: class of the previous stage's code (stage 0: [V], all 0)
    context: np.ndarray      # uint8 [A, B]: context of a (prev class, stage class) pair
    freq: np.ndarray         # uint16/uint32 [K, V]: frequency of each code in each context, >= 1
    repeat: np.ndarray       # uint16/uint32 [K]: mass added to the previous frame's code


class ContextTables:
    """Validated tables of `n_stages` stages, stage q for codes of `stage_bits[q]` bits, with the
    lookups the coder uses built once (numpy for the vectorized encoder, Python lists for the
    decoder's loop). `bits` / `size`: the widest stage's (all stages', for uniform tables)."""

    def __init__(self, stages: list[StageTables], source: str = "entropy tables"):
        if not 1 <= len(stages) <= MAX_STAGES:
            raise ModelError(f"{source}: {len(stages)} stages, must be 1..{MAX_STAGES}")
        sizes = [_stage_size(st.prev_class, q, source) for q, st in enumerate(stages)]
        self.stage_sizes: list[int] = sizes
        self.stage_bits: list[int] = [v.bit_length() - 1 for v in sizes]
        self.stage_total_bits: list[int] = [total_bits_for(v) for v in sizes]
        self.bits, self.source = max(self.stage_bits), source
        self.size = 1 << self.bits
        self.stages = [_checked(st, q, sizes[q], sizes[q - 1] if q else sizes[0], source)
                       for q, st in enumerate(stages)]
        self._digest: str | None = None
        self._lookups: list[tuple | None] | None = None

    @property
    def n_stages(self) -> int:
        return len(self.stages)

    def fits(self, stage_bits: Sequence[int]) -> bool:
        """Whether these tables code codes whose stages have these widths: 1..n_stages stages,
        each as wide as the tables' stage of that index."""
        widths = [int(b) for b in stage_bits]
        return 1 <= len(widths) <= self.n_stages and widths == self.stage_bits[: len(widths)]

    @property
    def digest(self) -> str:
        """sha256 (hex) of the canonical serialization: what the model id hashes."""
        if self._digest is None:
            h = hashlib.sha256(f"{TABLES_FORMAT} v{TABLES_VERSION} bits={self.bits}".encode())
            for q, (st, v) in enumerate(zip(self.stages, self.stage_sizes)):
                if self.stage_total_bits[q] != TOTAL_BITS:  # only a large stage: earlier digests stay
                    h.update(f"|{q}.total_bits={self.stage_total_bits[q]}".encode())
                for name in _FIELDS:
                    a = np.ascontiguousarray(getattr(st, name), dtype=np.dtype(_dtype(name, v)).newbyteorder("<"))
                    h.update(f"|{q}.{name}:{a.shape}".encode())
                    h.update(a.tobytes())
            self._digest = h.hexdigest()
        return self._digest

    @property
    def tag(self) -> bytes:
        """4 bytes that every context-coded payload carries: the first 4 bytes of the digest."""
        return bytes.fromhex(self.digest[:8])

    def nbytes(self) -> int:
        return sum(getattr(st, n).nbytes for st in self.stages for n in _FIELDS)

    # ---- what the coder reads -------------------------------------------------------------
    def lookups(self) -> list[tuple]:
        """Per stage: (prev_class, stage_class, context [A, B], cdf [K, V_q + 1], freq [K, V_q],
        repeat [K]) as int64 numpy, then the same as Python lists/arrays for the decoder:
        (prev list, stage list, context rows, cdf rows as array('q'), repeat list). Each stage's
        size and total are `stage_sizes` / `stage_total_bits`."""
        return [self.lookup(q) for q in range(self.n_stages)]

    def lookup(self, q: int) -> tuple:
        """Stage q's entry of `lookups()`, built on first use (a 15-bit stage's is K x 32769 ints)."""
        if self._lookups is None:
            self._lookups = [None] * self.n_stages
        if self._lookups[q] is None:
            st, v = self.stages[q], self.stage_sizes[q]
            freq = st.freq.astype(np.int64)
            cdf = np.zeros((freq.shape[0], v + 1), dtype=np.int64)
            np.cumsum(freq, axis=1, out=cdf[:, 1:])
            self._lookups[q] = (st.prev_class.astype(np.int64), st.stage_class.astype(np.int64),
                                st.context.astype(np.int64), cdf, freq, st.repeat.astype(np.int64),
                                st.prev_class.tolist(), st.stage_class.tolist(), st.context.tolist(),
                                [array("q", row.tolist()) for row in cdf], st.repeat.tolist())
        return self._lookups[q]

    # ---- files -------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        return {f"stage{q}.{name}": np.ascontiguousarray(getattr(st, name))
                for q, st in enumerate(self.stages) for name in _FIELDS}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], source: str = "entropy tables") -> ContextTables:
        """The inverse of `to_arrays`; any missing, extra or mistyped array is a ModelError (the
        frequencies' dtype follows the stage's size: uint16 up to 4096 codes, else uint32)."""
        n = len(arrays) // len(_FIELDS)
        want = {f"stage{q}.{name}" for q in range(n) for name in _FIELDS}
        if set(arrays) != want or n < 1:
            odd = sorted(set(arrays) ^ want)[:3]
            raise ModelError(f"{source}: not telucodec entropy tables (unexpected or missing arrays: {odd})")
        stages = []
        for q in range(n):
            parts = {}
            v = _stage_size(np.asarray(arrays[f"stage{q}.prev_class"]), q, source)
            for name in _FIELDS:
                a = np.asarray(arrays[f"stage{q}.{name}"])
                if a.dtype != _dtype(name, v):
                    raise ModelError(f"{source}: stage{q}.{name} is {a.dtype}, must be {np.dtype(_dtype(name, v))}"
                                     + (f" (a stage of {v} codes)" if name in ("freq", "repeat") else ""))
                parts[name] = a
            stages.append(StageTables(**parts))
        return cls(stages, source)

    def save(self, path: str | Path) -> Path:
        """Write the tables as a safetensors file (atomically: a temporary file, then a rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(self.to_bytes())
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ContextTables:
        """Read and validate a tables file; every problem is one ModelError naming the file."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"{path}: cannot read ({exc.strerror})") from exc
        return cls.from_bytes(data, str(path))

    def to_bytes(self) -> bytes:
        """The bytes of the tables file (what a worker process gets with the model)."""
        from safetensors.numpy import save

        return save(self.to_arrays(), metadata={"format": TABLES_FORMAT, "version": TABLES_VERSION,
                                                "digest": self.digest})

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "entropy tables") -> ContextTables:
        from safetensors.numpy import load

        try:
            arrays = load(bytes(data))
            meta = _metadata(data)
        except Exception as exc:
            raise ModelError(f"{source}: not a valid safetensors file ({str(exc)[:160]})") from exc
        if meta.get("format") != TABLES_FORMAT or meta.get("version") != TABLES_VERSION:
            raise ModelError(f"{source}: not telucodec entropy tables version {TABLES_VERSION} "
                             f"(format {meta.get('format')!r}, version {meta.get('version')!r})")
        return cls.from_arrays(arrays, source)


def _metadata(data: bytes) -> dict:
    """The `__metadata__` of a safetensors file's JSON header (its first 8 bytes give its size)."""
    import json

    n = int.from_bytes(data[:8], "little")
    header = json.loads(bytes(data[8 : 8 + n]))
    meta = header.get("__metadata__") or {}
    return meta if isinstance(meta, dict) else {}


def _checked(st: StageTables, q: int, v: int, v_before: int, source: str) -> StageTables:
    """Shapes, ranges and sums of one stage's tables (`v` codes, the previous stage's `v_before`;
    stage 0: its own); a ModelError names the first problem."""
    where = f"{source}: stage {q}"
    for name in _FIELDS:
        if not isinstance(getattr(st, name), np.ndarray) or getattr(st, name).dtype != _dtype(name, v):
            raise ModelError(f"{where}: {name} must be a {np.dtype(_dtype(name, v))} array (a stage of {v} codes)")
    if st.prev_class.shape != (v + 1,) or st.stage_class.shape != (v_before,):
        raise ModelError(f"{where}: class maps must have {v + 1} and {v_before} entries, got "
                         f"{st.prev_class.shape} and {st.stage_class.shape}")
    if st.context.ndim != 2 or 0 in st.context.shape:
        raise ModelError(f"{where}: context must be a non-empty [A, B] map, got {st.context.shape}")
    a, b = st.context.shape
    k = st.freq.shape[0] if st.freq.ndim == 2 else 0
    if st.freq.shape != (k, v) or k < 1 or st.repeat.shape != (k,):
        raise ModelError(f"{where}: freq must be [K, {v}] and repeat [K], got {st.freq.shape} and {st.repeat.shape}")
    if int(st.prev_class.max()) >= a or int(st.stage_class.max()) >= b or int(st.context.max()) >= k:
        raise ModelError(f"{where}: a class or context index is out of range (A={a}, B={b}, K={k})")
    if q == 0 and int(st.stage_class.max()) != 0:
        raise ModelError(f"{where}: stage 0 has no previous stage, its stage classes must all be 0")
    if int(st.freq.min()) < 1:
        raise ModelError(f"{where}: every code needs a frequency >= 1 in every context")
    total = 1 << total_bits_for(v)
    sums = st.freq.astype(np.int64).sum(1) + st.repeat
    if not np.all(sums == total):
        bad = int(np.flatnonzero(sums != total)[0])
        raise ModelError(f"{where}: context {bad} sums to {int(sums[bad])}, must be {total}")
    return st


# ---- which tables belong to which model id ---------------------------------------------------
_REGISTRY: dict[str, ContextTables] = {}


def register(model_id: str, tables: ContextTables) -> None:
    """Make `tables` the ones `tables_for(model_id)` answers: a model with tables registers them
    under its id (which hashes them), so `write_smallest` / `read_bitstream` find them unasked."""
    if len(_REGISTRY) >= 64 and model_id not in _REGISTRY:
        _REGISTRY.pop(next(iter(_REGISTRY)))
    _REGISTRY[str(model_id).lower()] = tables


def tables_for(model_id: str) -> ContextTables | None:
    return _REGISTRY.get(str(model_id).lower())
