"""Residual vector quantizer (its stages' classes are in `model/vq_stages.py`).

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

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from telucodec.config import QuantizerConfig
from telucodec.model.clustering import StageCosts, beam_search, code_counts, code_statistics
from telucodec.model.vq_stages import (  # noqa: F401  (the stages and their constants, importable from here too)
    KMEANS_VECTORS_PER_ENTRY,
    TRAINING_BUFFERS,
    FactorizedVectorQuantizer,
    VectorQuantizer,
)


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor          # [B, D, F], straight-through (gradients reach the encoder)
    codes: torch.Tensor              # [B, n_q_used, F] int64
    commitment_loss: torch.Tensor    # scalar, summed over stages
    codebook_loss: torch.Tensor      # scalar (0 with EMA updates)
    usage: list[float] = field(default_factory=list)        # fraction of entries used this batch, per stage
    perplexity: list[float] = field(default_factory=list)   # exp(entropy) of this batch's code distribution


class ResidualVQ(nn.Module):
    def __init__(self, dim: int, cfg: QuantizerConfig):
        super().__init__()
        self.cfg = cfg
        self.factorized = cfg.codebook_dim > 0
        stage = FactorizedVectorQuantizer if self.factorized else VectorQuantizer
        cfg.check_sizes()
        self.layers = nn.ModuleList([stage(dim, cfg, size) for size in cfg.stage_sizes])

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
        usage, perplexity = code_statistics(code_counts(stacked, self.cfg.codebook_size), self.cfg.stage_sizes[: len(codes)])
        stats = torch.cat([usage, perplexity]).tolist()  # one device-to-host copy for every stage
        return QuantizerOutput(quantized, stacked, commitment, codebook, stats[: len(codes)], stats[len(codes):])

    @torch.no_grad()
    def set_codebooks(self, books: torch.Tensor | Sequence[torch.Tensor], first: int = 0) -> None:
        """Start plain stages `first`, `first` + 1, ... from given entries ([n, K, D], or one [K_s, D]
        per stage: a converted model's tables, a k-means fitted offline, new stages of an extended
        quantizer), with fresh EMA statistics."""
        books = list(books)
        layers = self.layers[first:] if first >= 0 else []
        fits = len(books) <= len(layers) and all(
            b.dim() == 2 and tuple(b.shape) == tuple(layer.codebook.shape) for b, layer in zip(books, layers))
        if self.factorized or not fits:
            shapes = [tuple(b.shape) for b in books][:4]
            raise ValueError(f"codebooks {shapes}{'...' if len(books) > 4 else ''} from stage {first} do not fit this quantizer")
        for layer, entries in zip(layers, books):
            layer._start_from(entries.to(layer.codebook))

    def stage_codebooks(self) -> list[torch.Tensor]:
        """Every stage's entries [K_s, D] as the vectors they add to the latent (K_s: the stage's
        size, `cfg.stage_sizes`)."""
        return [layer.latent_codebook().detach() for layer in self.layers]

    def codebooks(self) -> torch.Tensor:
        """[n_q, K, D]: every stage's entries, for stages of one size (`stage_codebooks` for any)."""
        if len(set(self.cfg.stage_sizes)) > 1:
            raise ValueError(f"the stages have {self.cfg.stage_sizes} entries: use stage_codebooks()")
        return torch.stack(self.stage_codebooks())

    def adopt_plain_codebooks(self, state: dict[str, torch.Tensor], prefix: str = "quantizer.") -> list[int]:
        """Factorized stages whose plain [K, D] codebook is in `state` start from it
        (`FactorizedVectorQuantizer.adopt_plain_codebook`); returns the stages that did."""
        if not self.factorized:
            return []
        adopted = []
        for i, layer in enumerate(self.layers):
            entries = state.get(f"{prefix}layers.{i}.codebook")
            if entries is not None and entries.shape == (layer.size, layer.in_proj.in_features):
                layer.adopt_plain_codebook(entries.to(layer.codebook.dtype))
                adopted.append(i)
        return adopted

    def _items_n_q(self, x: torch.Tensor) -> torch.Tensor | None:
        """DAC's quantizer dropout (`dropout_fraction` > 0, training only): that fraction of the
        items gets a random n_q in `dropout_range()`, the rest every stage. Per item rather
        than per batch, so every batch trains the later codebooks and the low bitrates at once."""
        fraction = self.cfg.dropout_fraction
        if not (self.training and self.cfg.quantizer_dropout and fraction > 0):
            return None
        b = x.shape[0]
        lo, hi = self.dropout_range()
        drawn = torch.randint(lo, hi + 1, (b,), device=x.device)
        dropped = torch.rand(b, device=x.device) < fraction
        return torch.where(dropped, drawn, torch.full_like(drawn, self.cfg.n_q))

    @torch.no_grad()
    def encode(self, x: torch.Tensor, n_q: int | None = None, beam: int = 1) -> torch.Tensor:
        """latent [B, D, F] -> codes [B, n_q, F]: beam 1 gives `forward`'s eval-mode codes."""
        return self.encode_prefixes(x, n_q, beam)[-1]

    @torch.no_grad()
    def encode_prefixes(self, x: torch.Tensor, n_q: int | None = None, beam: int = 1,
                        costs: StageCosts | None = None) -> list[torch.Tensor]:
        """latent [B, D, F] -> [codes [B, n, F] for n = 1 .. n_q], from one search: greedy codes are
        prefixes of each other, a beam's best path after stage n is the beam search for n
        (`clustering.beam_search`; `costs`: its rate-distortion ranking, B * F frames in order).
        What rate control chooses from."""
        n_q = n_q or self.cfg.n_q
        b, d, f = x.shape
        residual = x.transpose(1, 2).reshape(-1, d)
        if beam > 1:
            rows = beam_search(residual, [c.to(residual) for c in self.stage_codebooks()[:n_q]], beam, costs)  # [n_q, N, n_q]
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
        lo, hi = self.dropout_range()
        return int(torch.randint(lo, hi + 1, (), generator=generator))

    def dropout_range(self) -> tuple[int, int]:
        """The stage counts quantizer dropout draws from: [min_n_q_dropout, max_n_q_dropout or n_q],
        clamped to 1..n_q."""
        hi = min(self.cfg.n_q, self.cfg.max_n_q_dropout or self.cfg.n_q)
        return min(max(1, self.cfg.min_n_q_dropout), hi), hi
