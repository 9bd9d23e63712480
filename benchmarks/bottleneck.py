#!/usr/bin/env python
"""Where does a model lose quality? Oracle decodes of held-out clips, scored side by side.

    python benchmarks/bottleneck.py --model telucodec/pretrained/telugu-v2 \
        --data_dir state/heldout_te.tsv --clips 28 --out docs/bottleneck-telugu-v2

For each clip the model's own encode/decode at every n_q is compared with decodes that remove
one source of loss at a time:
- `unquantized`: the encoder's latent straight into the decoder (no quantizer): the ceiling of
  the autoencoder itself. If n_q 12 already scores the same, more bits buy nothing.
- `decoded_mag+ref_phase` / `ref_mag+decoded_phase` (STFT 512/128 of the full-bitrate output):
  which of magnitude and phase the decoder gets wrong.
- `griffin_lim(ref_mag)` at 512/128 and at the decoder's own STFT geometry (spectral decoders):
  how much a magnitude at that frame size pins down the waveform, i.e. how exact the predicted
  phase has to be for a decoder that works at that frame size.
- `head_mag+ref_phase` / `ref_mag+head_phase` (spectral decoders, at the decoder's geometry): the
  same split for what the head predicts before its overlap-add, which re-analysis at 512/128
  cannot see (overlapping frames that disagree cancel).
- `head_mag+griffin_lim(head_phase, 16)`: the head's magnitude with its phase refined by 16
  Griffin-Lim iterations: whether a decode-time phase search could repair the head's phase (on
  telugu-v3 it does not: the head's phase carries what a magnitude-consistent phase loses).
- log-spectral distance (dB) in four bands, 0-1, 1-2, 2-4 and 4-8 kHz, for every row: where in
  frequency the loss sits.
Every output is level-matched to the reference (one gain per clip) before scoring, so the
figures measure spectral and temporal fidelity, not loudness. Writes `OUT/bottleneck.json` and
`OUT/bottleneck.md`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

import numpy as np
import torch

from telucodec.api import load_model
from telucodec.evaluation import metrics
from telucodec.formats.dataset import discover, load_clip, spread

BANDS_HZ = ((0, 1000), (1000, 2000), (2000, 4000), (4000, 8000))
ORACLE_FFT, ORACLE_HOP = 512, 128
GRIFFIN_LIM_ITERS = 60
HEAD_REFINE_ITERS = 16
LSD_FLOOR_DB = -80.0  # bins more than 80 dB below the clip's loudest bin count as this floor


def _stft(wav: np.ndarray, n_fft: int, hop: int) -> torch.Tensor:
    window = torch.hann_window(n_fft, dtype=torch.float64)
    return torch.stft(torch.as_tensor(wav, dtype=torch.float64), n_fft, hop, window=window,
                      return_complex=True, center=True)


def _istft(spec: torch.Tensor, n_fft: int, hop: int, length: int) -> np.ndarray:
    window = torch.hann_window(n_fft, dtype=torch.float64)
    return torch.istft(spec, n_fft, hop, window=window, center=True, length=length).numpy().astype(np.float32)


def combine(magnitude_from: np.ndarray, phase_from: np.ndarray) -> np.ndarray:
    """The STFT magnitude of one signal with the phase of the other (512/128), resynthesised."""
    mag = _stft(magnitude_from, ORACLE_FFT, ORACLE_HOP).abs()
    phase = torch.angle(_stft(phase_from, ORACLE_FFT, ORACLE_HOP))
    return _istft(torch.polar(mag, phase), ORACLE_FFT, ORACLE_HOP, magnitude_from.size)


def griffin_lim_phase(mag: torch.Tensor, phase: torch.Tensor, n_fft: int, hop: int, length: int,
                      iters: int) -> torch.Tensor:
    """`iters` Griffin-Lim iterations from `phase`, the magnitude `mag` [bins, frames] held fixed."""
    for _ in range(iters):
        estimate = _istft(torch.polar(mag, phase), n_fft, hop, length)
        phase = torch.angle(_stft(estimate, n_fft, hop))[:, : mag.shape[1]]
    return phase


def griffin_lim(wav: np.ndarray, n_fft: int, hop: int, iters: int = GRIFFIN_LIM_ITERS) -> np.ndarray:
    """A waveform rebuilt from `wav`'s STFT magnitude alone (fixed seed, `iters` iterations)."""
    mag = _stft(wav, n_fft, hop).abs()
    gen = torch.Generator().manual_seed(0)
    phase = torch.rand(mag.shape, generator=gen, dtype=torch.float64) * 2 * torch.pi
    phase = griffin_lim_phase(mag, phase, n_fft, hop, wav.size, iters)
    return _istft(torch.polar(mag, phase), n_fft, hop, wav.size)


