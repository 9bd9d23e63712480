"""Residual vector quantizer.

Each stage is a 1024-entry (configurable) codebook. Entries start by k-means on at least
KMEANS_VECTORS_PER_ENTRY vectors per entry: a batch smaller than that (the default 16 x 1 s
crops give 800 vectors for 1024 entries) starts the stage provisionally from its own vectors and
the stage collects the next batches' until it has enough to cluster. Entries then either follow
EMA k-means updates ("ema"), learn from a codebook loss ("loss"), or learn from the decoder's
gradient ("decoder": entries tuned for what a frozen decoder makes of them, not latent MSE; the
encoder still gets the identity gradient); entries unused for
`dead_code_steps` steps are replaced by random current inputs, which keeps usage high (without
it the first codebook collapses to a handful of codes). The commitment loss is computed before
the straight-through estimator, which then lets gradients pass from decoder to encoder as if
quantization were the identity.

The quantizer runs in float32 whatever autocast surrounds it (the latent is cast up): EMA sums
and nearest-entry distances need the precision. Its statistics cost one device-to-host copy per
step (usage and perplexity of every stage together), not several per stage.

The EMA statistics and the vectors a k-means start is collecting are training-only state, out of
`state_dict()` and the model id, kept by checkpoints (model/training_state.py); a stage loaded from
weights alone restarts its statistics from its loaded entries.

With `codebook_dim` > 0 each stage is DAC's factorized quantizer instead: a linear projection to
a few dimensions, a nearest-entry search between L2-normalized vectors (a cosine search, which
keeps every entry reachable), and a projection back. Its straight-through estimator is per stage,
in the small space, so the projections learn from the decoder's gradient.

Under DDP the EMA statistics are all-reduced and replacements broadcast from rank 0, so every
process keeps identical codebooks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from telucodec.config import QuantizerConfig
from telucodec.model.clustering import (
    beam_search,
    code_counts,
    code_statistics,
    entry_counts,
    kmeans,
    nearest_entry,
)

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


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor          # [B, D, F], straight-through (gradients reach the encoder)
    codes: torch.Tensor              # [B, n_q_used, F] int64
    commitment_loss: torch.Tensor    # scalar, summed over stages
    codebook_loss: torch.Tensor      # scalar (0 with EMA updates)
    usage: list[float] = field(default_factory=list)        # fraction of entries used this batch, per stage
    perplexity: list[float] = field(default_factory=list)   # exp(entropy) of this batch's code distribution


class VectorQuantizer(nn.Module):
    def __init__(self, dim: int, cfg: QuantizerConfig):
        super().__init__()
        self.cfg = cfg
        size = cfg.codebook_size
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
        if have >= KMEANS_VECTORS_PER_ENTRY * self.cfg.codebook_size:
            samples = torch.cat(self.kmeans_samples)
            self.kmeans_samples = []
            self._start_from(self._cluster(samples))
        elif len(self.kmeans_samples) == 1:
            self._start_from(self._cluster(x), final=False)

    @torch.no_grad()
    def _cluster(self, samples: torch.Tensor) -> torch.Tensor:
        """k-means centroids [K, dim] of `samples`: rank 0's under DDP, broadcast to every rank."""
        if _distributed() and dist.get_rank() != 0:
            centroids = samples.new_empty(self.cfg.codebook_size, samples.shape[1])
        else:
            centroids = kmeans(samples, self.cfg.codebook_size, self.cfg.kmeans_iters)
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
        counts = entry_counts(codes, self.cfg.codebook_size, x.dtype)
        sums = torch.zeros_like(self.codebook).index_add_(0, codes, x)
        counts, sums = _all_reduce_mean(counts), _all_reduce_mean(sums)
        if self.cfg.update == "ema":
            d = self.cfg.ema_decay
            self.cluster_size.mul_(d).add_(counts, alpha=1 - d)
            self.embed_sum.mul_(d).add_(sums, alpha=1 - d)
            total = self.cluster_size.sum()
            smoothed = (self.cluster_size + 1e-5) / (total + self.cfg.codebook_size * 1e-5) * total
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
        picks = x[torch.randint(0, x.shape[0], (self.cfg.codebook_size,), device=x.device)]
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

    def __init__(self, dim: int, cfg: QuantizerConfig):
        super().__init__(cfg.codebook_dim, cfg)
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


