"""What a training run writes for people to look at and listen to: TensorBoard scalars every
epoch, TensorBoard audio and spectrogram images on a thinning schedule, and `samples/` folders.

Media are most of a log's bytes (one 6 s clip is ~190 kB of audio per epoch), so they are kept
proportionate to the run: written at epochs 1, 2, 4, 8, 16, then every 16th and at the last
epoch, for one example cropped to MEDIA_SECONDS. A 3-minute, 40-epoch run then writes a few
hundred kB, a 1,000-epoch run about 70 media steps, and the scalars still show every epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from telucodec.evaluation.plots import log_spectrogram, save_spectrograms
from telucodec.formats.audio import write_wav
from telucodec.train.monitor import ValidationResult

MEDIA_SECONDS = 4.0   # audio and spectrograms in TensorBoard are cropped to this
MEDIA_EXAMPLES = 1    # examples per media epoch in TensorBoard (samples/ keeps every example)
MEDIA_EVERY = 16      # after the powers of two, media every this many epochs
VAL_SCALARS = ("val_loss", "rms_ratio", "snr_db", "si_sdr_db", "mel_distance", "output_min", "output_max",
               "pesq_wb", "stoi")


def is_media_epoch(epoch: int, last_epoch: int) -> bool:
    """Epochs 1, 2, 4, 8, 16, then every MEDIA_EVERY-th, and the last one."""
    return epoch == last_epoch or (epoch & (epoch - 1)) == 0 or epoch % MEDIA_EVERY == 0


def samples_due(epoch: int, last_epoch: int, every: int) -> bool:
    """samples/ is written at epoch 1 (something to listen to from the start), every `every`-th
    epoch and the last; `every` <= 0 switches it off."""
    return every > 0 and (epoch == 1 or epoch % every == 0 or epoch == last_epoch)


def log_epoch(writer: Any, row: dict[str, Any], v: ValidationResult, step: int, epoch: int, last_epoch: int,
              sample_rate: int) -> None:
    """One epoch into TensorBoard: validation scalars always, media on the thinning schedule."""
    if writer is None:
        return
    for key in VAL_SCALARS:
        if row.get(key) is not None:
            writer.add_scalar(f"val/{key}", row[key], step)
    for q, (u, p) in enumerate(zip(row["codebook_usage"], row["codebook_perplexity"])):
        writer.add_scalar(f"vq/usage_{q}", u, step)
        writer.add_scalar(f"vq/perplexity_{q}", p, step)
    if is_media_epoch(epoch, last_epoch):
        keep = int(MEDIA_SECONDS * sample_rate)
        for i, (ref, out) in enumerate(v.examples[:MEDIA_EXAMPLES]):
            ref, out = ref[:keep], out[:keep]
            writer.add_audio(f"sample_{i}/output", torch.from_numpy(np.clip(out, -1, 1)).view(1, -1), step,
                             sample_rate=sample_rate)
            spec = np.concatenate([log_spectrogram(ref), log_spectrogram(out)], axis=0)[::-1]  # original below
            image = np.clip((spec - spec.max() + 80.0) / 80.0, 0.0, 1.0)
            writer.add_image(f"sample_{i}/spectrogram_original_and_output", image[None], step)
    writer.flush()


def write_samples(folder: Path, v: ValidationResult, sample_rate: int) -> None:
    """samples/epoch_NNNN/: each example's original and decoded WAV and their spectrograms."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (ref, out) in enumerate(v.examples):
        write_wav(folder / f"{i}_original.wav", ref, sample_rate)
        write_wav(folder / f"{i}_decoded.wav", out, sample_rate)
        save_spectrograms(folder / f"{i}_spectrogram.png", {"original": ref, "decoded": out}, sample_rate)
