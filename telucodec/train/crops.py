"""Random training crops that a resumed run sees again exactly."""

from __future__ import annotations

import numpy as np
import torch

from telucodec.formats.dataset import Clip


class CropDataset(torch.utils.data.Dataset):
    """`length` random crops of `segment` samples; crop i of epoch e depends only on (seed, e, i),
    so a resumed run sees exactly the batches the uninterrupted run would have seen."""

    def __init__(self, clips: list[Clip], segment: int, length: int, seed: int,
                 gain_db: float = 0.0, noise_snr_db: float = 0.0):
        self.clips, self.segment, self.length, self.seed = clips, segment, length, seed
        self.gain_db, self.noise_snr_db = gain_db, noise_snr_db
        weights = np.array([max(c.wav.shape[0], 1) for c in clips], dtype=np.float64)
        self.cumulative = np.cumsum(weights / weights.sum())
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        clip = self.clips[min(int(np.searchsorted(self.cumulative, rng.random())), len(self.clips) - 1)].wav
        if clip.shape[0] > self.segment:
            start = int(rng.integers(0, clip.shape[0] - self.segment + 1))
            crop = clip[start: start + self.segment].copy()
        else:
            crop = np.zeros(self.segment, dtype=np.float32)
            crop[: clip.shape[0]] = clip
        if self.gain_db > 0:
            crop *= 10 ** (rng.uniform(-self.gain_db, self.gain_db) / 20)
        if self.noise_snr_db > 0:
            level = np.sqrt(np.mean(crop ** 2) + 1e-12) * 10 ** (-rng.uniform(self.noise_snr_db, self.noise_snr_db + 20) / 20)
            crop += (level * rng.standard_normal(self.segment)).astype(np.float32)
        return torch.from_numpy(np.clip(crop, -1.0, 1.0)).unsqueeze(0)