def band_lsd(ref: np.ndarray, deg: np.ndarray, sample_rate: int) -> dict[str, float]:
    """Log-spectral distance in dB per band: RMS over a band's bins of the dB difference, averaged
    over the frames where the reference is within 50 dB of its loudest frame (speech, not pauses)."""
    power_ref = _stft(ref, ORACLE_FFT, ORACLE_HOP).abs().pow(2).numpy()
    deg = np.pad(deg[: ref.size], (0, max(0, ref.size - deg.size)))
    power_deg = _stft(deg, ORACLE_FFT, ORACLE_HOP).abs().pow(2).numpy()
    floor = power_ref.max() * 10 ** (LSD_FLOOR_DB / 10) + 1e-20
    db_ref = 10 * np.log10(np.maximum(power_ref, floor))
    db_deg = 10 * np.log10(np.maximum(power_deg, floor))
    frame_energy = power_ref.sum(0)
    active = frame_energy > frame_energy.max() * 1e-5
    freqs = np.linspace(0, sample_rate / 2, power_ref.shape[0])
    out = {}
    for lo, hi in BANDS_HZ:
        rows = (freqs >= lo) & (freqs < hi) if hi < sample_rate / 2 else (freqs >= lo)
        diff = (db_ref[rows][:, active] - db_deg[rows][:, active]) ** 2
        out[f"lsd_{lo // 1000}-{hi // 1000}k"] = float(np.sqrt(diff.mean(0)).mean())
    return out


def level_matched(ref: np.ndarray, deg: np.ndarray) -> np.ndarray:
    deg = deg[: ref.size]
    gain = np.sqrt(np.mean(ref.astype(np.float64) ** 2) / max(np.mean(deg.astype(np.float64) ** 2), 1e-20))
    return (deg * gain).astype(np.float32)


@torch.no_grad()
def unquantized_decode(model: torch.nn.Module, wav: np.ndarray) -> np.ndarray:
    """The encoder's latent straight into the decoder, with the model's own amplitude handling."""
    x = torch.as_tensor(wav, dtype=torch.float32).view(1, 1, -1)
    x_norm, side = model.amplitude.normalize(x)
    x_norm = torch.nn.functional.pad(x_norm, (0, (-x.shape[-1]) % model.hop))
    y = model.amplitude.restore(model.decoder(model.encoder(x_norm)), side)[..., : x.shape[-1]]
    if model.config.model.level_match:
        y = model.amplitude.match_level(y, side)
    return y[0, 0].numpy()


def decoder_geometry(model: torch.nn.Module) -> tuple[int, int] | None:
    """(n_fft, hop) of a decoder that ends in an inverse STFT, else None."""
    istft = getattr(model.decoder, "istft", None)
    return (istft.n_fft, istft.hop) if istft is not None else None


