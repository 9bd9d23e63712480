"""`Codec`: encoder -> residual VQ -> decoder, with the amplitude strategy around them.

Training calls `forward` on batches; users call `encode` / `decode` on whole clips (long clips
are processed in overlapping chunks so memory stays flat and joins match the unchunked result),
and `save_pretrained` / `from_pretrained` read and write a model folder (config.json +
model.safetensors), the layout the Hugging Face Hub expects.

It reads best whole (a little over 400 lines): one class whose encode, decode, id and folder
methods share the same windows, amplitude and codebook state; split, each half would reach
into the other's private parts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from telucodec.config import ADDED_LATER, CodecConfig
from telucodec.errors import ModelError, TelucodecError
from telucodec.formats.codes import Codes, carried_frame_rate, widths_text
from telucodec.formats.context_tables import TABLES_FILE, ContextTables, register
from telucodec.formats.pcm import input_samples
from telucodec.formats.pcm import pcm_to_float as numpy_pcm_to_float
from telucodec.formats.rate import register_entry_gains
from telucodec.model.amplitude import Amplitude, get_amplitude
from telucodec.model.families import build_decoder, build_encoder, build_quantizer
from telucodec.model.quantizer import QuantizerOutput
from telucodec.model.rd_search import rd_prefixes, rd_weight
from telucodec.model.sent_stages import check_stage_counts, decode_sent
from telucodec.model.streaming import LEVELLESS_AMPLITUDES, StreamDecoder, StreamEncoder, encoder_reach_frames
from telucodec.model.weights import StateMatch as StateMatch  # re-exported: older imports
from telucodec.model.weights import load_matching_state as load_matching_state
from telucodec.model.weights import load_shipped_tensors
from telucodec.model.weights import match_state as match_state

CHUNK_SECONDS = 20.0     # encode/decode long clips in chunks of this length ...
CONTEXT_SECONDS = 2.0    # ... each with this much context on both sides (beyond the receptive field)
# The SEANet encoder runs ~1.2x faster on 5 s pieces than on 30 s ones (its 16 kHz activations stay
# in cache; benchmarks/encoder_layout.py), and its exact reach is a few frames, so it encodes in
# 5 s chunks with just that context (`encoder_reach_frames`) instead of the generic 2 s.
ENCODE_CHUNK_SECONDS = 5.0


@dataclass
class CodecOutput:
    wav: torch.Tensor                  # [B, 1, T] restored output, unbounded
    wav_normalized: torch.Tensor       # [B, 1, T] decoder output before amplitude restore
    input_normalized: torch.Tensor     # [B, 1, T] encoder input after amplitude normalize
    quantizer: QuantizerOutput
    n_q: int
    side: torch.Tensor = field(default_factory=lambda: torch.zeros(0))


class Codec(nn.Module):
    def __init__(self, config: CodecConfig):
        super().__init__()
        # the canonical form: a field its families do not read holds the value they imply (a
        # SoundStream model reads causal), and that form is what its id hashes (config.py)
        try:
            config.quantizer.check_sizes()
            self.config = config = config.canonical()
        except TelucodecError as exc:  # an unknown family or option: a model that cannot be built
            raise ModelError(str(exc)) from exc
        mc = config.model
        self.hop = mc.hop_length
        self.sample_rate = mc.sample_rate
        self.frame_rate = mc.frame_rate
        carried_frame_rate(mc.sample_rate, self.hop, config.quantizer.n_q, config.quantizer.codebook_bits)  # .tcd can carry it
        self.encoder = build_encoder(mc)      # model/families.py: one table entry per family
        self.quantizer = build_quantizer(mc.latent_dim, config.quantizer)
        self.decoder = build_decoder(mc)
        if mc.level_match and mc.amplitude != "rms":
            raise ModelError(f"level_match needs the 'rms' amplitude strategy, not '{mc.amplitude}'")
        if mc.amplitude != "rms" and mc.rms_target_db != ADDED_LATER["rms_target_db"]:
            raise ModelError(f"rms_target_db needs the 'rms' amplitude strategy, not '{mc.amplitude}'")
        try:
            self.amplitude = get_amplitude(mc.amplitude, mc.sample_rate,
                                           **({"target_db": mc.rms_target_db} if mc.amplitude == "rms" else {}))
        except ValueError as exc:
            raise ModelError(f"config: {exc}") from None

    # ---- facts ---------------------------------------------------------------------------
    @property
    def codebook_bits(self) -> int:
        return self.config.quantizer.codebook_bits

    @property
    def max_n_q(self) -> int:
        return self.config.quantizer.n_q

    @property
    def _mixed(self) -> bool:
        """The stages differ in size (their codes in width)."""
        return len(set(self.stage_bits)) > 1

    @property
    def stage_bits(self) -> list[int]:
        """Each stage's code width (all `codebook_bits` unless the stages differ in size)."""
        return self.config.quantizer.stage_bits

    def kbps_per_codebook(self) -> float:
        """The first codebook's raw rate: every codebook's, when the stages have one size."""
        return self.nominal_kbps(1)

    def nominal_kbps(self, n_q: int | None = None) -> float:
        """Raw code bits per second of the first `n_q` stages (None: all)."""
        return sum(self.stage_bits[: self.max_n_q if n_q is None else n_q]) * self.frame_rate / 1000.0

    def n_q_for_kbps(self, kbps: float | None) -> int:
        """The largest n_q whose nominal bitrate does not exceed `kbps` (None = all)."""
        if kbps is None:
            return self.max_n_q
        n_q = sum(1 for n in range(1, self.max_n_q + 1) if self.nominal_kbps(n) <= kbps + 1e-9)
        if n_q < 1:
            raise ModelError(f"--kbps {kbps}: below one codebook ({self.kbps_per_codebook():g} kbps)")
        return n_q

    def kbps_note(self, kbps: float | None, name: str = "--kbps ") -> str | None:
        """What `--kbps` turns into, for the user: the n_q used, or that it is capped at the
        maximum when it asks for more than the model has (None when no kbps was asked for)."""
        if kbps is None:
            return None
        n_q = self.n_q_for_kbps(kbps)
        return self.kbps_cap_note(kbps, name) or f"{name}{kbps:g}: using n_q={n_q} ({self.nominal_kbps(n_q):g} kbps nominal)"

    def kbps_cap_note(self, kbps: float | None, name: str = "--kbps ") -> str | None:
        """The one rule for a bitrate above this model's maximum, said the same way by the CLI, the
        API (a warning) and `eval`: it is capped there (None when `kbps` is not above it).
        `name`: how the caller's user spelled the option ("--kbps ", "kbps=")."""
        top = self.nominal_kbps()
        if kbps is None or kbps <= top + 1e-9:
            return None
        return f"{name}{kbps:g}: capped at the maximum, {top:g} kbps (n_q={self.max_n_q}, all codebooks)"

    @property
    def model_id(self) -> str:
        """16 hex chars: a hash of the architecture and every weight, so codes made by one model
        are never silently decoded by another. It hashes `shipped_tensors()`, what a model folder
        holds, so a model and its saved folder share their id.

        Hashing every weight costs tens of milliseconds, and one decode asks twice (bitstream
        check, then `decode`), so the id is cached until any tensor changes: every in-place write
        (an optimizer step, `load_state_dict`, `.add_`) bumps that tensor's version counter."""
        state = self.shipped_tensors()
        tables = self.entropy_tables
        fingerprint = (tuple((name, t.data_ptr(), t._version) for name, t in state.items()),
                       None if tables is None else tables.digest)
        cached = self.__dict__.get("_model_id_cache")
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        h = hashlib.sha256(json.dumps(self.config.architecture(), sort_keys=True).encode())
        for name, tensor in sorted(state.items()):
            h.update(name.encode())
            h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        if tables is not None:  # only a model with entropy tables hashes them: other ids stay as they were
            h.update(f"entropy_tables:{tables.digest}".encode())
        model_id = h.hexdigest()[:16]
        self.__dict__["_model_id_cache"] = (fingerprint, model_id)
        if tables is not None:  # so the .tcd writer and reader find them from a file's model id
            register(model_id, tables)
        if not self.config.quantizer.codebook_dim:  # rate control's fill order (formats/rate.py)
            gains = np.zeros((self.max_n_q, self.config.quantizer.codebook_size))  # a smaller stage: 0 past its end
            for row, book in zip(gains, self.quantizer.stage_codebooks()):
                row[: book.shape[0]] = book.double().pow(2).sum(-1).cpu().numpy()
            register_entry_gains(model_id, gains)
        return model_id

    @property
    def entropy_tables(self) -> ContextTables | None:
        """The context entropy tables of a model whose folder has `entropy_tables.safetensors`
        (scripts/fit_entropy_tables.py), else None. They are part of the model id."""
        return self.__dict__.get("_entropy_tables")

    @entropy_tables.setter
    def entropy_tables(self, tables: ContextTables | None) -> None:
        if tables is not None and tables.stage_bits[: self.max_n_q] != self.stage_bits:
            have, want = tables.stage_bits[: self.max_n_q], self.stage_bits
            raise ModelError(f"{tables.source}: tables for codes of {widths_text(have)} bits, the model's codes have "
                             f"{widths_text(want)} bits")
        self.__dict__["_entropy_tables"] = tables

    # ---- training ------------------------------------------------------------------------
    def forward(self, wav: torch.Tensor, n_q: int | None = None, quantize: bool = True) -> CodecOutput:
        """wav [B, 1, T] -> CodecOutput with outputs of length T.

        `quantize=False` decodes the encoder's continuous latent (a quantizer warm-up): the
        quantizer still runs, so its codebooks keep following the latent and its losses and codes
        are reported, but the decoder does not see its output."""
        length = wav.shape[-1]
        x_norm, side = self.amplitude.normalize(wav)  # side info measured on the clip itself
        x_norm = F.pad(x_norm, (0, (-length) % self.hop))
        latent = self.encoder(x_norm)
        q = self.quantizer(latent, n_q)
        y_norm = self.decoder(q.quantized if quantize else latent)
        y = self.amplitude.restore(y_norm, side)
        return CodecOutput(y[..., :length], y_norm[..., :length], x_norm[..., :length], q,
                           q.codes.shape[1], side)

    # ---- inference -----------------------------------------------------------------------
    def _as_mono_tensor(self, wav: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
        """-> float32 [T] on the CPU in [-1, 1] (no copy when it is one): the one conversion of
        caller audio, `formats/pcm.input_samples`, which the ONNX runner uses too."""
        if isinstance(wav, torch.Tensor):
            wav = pcm_to_float(wav.detach().cpu())
            if isinstance(wav, torch.Tensor):  # float: float16/bfloat16 have no numpy twin
                wav = (wav if wav.dtype in (torch.float32, torch.float64) else wav.float()).numpy()
        return torch.from_numpy(np.ascontiguousarray(input_samples(wav, sample_rate, self.sample_rate)))

    def _chunk_bounds(self, total: int, chunk_seconds: float | None = None, ctx: int | None = None):
        """(start, end, keep_start, keep_end) windows in frames covering [0, total): chunks of
        `chunk_seconds` (CHUNK_SECONDS) with `ctx` frames (CONTEXT_SECONDS) of context each side."""
        chunk = int((CHUNK_SECONDS if chunk_seconds is None else chunk_seconds) * self.frame_rate)
        ctx = int(CONTEXT_SECONDS * self.frame_rate) if ctx is None else ctx
        start = 0
        while start < total:
            end = min(start + chunk, total)
            yield max(0, start - ctx), min(total, end + ctx), start, end
            start = end

    @torch.no_grad()
    def encode(self, wav: np.ndarray | torch.Tensor, sample_rate: int | None = None, kbps: float | None = None,
               beam: int = 1, level: bool = True) -> Codes:
        """Mono audio at `sample_rate` (None: the model's) -> Codes at the nominal n_q of `kbps`
        (`formats/rate.py` fits a file to an actual rate); `beam` > 1: `clustering.beam_search`.
        `level=False`: no level side info (side kind "none"), the input coded at its own level, as
        a stream codes it (model/streaming.py); the model's own for a `none` model."""
        return self.encode_prefixes(wav, sample_rate, self.n_q_for_kbps(kbps), beam, level)[-1]

    @torch.no_grad()
    def encode_prefixes(self, wav: np.ndarray | torch.Tensor, sample_rate: int | None = None,
                        n_q: int | None = None, beam: int = 1, level: bool = True,
                        fit_kbps: float | None = None) -> list[Codes]:
        """[`encode`'s Codes at n = 1 .. n_q codebooks], from one encoder pass and one search:
        greedy codes are views of one array (`Codes.prefixes`); a beam's differ per count. What
        rate control chooses from; `fit_kbps`: the actual rate it will fit them to, where a beam
        with the model's context tables then weighs each code's bits against its error at that
        rate's exchange of error for bits (`model/rd_search.py`)."""
        n_q = n_q or self.max_n_q
        kind = self._side_kind(level)
        amplitude = self._amplitude_for(kind)
        x, side = self._encoder_input(wav, sample_rate, amplitude)
        side_ints = [int(v) for v in side[0].round().long().tolist()] if side.numel() else []
        if beam == 1:
            codes = torch.cat([self.quantizer.encode(latent, n_q)[..., keep].cpu()
                               for latent, keep in self._encoder_windows(x, side, amplitude)], dim=-1)[0]
            return self.make_codes(codes, x.shape[-1], side_ints, kind).prefixes()
        windows = [(latent[..., keep], [c[..., keep].cpu() for c in self.quantizer.encode_prefixes(latent, n_q, beam)])
                   for latent, keep in self._encoder_windows(x, side, amplitude)]
        per_n = [torch.cat(codes, dim=-1)[0] for codes in zip(*(c for _, c in windows))]
        made = [self.make_codes(codes, x.shape[-1], side_ints, kind) for codes in per_n]
        tables = self.entropy_tables
        if fit_kbps is not None and tables is not None and tables.fits(self.stage_bits[:n_q]):
            weight = rd_weight(made, fit_kbps)
            if weight > 0:
                latent = torch.cat([z for z, _ in windows], dim=-1)[0]
                per_n = rd_prefixes(self.quantizer, latent, per_n[-1], beam, tables, weight)
                made = [self.make_codes(codes, x.shape[-1], side_ints, kind) for codes in per_n]
        return made

    def make_codes(self, codes: torch.Tensor, num_samples: int, side: list[int], side_kind: str | None = None) -> Codes:
        """Codes [n, F] of a `num_samples` clip (with its amplitude side info) as this model's;
        `side_kind` None: the model's amplitude ("none" for a stream's codes, which carry no level)."""
        return Codes(codes=codes, num_samples=num_samples, model_id=self.model_id, sample_rate=self.sample_rate,
                     frame_rate=self.frame_rate, codebook_bits=self.codebook_bits,
                     stage_bits=tuple(self.stage_bits[: codes.shape[0]]) if self._mixed else (),
                     side_kind=side_kind or self.amplitude.kind, side=side)

    def _side_kind(self, level: bool) -> str:
        """The side kind `encode` writes: the model's, or "none" for `level=False` (refused for an
        amplitude that cannot run without its level: LEVELLESS_AMPLITUDES)."""
        if level or self.amplitude.kind == "none":
            return self.amplitude.kind
        if self.amplitude.kind not in LEVELLESS_AMPLITUDES:
            raise ModelError(f"level=False: a '{self.amplitude.kind}' model cannot code without its level side info")
        return "none"

    def _amplitude_for(self, side_kind: str) -> Amplitude:
        """What normalizes and restores codes of `side_kind`: the model's amplitude, or for
        level-less codes ("none") of a level-carrying model, the identity (gain 1)."""
        return self.amplitude if side_kind == self.amplitude.kind else get_amplitude("none", self.sample_rate)

    @torch.no_grad()
    def latents(self, wav: np.ndarray | torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """The latent [latent_dim, frames] (CPU float32) `encode` quantizes, for whatever learns
        from a frozen encoder's latents (train/quantizer_fit.py)."""
        x, side = self._encoder_input(wav, sample_rate)
        return torch.cat([latent[..., keep].cpu() for latent, keep in self._encoder_windows(x, side)], dim=-1)[0]

    def _encoder_input(self, wav: np.ndarray | torch.Tensor, sample_rate: int | None,
                       amplitude: Amplitude | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(audio [1, 1, T] at the model's rate, its amplitude side info [1, S]) for `encode`."""
        x = self._as_mono_tensor(wav, self.sample_rate if sample_rate is None else sample_rate).view(1, 1, -1)
        if x.shape[-1] == 0:
            raise ModelError("input audio is empty")
        return x, (amplitude or self.amplitude).side_info(x).to(torch.float32)  # whole clip, cheap

    def _encoder_windows(self, x: torch.Tensor, side: torch.Tensor,
                         amplitude: Amplitude | None = None) -> Iterator[tuple[torch.Tensor, slice]]:
        """(latent [1, D, frames] of one window, the slice of its frames to keep) covering the clip:
        windows of ENCODE_CHUNK_SECONDS with the encoder's exact reach as context where that is
        bounded, else the generic chunks. The one path from audio to latents of `encode`/`latents`."""
        device = next(self.parameters()).device
        frames = -(-x.shape[-1] // self.hop)
        reach = encoder_reach_frames(self.encoder, self.hop)
        bounds = self._chunk_bounds(frames) if reach is None else self._chunk_bounds(frames, ENCODE_CHUNK_SECONDS, reach)
        for lo, hi, keep_lo, keep_hi in bounds:
            # exactly forward()'s normalized, hop-padded input, one window at a time
            window = x[..., lo * self.hop: hi * self.hop].to(device)
            window = (amplitude or self.amplitude).normalize_with(window, side.to(device), lo * self.hop)
            window = F.pad(window, (0, (hi - lo) * self.hop - window.shape[-1]))
            yield self.encoder(window), slice(keep_lo - lo, keep_hi - lo)

    def _check_code_format(self, codes: Codes) -> None:
        """Refuse codes this model cannot have made (a forged or damaged file with a valid CRC):
        other rates or code width, values outside the codebooks, missing amplitude side info."""
        for name, have, want in (("sample rate", codes.sample_rate, self.sample_rate),
                                 ("frame rate", codes.frame_rate, self.frame_rate)):
            if have != want:
                raise ModelError(f"codes have {name} {have}, the model uses {want}")
        widths, want = codes.widths, self.stage_bits[: codes.n_q]
        if widths[: len(want)] != want:
            raise ModelError(f"codes have codebook bits {widths_text(widths)}, the model uses {widths_text(want)}")
        self.check_code_values(codes.codes)
        if codes.side_kind != "none" and not codes.side:
            raise ModelError(f"codes carry no '{codes.side_kind}' amplitude side info")
        check_stage_counts(codes.stage_counts, codes.n_q, codes.num_frames)

    def check_code_values(self, codes: torch.Tensor) -> None:
        """Refuse (ModelError) a code [n, F] outside its stage's codebook."""
        for q, (row, size) in enumerate(zip(codes, self.config.quantizer.stage_sizes)):
            if row.numel() and (int(row.min()) < 0 or int(row.max()) >= size):
                where = f" of stage {q}" if self._mixed else ""
                raise ModelError(f"code values{where} must be in 0..{size - 1}, got {int(row.min())}..{int(row.max())}")

    def check_decodable(self, codes: Codes, check_model: bool = True) -> None:
        """Refuse (ModelError) codes this model cannot decode, for every runtime (deploy/runtimes.py)."""
        if check_model and codes.model_id != self.model_id:
            raise ModelError(f"codes were made by model {codes.model_id}, this model is {self.model_id}")
        levelless = codes.side_kind == "none" and self.amplitude.kind in LEVELLESS_AMPLITUDES  # a stream's
        if codes.side_kind != self.amplitude.kind and not levelless:
            raise ModelError(f"codes carry '{codes.side_kind}' amplitude side info, the model uses '{self.amplitude.kind}'")
        if codes.n_q > self.max_n_q or codes.n_q < 1:
            raise ModelError(f"codes have n_q={codes.n_q}, the model supports 1..{self.max_n_q}")
        self._check_code_format(codes)
        if codes.num_frames * self.hop < codes.num_samples:
            raise ModelError(f"{codes.num_frames} frames of codes cannot make {codes.num_samples} samples")

    @torch.no_grad()
    def decode(self, codes: Codes, check_model: bool = True) -> torch.Tensor:
        """Codes -> wav [num_samples] float32 at `self.sample_rate`, unbounded (clip when writing)."""
        self.check_decodable(codes, check_model)
        device = next(self.parameters()).device
        c = codes.codes.to(device).long().unsqueeze(0)
        counts = None if codes.uniform else torch.as_tensor(codes.frame_counts, device=device)  # stages per frame
        side = torch.tensor([codes.side], dtype=torch.float32, device=device).view(1, -1)
        amplitude = self._amplitude_for(codes.side_kind)  # gain 1 for level-less codes
        out = torch.empty(codes.num_samples, dtype=torch.float32)  # filled window by window
        for lo, hi, keep_lo, keep_hi in self._chunk_bounds(c.shape[-1]):
            y = self.decoder(decode_sent(self.quantizer, c[..., lo:hi], None if counts is None else counts[lo:hi]))
            y = y[..., (keep_lo - lo) * self.hop: (keep_hi - lo) * self.hop]
            start = keep_lo * self.hop
            y = amplitude.restore(y, side, start)[0, 0, : codes.num_samples - start]
            out[start: start + y.shape[-1]] = y.cpu()
        if self.config.model.level_match and amplitude.kind == "rms":
            out = self.amplitude.match_level(out.view(1, 1, -1), side.cpu())[0, 0]
        return out

    # ---- streaming (causal models; see telucodec/model/streaming.py) ------------------------
    def stream_encoder(self, kbps: float | None = None) -> StreamEncoder:
        """Chunks of audio in, codes of each completed frame out; equals `encode(..., level=False)`
        exactly (a stream carries no level side info: the input is coded at its own level)."""
        return StreamEncoder(self, kbps)

    def stream_decoder(self) -> StreamDecoder:
        """Chunks of codes in, audio of each final frame out; equals `decode` of level-less codes."""
        return StreamDecoder(self)

    # ---- files ---------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, dtype: torch.dtype = torch.float32) -> Path:
        """Write config.json + model.safetensors (`shipped_tensors()`: weights, no training-only
        state). fp16 halves the size; loading casts back to fp32."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.shipped_tensors().items()}
        tensors = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in tensors.items()}
        cfg_tmp = directory / "config.json.tmp"
        cfg_tmp.write_text(self.config.to_json() + "\n")
        tmp = directory / "model.safetensors.tmp"
        save_file(tensors, str(tmp), metadata={"format": "telucodec", "config_version": str(self.config.version)})
        tmp.chmod(cfg_tmp.stat().st_mode & 0o777)  # safetensors makes it 0600; umask's mode, as config.json
        tmp.replace(directory / "model.safetensors")
        cfg_tmp.replace(directory / "config.json")
        if self.entropy_tables is not None:
            self.entropy_tables.save(directory / TABLES_FILE)
        else:  # a stale file would give the saved folder tables (and another id) this model lacks
            (directory / TABLES_FILE).unlink(missing_ok=True)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> Codec:
        directory = Path(directory)
        cfg_path, weights = directory / "config.json", directory / "model.safetensors"
        if not cfg_path.is_file() or not weights.is_file():
            raise ModelError(f"{directory}: not a model folder (needs config.json and model.safetensors)")
        config = CodecConfig.load(cfg_path)
        try:  # before the model is built: a file that is no safetensors is named as such
            state = load_file(str(weights))
        except Exception as exc:
            raise ModelError(f"{weights}: not a valid safetensors file ({exc})") from exc
        model = _build_for_weights(cls, config, cfg_path, weights)
        if (directory / TABLES_FILE).is_file():
            model.entropy_tables = ContextTables.load(directory / TABLES_FILE)
        return load_shipped_tensors(model, state, str(weights)).eval()

    def shipped_tensors(self) -> dict[str, torch.Tensor]:
        """What a model folder holds and the model id hashes: `state_dict()`, which holds the
        weights and leaves out constants (the iSTFT bases) and training-only state (the
        quantizer's EMA statistics, kept by checkpoints: model/training_state.py); plus, for a
        model read from a folder or checkpoint written before those were left out, the extra
        tensors it held, as read (`load_shipped_tensors`). So the shipped models keep their ids,
        and a model re-saved from such a folder writes the same tensors again."""
        return {**self.__dict__.get("_id_extras", {}), **self.state_dict()}

    def to_bytes(self) -> tuple:
        """(config, safetensors bytes of `shipped_tensors()`[, bytes of the entropy tables]): the
        model as a worker process gets it (`from_bytes`), no pickled module crossing processes,
        and the same id on both sides."""
        from safetensors.torch import save

        blob = (self.config.to_dict(), save({k: v.detach().cpu().contiguous() for k, v in self.shipped_tensors().items()}))
        return blob if self.entropy_tables is None else (*blob, self.entropy_tables.to_bytes())

    @classmethod
    def from_bytes(cls, blob: tuple[dict, bytes], source: str = "worker") -> Codec:
        """The model `to_bytes` described, in eval mode on the CPU."""
        from safetensors.torch import load

        config, data, *tables = blob
        model = cls(CodecConfig.from_dict(config))
        if tables:
            model.entropy_tables = ContextTables.from_bytes(tables[0], source)
        return load_shipped_tensors(model, load(data), source).eval()


def pcm_to_float(wav: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Samples as floats: `telucodec.formats.pcm.pcm_to_float` (the one rule, the ONNX runner's too)
    for arrays and integer tensors; float tensors pass through untouched."""
    if isinstance(wav, torch.Tensor):
        if wav.is_floating_point():
            return wav
        if wav.is_complex() or wav.dtype == torch.bool:
            raise ModelError(f"input audio must be float or integer PCM samples, got a {wav.dtype} tensor")
        wav = wav.cpu().numpy()
    return numpy_pcm_to_float(wav)


_STATE_VALUES: dict[str, int] = {}  # a model design (its model and quantizer config) -> values in its state dict


def _build_for_weights(cls: type[Codec], config: CodecConfig, cfg_path: Path, weights: Path) -> Codec:
    """The model a (possibly stranger's) config.json describes, built only after a dry run on the
    meta device (no memory) shows it builds and that its tensors fit in the weights file (at 2
    bytes each, the smallest dtype `save_pretrained` writes): a config cannot make the loader
    allocate more than a small multiple of the files it was given."""
    key = json.dumps([asdict(config.model), asdict(config.quantizer)], sort_keys=True, default=str)
    if key not in _STATE_VALUES:  # the dry run costs more than building a small model: once per design
        try:
            with torch.device("meta"):
                probe = cls(config)
        except ModelError:
            raise
        except Exception as exc:  # whatever a nonsensical architecture makes a constructor raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(f"{cfg_path}: describes no model that can be built ({first[:160]})") from exc
        if len(_STATE_VALUES) >= 64:
            _STATE_VALUES.clear()
        _STATE_VALUES[key] = sum(t.numel() for t in probe.state_dict().values())
    need = 2 * _STATE_VALUES[key]
    if need > weights.stat().st_size:
        raise ModelError(f"{cfg_path}: describes a model of {need // 2:,} values, more than {weights.name} "
                         f"({weights.stat().st_size:,} bytes) can hold")
    return cls(config)

