"""The arithmetic of codebooks, free of any module: the one nearest-entry search, k-means, and
the usage / perplexity statistics that training, validation and tokenize report."""

from __future__ import annotations

from collections.abc import Callable

import torch

SEARCH_ELEMENTS = 1 << 25  # distances computed at once (128 MiB of float32): 1,024 rows of a 32,768-entry search


# (stage s, the paths' stage s-1 codes [N, b] or None at stage 0) -> each entry's cost [N, b, K_s]
StageCosts = Callable[[int, "torch.Tensor | None"], torch.Tensor]


def nearest_entry(x: torch.Tensor, entries: torch.Tensor, norms: torch.Tensor | None = None) -> torch.Tensor:
    """x [N, D], entries [K, D] -> indices [N] of the nearest entries (squared L2, as matrix
    products). The one L2 search: the quantizer stages, k-means and the exported encoder graph
    (deploy/export.py) all call it, so their codes agree. `norms`: `entries.pow(2).sum(1)` when
    the caller keeps it (a stream searches a frame at a time, where computing it each time was
    half the search's cost); the same numbers either way."""
    norms = entries.pow(2).sum(1) if norms is None else norms
    rows = max(1, SEARCH_ELEMENTS // max(1, entries.shape[0]))
    if x.shape[0] > rows:  # k-means over many frames: row blocks, not one huge distance matrix
        return torch.cat([nearest_entry(x[i: i + rows], entries, norms) for i in range(0, x.shape[0], rows)])
    dist2 = x.pow(2).sum(1, keepdim=True) - 2 * x @ entries.t() + norms[None]
    return dist2.argmin(dim=1)


def entry_counts(codes: torch.Tensor, size: int, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """How often each of `size` entries occurs in `codes` (any shape) -> [size]. An index_add_
    into a known size, where torch.bincount would ask the device for the largest code first (a
    device-to-host sync on CUDA)."""
    flat = codes.reshape(-1)
    return torch.zeros(size, dtype=dtype, device=codes.device).index_add_(0, flat, torch.ones_like(flat, dtype=dtype))


def code_counts(codes: torch.Tensor, size: int) -> torch.Tensor:
    """codes [B, n, F] -> how often each entry was used [n, size], for every stage at once."""
    n = codes.shape[1]
    offsets = torch.arange(n, device=codes.device)[None, :, None] * size
    return entry_counts(codes + offsets, n * size).view(n, size)


def code_statistics(counts: torch.Tensor, sizes: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry counts [n, K] -> (fraction of entries used [n], perplexity = exp(entropy) of the
    code distribution [n]); the one definition training, validation and tokenize report.
    `sizes`: each stage's own entry count where stages differ (K is then the largest)."""
    counts = counts.double()
    probs = counts / counts.sum(1, keepdim=True).clamp_min(1.0)
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(1)
    used = (counts > 0).double().sum(1)
    total = torch.tensor(sizes, dtype=used.dtype, device=used.device) if sizes else torch.full_like(used, counts.shape[1])
    return used / total, torch.exp(entropy)


KMEANS_PP_MAX = 4096  # more entries: random seeds (k-means++ is k passes over the samples, one after another)


def kmeans(samples: torch.Tensor, k: int, iters: int) -> torch.Tensor:
    """k-means on samples [N, D] -> centroids [k, D], seeded k-means++ style (each new seed drawn
    with probability proportional to its squared distance from the seeds so far), so separate
    clusters are not left sharing one centroid. With N < k, seeds repeat and are jittered apart.
    Above KMEANS_PP_MAX entries the seeds are distinct random samples: k-means++ seeding is k
    sequential passes over the samples (for 32,768 entries over 400k frames, ~20 CPU minutes, more
    than the Lloyd iterations), and at that many entries each seed has few samples to share."""
    n = samples.shape[0]
    if n <= k:  # every sample becomes a seed; the rest repeat random samples
        extra = torch.randint(0, n, (k - n,), device=samples.device)
        seeds = torch.cat([torch.randperm(n, device=samples.device), extra])
    elif k > KMEANS_PP_MAX:
        seeds = torch.randperm(n, device=samples.device)[:k]
    else:
        seeds = torch.empty(k, dtype=torch.long, device=samples.device)
        seeds[0] = torch.randint(0, n, ())
        dist2 = (samples - samples[seeds[0]]).pow(2).sum(1)
        draws = torch.rand(k, device=samples.device, dtype=samples.dtype)
        for i in range(1, k):
            cdf = torch.cumsum(dist2, 0)
            seeds[i] = torch.searchsorted(cdf, draws[i] * cdf[-1]).clamp(max=n - 1)
            dist2 = torch.minimum(dist2, (samples - samples[seeds[i]]).pow(2).sum(1))
    centroids = samples[seeds].clone()
    for _ in range(iters):
        assign = nearest_entry(samples, centroids)
        counts = entry_counts(assign, k, samples.dtype)
        sums = torch.zeros_like(centroids).index_add_(0, assign, samples)
        centroids = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1.0)[:, None], centroids)
    if n < k:  # duplicates would never separate: jitter them
        centroids += 1e-3 * samples.std() * torch.randn_like(centroids)
    return centroids


def beam_search(x: torch.Tensor, books: torch.Tensor | list[torch.Tensor], beam: int,
                costs: StageCosts | None = None) -> torch.Tensor:
    """Residual-VQ codes by beam search over the stages: x [N, D], books [S, K, D] (or S tensors
    [K_s, D] of different sizes) -> [S, N, S]
    int64, where row s holds each frame's best path through the first s + 1 stages (its last
    S - s - 1 entries are 0).

    Greedy RVQ (beam 1) takes each stage's nearest entry; keeping the `beam` best partial paths
    (by the squared error of the partial sum) finds sums closer to the latent: the bitstream and
    decoder are unchanged, only the encoder's choice. A beam stopped after stage s is exactly the
    beam search for s + 1 stages, so one pass serves every bitrate (and one exported graph).
    Plain tensor ops (matmul, topk, gather): it exports to ONNX as it is. Ties break toward the
    lower flat index, as topk does; `nearest_entry` stays the search for beam 1.

    `costs` (a rate-distortion search, `model/rd_search.py`): costs(s, prev) -> [N, b, K_s], what
    each entry of stage s adds to a path's score besides its squared error, given the b paths'
    stage s-1 codes `prev` [N, b] (None at stage 0); paths are ranked by squared error plus the
    sum of their costs. None: squared error alone, as before."""
    n, d = x.shape
    stages = len(books)
    residual = x[:, None, :]                            # [N, b, D]
    err = residual.pow(2).sum(-1)                       # [N, b]
    spent = torch.zeros_like(err)                       # [N, b]: the paths' summed costs
    paths = torch.zeros(n, 1, 0, dtype=torch.long, device=x.device)
    rows = []
    for s in range(stages):
        k = books[s].shape[0]
        # one matrix product gives every path's error after every entry: [r, err, 1] . [-2c, 1, |c|^2]
        book_aug = torch.cat([-2 * books[s], torch.ones_like(books[s][:, :1]), books[s].pow(2).sum(-1, keepdim=True)], -1)
        path_aug = torch.cat([residual, err[..., None], torch.ones_like(err[..., None])], -1)
        total = path_aug @ book_aug.t()                 # [N, b, K]
        b = total.shape[1]
        if costs is None:
            err, flat = total.reshape(n, b * k).topk(min(beam, b * k), dim=1, largest=False)  # ascending
        else:
            spent_after = spent[..., None] + costs(s, paths[:, :, s - 1] if s else None).to(total)
            _, flat = (total + spent_after).reshape(n, b * k).topk(min(beam, b * k), dim=1, largest=False)
            err, spent = total.reshape(n, b * k).gather(1, flat), spent_after.reshape(n, b * k).gather(1, flat)
        parent, code = flat // k, flat % k
        paths = torch.cat([paths.gather(1, parent[..., None].expand(-1, -1, s)), code[..., None]], dim=2)
        residual = residual.gather(1, parent[..., None].expand(-1, -1, d)) - books[s][code]
        rows.append(torch.nn.functional.pad(paths[:, 0], (0, stages - s - 1)))
    return torch.stack(rows)