@torch.no_grad()
def head_oracles(model: torch.nn.Module, wav: np.ndarray) -> dict[str, np.ndarray]:
    """For a decoder ending in an iSTFT: its head's own magnitude with the reference's phase, and
    the reference's magnitude with the head's own phase, both at the decoder's geometry (the
    head's frame f is centred on sample f * hop + hop / 2), resynthesised and restored to the
    input's level contour with the model's amplitude side info."""
    n_fft, hop = decoder_geometry(model)
    x = torch.as_tensor(wav, dtype=torch.float32).view(1, 1, -1)
    x_norm, side = model.amplitude.normalize(x)
    x_norm = torch.nn.functional.pad(x_norm, (0, (-x.shape[-1]) % model.hop))
    mag, phase = (t[0].double() for t in model.decoder.head_spectrum(model.quantizer(model.encoder(x_norm)).quantized))
    ref = _stft(x_norm[0, 0].numpy()[hop // 2:], n_fft, hop)
    frames = min(ref.shape[1], mag.shape[1])

    def synth(m: torch.Tensor, p: torch.Tensor) -> np.ndarray:
        y = np.concatenate([np.zeros(hop // 2, np.float32), _istft(torch.polar(m[:, :frames], p[:, :frames]),
                                                                    n_fft, hop, (frames - 1) * hop)])[: wav.size]
        y = torch.as_tensor(np.pad(y, (0, wav.size - y.size))).view(1, 1, -1)
        return model.amplitude.restore(y, side)[0, 0].numpy()  # back to the input's level contour

    # Griffin-Lim from the head's own phase, its magnitude held fixed
    refined = griffin_lim_phase(mag[:, :frames], phase[:, :frames], n_fft, hop, (frames - 1) * hop, HEAD_REFINE_ITERS)
    return {f"head_mag+ref_phase {n_fft}/{hop}": synth(mag, torch.angle(ref)),
            f"ref_mag+head_phase {n_fft}/{hop}": synth(ref.abs(), phase),
            f"head_mag+griffin_lim(head_phase, {HEAD_REFINE_ITERS}) {n_fft}/{hop}": synth(mag, refined)}


def clip_rows(model: torch.nn.Module, wav: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
    """Every condition's output for one clip, keyed by row name."""
    rows: dict[str, np.ndarray] = {}
    for n_q in range(1, model.max_n_q + 1):
        rows[f"n_q {n_q}"] = model.decode(model.encode(wav, sample_rate, n_q * model.kbps_per_codebook())).numpy()
    full = rows[f"n_q {model.max_n_q}"]
    rows["unquantized"] = unquantized_decode(model, wav)
    rows["decoded_mag+ref_phase"] = combine(full[: wav.size], wav)
    rows["ref_mag+decoded_phase"] = combine(wav, full[: wav.size])
    rows[f"griffin_lim(ref_mag) {ORACLE_FFT}/{ORACLE_HOP}"] = griffin_lim(wav, ORACLE_FFT, ORACLE_HOP)
    geometry = decoder_geometry(model)
    if geometry and geometry != (ORACLE_FFT, ORACLE_HOP):
        rows[f"griffin_lim(ref_mag) {geometry[0]}/{geometry[1]} (decoder's)"] = griffin_lim(wav, *geometry)
    if geometry and hasattr(model.decoder, "head_spectrum"):
        rows.update(head_oracles(model, wav))
    return rows


def report(model: torch.nn.Module, clips: list[np.ndarray], sample_rate: int) -> dict[str, dict[str, float]]:
    """Mean figures per row over the clips: pesq_wb, stoi, mel_distance and the band LSDs."""
    per_row: dict[str, list[dict[str, float]]] = {}
    for wav in clips:
        for name, out in clip_rows(model, wav, sample_rate).items():
            deg = level_matched(wav, np.clip(out, -1.0, 1.0) if name.startswith("n_q") else out)
            figures = {"pesq_wb": metrics.pesq_wb(wav, deg, sample_rate), "stoi": metrics.stoi(wav, deg, sample_rate),
                       "mel_distance": metrics.mel_distance(wav, deg, sample_rate)}
            figures.update(band_lsd(wav, deg, sample_rate))
            per_row.setdefault(name, []).append(figures)
    return {name: {key: float(np.nanmean([r[key] for r in rows])) for key in rows[0]}
            for name, rows in per_row.items()}


def to_markdown(table: dict[str, dict[str, float]], header: str) -> str:
    keys = list(next(iter(table.values())))
    lines = [header, "", "| decoded | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, figures in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{figures[k]:.3f}" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def held_out_clips(data_dir: str, speakers: str | None, count: int, sample_rate: int) -> list[np.ndarray]:
    items = discover(data_dir)
    if speakers:
        wanted = set(speakers.split(","))
        items = [item for item in items if item.speaker in wanted]
    chosen = spread(items, key=lambda item: item.speaker)[:count]
    if not chosen:
        raise SystemExit(f"{data_dir}: no clips (speakers {speakers})")
    return [load_clip(item, sample_rate).wav for item in chosen]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model folder or checkpoint (default: the shipped model)")
    p.add_argument("--data_dir", required=True, help="folder or manifest of held-out clips")
    p.add_argument("--speakers", default=None, help="comma-separated speaker ids to keep (default: all)")
    p.add_argument("--clips", type=int, default=28, help="clips, round-robin over speakers")
    p.add_argument("--out", required=True, help="folder for bottleneck.json and bottleneck.md")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    sample_rate = model.sample_rate
    clips = held_out_clips(args.data_dir, args.speakers, args.clips, sample_rate)
    start = time.perf_counter()
    table = report(model, clips, sample_rate)
    seconds = sum(c.size for c in clips) / sample_rate
    command = "python benchmarks/bottleneck.py " + " ".join(sys.argv[1:])
    header = (f"Bottleneck report: model `{args.model or 'shipped default'}` ({model.model_id}), {len(clips)} clips "
              f"({seconds:.0f} s) from `{args.data_dir}`, level-matched; LSD in dB over STFT {ORACLE_FFT}/{ORACLE_HOP}.\n\n"
              f"    {command}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bottleneck.json").write_text(json.dumps({"model": args.model, "model_id": model.model_id,
                                                      "clips": len(clips), "seconds": seconds, "command": command,
                                                      "rows": table}, indent=2) + "\n")
    (out / "bottleneck.md").write_text(to_markdown(table, header))
    print(to_markdown(table, header))
    print(f"scored in {time.perf_counter() - start:.0f} s; wrote {out}/bottleneck.json and bottleneck.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
