"""The stages of the residual vector quantizer (`model/quantizer.py` chains them): the plain
L2 stage and DAC's factorized one, with their k-means start, EMA / codebook-loss / decoder-gradient
updates, dead-code replacement and DDP synchronization (the behaviour `quantizer.py` describes)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from telucodec.config import QuantizerConfig
from telucodec.model.clustering import entry_counts, kmeans, nearest_entry

KMEANS_VECTORS_PER_ENTRY = 2  # a k-means start clusters at least this many vectors per entry
TRAINING_BUFFERS = ("cluster_size", "embed_sum", "steps_unused")  # per stage, training-only


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t


def _broadcast(t: torch.Tensor) -> None:
    if _distributed():
        dist.broadcast(t, src=0)



class VectorQuantizer(nn.Module):
    def __init__(self, dim: int, cfg: QuantizerConfig, size: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.size = size = size or cfg.codebook_size  # this stage's entries (`cfg.stage_sizes`)
        self.codebook = nn.Parameter(torch.randn(size, dim) * 0.1, requires_grad=cfg.update in ("loss", "decoder"))
        self.register_buffer("initialized", torch.tensor(False))  # the k-means start is done (a weight-file flag)
        self.register_buffer("cluster_size", torch.ones(size), persistent=False)  # TRAINING_BUFFERS
        self.register_buffer("embed_sum", self.codebook.detach().clone(), persistent=False)
        self.register_buffer("steps_unused", torch.zeros(size), persistent=False)
        self.kmeans_samples: list[torch.Tensor] = []  # what a k-means start has collected so far
        # loaded entries come without their (non-persistent) EMA statistics: restart those from
        # the entries, or the first EMA update would pull the codebook back toward its random init
        self.register_load_state_dict_post_hook(lambda module, _: module.restart_statistics())
        self._started_seen: tuple[int, int, bool] | None = None  # (data_ptr, version, value) of `initialized`

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, D] -> indices [N] of the closest entries."""
        return nearest_entry(x, self.codebook)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, F] -> vectors [B, D, F]."""
        return F.embedding(codes, self.codebook).transpose(1, 2)

    def latent_codebook(self) -> torch.Tensor:
        """[K, D]: every entry as the vector it adds to the latent (what decoding looks up)."""
        return self.codebook

    def _started(self) -> bool:
        """`initialized`, read from the device only when the flag changed (a start, a load): not
        a device-to-host copy per stage and step."""
        flag = self.initialized
        seen = self._started_seen
        if seen is None or seen[:2] != (flag.data_ptr(), flag._version):
            seen = self._started_seen = (flag.data_ptr(), flag._version, bool(flag))
        return seen[2]

    @torch.no_grad()
    def _kmeans_start(self, x: torch.Tensor) -> None:
        """Collect `x` [N, dim] for the k-means start; cluster once there are enough vectors. Until
        then the stage runs from its first batch's vectors (`kmeans` with fewer samples than
        entries: each sample an entry, the rest repeats, jittered apart)."""
        self.kmeans_samples.append(x)
        have = sum(t.shape[0] for t in self.kmeans_samples)
        if have >= KMEANS_VECTORS_PER_ENTRY * self.size:
            samples = torch.cat(self.kmeans_samples)
            self.kmeans_samples = []
            self._start_from(self._cluster(samples))
        elif len(self.kmeans_samples) == 1:
            self._start_from(self._cluster(x), final=False)

    @torch.no_grad()
    def _cluster(self, samples: torch.Tensor) -> torch.Tensor:
        """k-means centroids [K, dim] of `samples`: rank 0's under DDP, broadcast to every rank."""
        if _distributed() and dist.get_rank() != 0:
            centroids = samples.new_empty(self.size, samples.shape[1])
        else:
            centroids = kmeans(samples, self.size, self.cfg.kmeans_iters)
        _broadcast(centroids)
        return centroids

    @torch.no_grad()
    def _start_from(self, entries: torch.Tensor, final: bool = True) -> None:
        """Make `entries` [K, dim] the codebook, with the EMA statistics of a fresh start
        (`final` False: a provisional start; the k-means start is still collecting)."""
        self.codebook.copy_(entries)
        self.restart_statistics()
        if final:
            self.initialized.fill_(True)
            self._started_seen = (self.initialized.data_ptr(), self.initialized._version, True)

    @torch.no_grad()
    def restart_statistics(self) -> None:
        """EMA statistics that reproduce the current entries (each entry one count of itself)."""
        self.embed_sum.copy_(self.codebook)
        self.cluster_size.fill_(1.0)
        self.steps_unused.zero_()

    @torch.no_grad()
    def _update(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        counts = entry_counts(codes, self.size, x.dtype)
        sums = torch.zeros_like(self.codebook).index_add_(0, codes, x)
        counts, sums = _all_reduce_mean(counts), _all_reduce_mean(sums)
        if self.cfg.update == "ema":
            d = self.cfg.ema_decay
            self.cluster_size.mul_(d).add_(counts, alpha=1 - d)
            self.embed_sum.mul_(d).add_(sums, alpha=1 - d)
            total = self.cluster_size.sum()
            smoothed = (self.cluster_size + 1e-5) / (total + self.size * 1e-5) * total
            self.codebook.copy_(self.embed_sum / smoothed[:, None])
        self.steps_unused.add_(1).masked_fill_(counts > 0, 0)
        if self.cfg.dead_code_steps > 0:
            self._replace_dead(x)

    @torch.no_grad()
    def _replace_dead(self, x: torch.Tensor) -> None:
        """Entries unused for `dead_code_steps` steps become random current inputs. Every entry
        draws a candidate and only the dead take theirs, so the device is never asked how many
        are dead (no host sync); under DDP rank 0's candidates are broadcast."""
        dead = (self.steps_unused >= self.cfg.dead_code_steps)[:, None]
        picks = x[torch.randint(0, x.shape[0], (self.size,), device=x.device)]
        _broadcast(picks)
        self.codebook.copy_(torch.where(dead, picks, self.codebook))
        self.embed_sum.copy_(torch.where(dead, picks, self.embed_sum))
        self.cluster_size.masked_fill_(dead[:, 0], 1.0)
        self.steps_unused.masked_fill_(dead[:, 0], 0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, D, F] -> (quantized [B, D, F] not yet straight-through, codes [B, F], commitment per
        item [B], codebook loss): per item so that per-item quantizer dropout can leave items out."""
        b, d, f = x.shape
        flat = x.detach().transpose(1, 2).reshape(-1, d)
        if self.training and self.cfg.kmeans_init and not self._started():
            self._kmeans_start(flat)
        codes = self.nearest(flat)
        quantized = self.lookup(codes.view(b, f))
        commitment = (x - quantized.detach()).pow(2).mean(dim=(1, 2))
        codebook = F.mse_loss(quantized, x.detach()) if self.cfg.update == "loss" else x.new_zeros(())
        if self.training:
            self._update(flat, codes)
        return quantized, codes.view(b, f), commitment, codebook


class FactorizedVectorQuantizer(VectorQuantizer):
    """DAC's stage: latent [D] -> in_proj -> [codebook_dim], nearest entry by cosine, entry ->
    out_proj -> [D]. The codebook learns in the small space (EMA or codebook loss); the
    commitment and codebook losses are measured there too. On its first training batch the
    projections start as the batch's top principal directions (k-means then runs on the
    projected inputs), so a warm-started decoder sees a sensible latent from step 0."""

    def __init__(self, dim: int, cfg: QuantizerConfig, size: int | None = None):
        super().__init__(cfg.codebook_dim, cfg, size)
        self.in_proj = nn.Linear(dim, cfg.codebook_dim)
        self.out_proj = nn.Linear(cfg.codebook_dim, dim)

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, D] (latent space) -> indices [N]: cosine search in the projected space."""
        return self._nearest_projected(self.in_proj(x))

    def _nearest_projected(self, z: torch.Tensor) -> torch.Tensor:
        return (F.normalize(z, dim=1) @ F.normalize(self.codebook, dim=1).t()).argmax(dim=1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return self.out_proj(F.embedding(codes, self.codebook)).transpose(1, 2)

    def latent_codebook(self) -> torch.Tensor:
        return self.out_proj(self.codebook)

    @torch.no_grad()
    def _init_projections(self, x: torch.Tensor) -> None:
        """Principal directions of x [N, D] -> in_proj, their transpose -> out_proj (no bias:
        the mean is kept by in_proj's bias and restored by out_proj's)."""
        mean = x.mean(0)
        _, _, v = torch.linalg.svd(x - mean, full_matrices=False)
        basis = v[: self.cfg.codebook_dim].contiguous()
        _broadcast(basis)
        _broadcast(mean)  # the biases too: DDP never syncs parameters after it wraps the model
        self.in_proj.weight.copy_(basis)
        self.in_proj.bias.copy_(-(basis @ mean))
        self.out_proj.weight.copy_(basis.t())
        self.out_proj.bias.copy_(mean)

    @torch.no_grad()
    def adopt_plain_codebook(self, entries: torch.Tensor) -> None:
        """Start from a plain stage's entries [K, D] (a warm start from a plain-RVQ model): the
        projections are the entries' top principal directions and the codebook their projections,
        so this stage starts as the best `codebook_dim`-d approximation of the old one. Entries
        trained over a whole run describe the stage's input far better than one first batch."""
        self._init_projections(entries)
        self._start_from(self.in_proj(entries))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """As VectorQuantizer.forward, but the quantized output is already straight-through
        (per stage, in the projected space) and projected back to D."""
        b, d, f = x.shape
        starting = self.training and self.cfg.kmeans_init and not self._started()
        if starting and not self.kmeans_samples:  # the start's first batch
            self._init_projections(x.detach().transpose(1, 2).reshape(-1, d))
        z = self.in_proj(x.transpose(1, 2)).reshape(-1, self.cfg.codebook_dim)  # [N, c]
        if starting:
            self._kmeans_start(z.detach())
        codes = self._nearest_projected(z.detach())
        z_q = F.embedding(codes, self.codebook)
        commitment = (z - z_q.detach()).pow(2).view(b, f, -1).mean(dim=(1, 2))
        codebook = F.mse_loss(z_q, z.detach()) if self.cfg.update == "loss" else x.new_zeros(())
        if self.training:
            self._update(z.detach(), codes)
        z_st = z + (z_q - z).detach()
        quantized = self.out_proj(z_st).view(b, f, d).transpose(1, 2)
        return quantized, codes.view(b, f), commitment, codebook