class ResidualVQ(nn.Module):
    def __init__(self, dim: int, cfg: QuantizerConfig):
        super().__init__()
        self.cfg = cfg
        self.factorized = cfg.codebook_dim > 0
        stage = FactorizedVectorQuantizer if self.factorized else VectorQuantizer
        self.layers = nn.ModuleList([stage(dim, cfg) for _ in range(cfg.n_q)])

    def forward(self, x: torch.Tensor, n_q: int | None = None) -> QuantizerOutput:
        # float32 whatever autocast is on around it (bf16 training): the EMA sums, the distances
        # and k-means need the precision, and index_add_ refuses a bf16 source for a float32 table
        with torch.autocast(x.device.type, enabled=False):
            return self._forward(x.float(), n_q)

    def _forward(self, x: torch.Tensor, n_q: int | None) -> QuantizerOutput:
        n_q = n_q or self.cfg.n_q
        keep = self._items_n_q(x) if n_q == self.cfg.n_q else None  # [B] per-item dropout, or None
        residual = x
        quantized_sum = torch.zeros_like(x)
        codes = []
        commitment = x.new_zeros(())
        codebook = x.new_zeros(())
        for i, layer in enumerate(self.layers[:n_q]):
            q, c, commit, cb = layer(residual)
            # factorized stages are straight-through already, and their projections learn from
            # every later stage's input as DAC's do; plain stages pass gradients by the outer STE
            residual = residual - (q if self.factorized else q.detach())
            if keep is None:
                quantized_sum = quantized_sum + q
                commit = commit.mean()
            else:  # items past their n_q neither add this stage nor pay its commitment
                mask = (keep > i).to(x.dtype)
                quantized_sum = quantized_sum + q * mask[:, None, None]
                commit = (commit * mask).sum() / mask.sum().clamp_min(1.0)
            commitment = commitment + commit
            codebook = codebook + cb
            codes.append(c)
        # straight-through: forward value is the quantized sum, gradient is identity to x
        if self.factorized:
            quantized = quantized_sum
        elif self.cfg.update == "decoder":  # value: the quantized sum; gradient: to its entries and, as identity, to x
            quantized = quantized_sum + (x - x.detach())
        else:
            quantized = x + (quantized_sum - x).detach()
        stacked = torch.stack(codes, dim=1)
        usage, perplexity = code_statistics(code_counts(stacked, self.cfg.codebook_size))
        stats = torch.cat([usage, perplexity]).tolist()  # one device-to-host copy for every stage
        return QuantizerOutput(quantized, stacked, commitment, codebook, stats[: len(codes)], stats[len(codes):])

    @torch.no_grad()
    def set_codebooks(self, books: torch.Tensor, first: int = 0) -> None:
        """Start plain stages `first`, `first` + 1, ... from given entries [n, K, D] (a converted
        model's tables, a k-means fitted offline, new stages of an extended quantizer), with
        fresh EMA statistics."""
        fits = books.dim() == 3 and books.shape[1:] == (self.cfg.codebook_size, self.layers[0].codebook.shape[1])
        if self.factorized or not fits or first < 0 or first + books.shape[0] > self.cfg.n_q:
            raise ValueError(f"codebooks {tuple(books.shape)} from stage {first} do not fit this quantizer")
        for layer, entries in zip(self.layers[first:], books):
            layer._start_from(entries.to(layer.codebook))

    def codebooks(self) -> torch.Tensor:
        """[n_q, K, D]: every stage's entries as the vectors they add to the latent."""
        return torch.stack([layer.latent_codebook() for layer in self.layers]).detach()

    def adopt_plain_codebooks(self, state: dict[str, torch.Tensor], prefix: str = "quantizer.") -> list[int]:
        """Factorized stages whose plain [K, D] codebook is in `state` start from it
        (`FactorizedVectorQuantizer.adopt_plain_codebook`); returns the stages that did."""
        if not self.factorized:
            return []
        adopted = []
        for i, layer in enumerate(self.layers):
            entries = state.get(f"{prefix}layers.{i}.codebook")
            if entries is not None and entries.shape == (self.cfg.codebook_size, layer.in_proj.in_features):
                layer.adopt_plain_codebook(entries.to(layer.codebook.dtype))
                adopted.append(i)
        return adopted

    def _items_n_q(self, x: torch.Tensor) -> torch.Tensor | None:
        """DAC's quantizer dropout (`dropout_fraction` > 0, training only): that fraction of the
        items gets a random n_q in [min_n_q_dropout, n_q], the rest every stage. Per item rather
        than per batch, so every batch trains the later codebooks and the low bitrates at once."""
        fraction = self.cfg.dropout_fraction
        if not (self.training and self.cfg.quantizer_dropout and fraction > 0):
            return None
        b = x.shape[0]
        lo = max(1, self.cfg.min_n_q_dropout)
        drawn = torch.randint(lo, self.cfg.n_q + 1, (b,), device=x.device)
        dropped = torch.rand(b, device=x.device) < fraction
        return torch.where(dropped, drawn, torch.full_like(drawn, self.cfg.n_q))

    @torch.no_grad()
    def encode(self, x: torch.Tensor, n_q: int | None = None, beam: int = 1) -> torch.Tensor:
        """latent [B, D, F] -> codes [B, n_q, F]: beam 1 gives `forward`'s eval-mode codes."""
        return self.encode_prefixes(x, n_q, beam)[-1]

    @torch.no_grad()
    def encode_prefixes(self, x: torch.Tensor, n_q: int | None = None, beam: int = 1) -> list[torch.Tensor]:
        """latent [B, D, F] -> [codes [B, n, F] for n = 1 .. n_q], from one search: greedy codes are
        prefixes of each other, a beam's best path after stage n is the beam search for n
        (`clustering.beam_search`). What rate control chooses from."""
        n_q = n_q or self.cfg.n_q
        b, d, f = x.shape
        residual = x.transpose(1, 2).reshape(-1, d)
        if beam > 1:
            rows = beam_search(residual, self.codebooks()[:n_q].to(residual), beam)  # [n_q, N, n_q]
            return [rows[n - 1, :, :n].reshape(b, f, n).transpose(1, 2) for n in range(1, n_q + 1)]
        codes = []
        for layer in self.layers[:n_q]:
            c = layer.nearest(residual)
            residual = residual - F.embedding(c, layer.latent_codebook())
            codes.append(c.view(b, f))
        stacked = torch.stack(codes, dim=1)
        return [stacked[:, :n] for n in range(1, n_q + 1)]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, n_q, F] -> latent [B, D, F] (any n_q up to the configured one)."""
        out = self.layers[0].lookup(codes[:, 0])
        for i in range(1, codes.shape[1]):
            out = out + self.layers[i].lookup(codes[:, i])
        return out

    def sample_n_q(self, generator: torch.Generator | None = None) -> int:
        """Quantizer dropout per batch: half the batches use every stage, the rest a random prefix
        (with `dropout_fraction` > 0 every batch uses every stage and `forward` drops per item)."""
        if not self.cfg.quantizer_dropout or self.cfg.dropout_fraction > 0 or torch.rand((), generator=generator) < 0.5:
            return self.cfg.n_q
        lo = max(1, self.cfg.min_n_q_dropout)
        return int(torch.randint(lo, self.cfg.n_q + 1, (), generator=generator))
