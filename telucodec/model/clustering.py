"""The arithmetic of codebooks, free of any module: the one nearest-entry search, k-means, and
the usage / perplexity statistics that training, validation and tokenize report."""

from __future__ import annotations

import torch


def nearest_entry(x: torch.Tensor, entries: torch.Tensor, norms: torch.Tensor | None = None) -> torch.Tensor:
    """x [N, D], entries [K, D] -> indices [N] of the nearest entries (squared L2, as matrix
    products). The one L2 search: the quantizer stages, k-means and the exported encoder graph
    (deploy/export.py) all call it, so their codes agree. `norms`: `entries.pow(2).sum(1)` when
    the caller keeps it (a stream searches a frame at a time, where computing it each time was
    half the search's cost); the same numbers either way."""
    norms = entries.pow(2).sum(1) if norms is None else norms
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


def code_statistics(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry counts [n, K] -> (fraction of entries used [n], perplexity = exp(entropy) of the
    code distribution [n]); the one definition training, validation and tokenize report."""
    counts = counts.double()
    probs = counts / counts.sum(1, keepdim=True).clamp_min(1.0)
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(1)
    return (counts > 0).double().mean(1), torch.exp(entropy)


def kmeans(samples: torch.Tensor, k: int, iters: int) -> torch.Tensor:
    """k-means on samples [N, D] -> centroids [k, D], seeded k-means++ style (each new seed drawn
    with probability proportional to its squared distance from the seeds so far), so separate
    clusters are not left sharing one centroid. With N < k, seeds repeat and are jittered apart."""
    n = samples.shape[0]
    if n <= k:  # every sample becomes a seed; the rest repeat random samples
        extra = torch.randint(0, n, (k - n,), device=samples.device)
        seeds = torch.cat([torch.randperm(n, device=samples.device), extra])
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


def beam_search(x: torch.Tensor, books: torch.Tensor, beam: int) -> torch.Tensor:
    """Residual-VQ codes by beam search over the stages: x [N, D], books [S, K, D] -> [S, N, S]
    int64, where row s holds each frame's best path through the first s + 1 stages (its last
    S - s - 1 entries are 0).

    Greedy RVQ (beam 1) takes each stage's nearest entry; keeping the `beam` best partial paths
    (by the squared error of the partial sum) finds sums closer to the latent: the bitstream and
    decoder are unchanged, only the encoder's choice. A beam stopped after stage s is exactly the
    beam search for s + 1 stages, so one pass serves every bitrate (and one exported graph).
    Plain tensor ops (matmul, topk, gather): it exports to ONNX as it is. Ties break toward the
    lower flat index, as topk does; `nearest_entry` stays the search for beam 1."""
    n, d = x.shape
    stages, k = books.shape[0], books.shape[1]
    # one matrix product gives every path's error after every entry: [r, err, 1] . [-2c, 1, |c|^2]
    books_aug = torch.cat([-2 * books, torch.ones_like(books[..., :1]), books.pow(2).sum(-1, keepdim=True)], -1)
    residual = x[:, None, :]                            # [N, b, D]
    err = residual.pow(2).sum(-1)                       # [N, b]
    paths = torch.zeros(n, 1, 0, dtype=torch.long, device=x.device)
    rows = []
    for s in range(stages):
        path_aug = torch.cat([residual, err[..., None], torch.ones_like(err[..., None])], -1)
        total = path_aug @ books_aug[s].t()             # [N, b, K]
        b = total.shape[1]
        err, flat = total.reshape(n, b * k).topk(min(beam, b * k), dim=1, largest=False)  # ascending
        parent, code = flat // k, flat % k
        paths = torch.cat([paths.gather(1, parent[..., None].expand(-1, -1, s)), code[..., None]], dim=2)
        residual = residual.gather(1, parent[..., None].expand(-1, -1, d)) - books[s][code]
        rows.append(torch.nn.functional.pad(paths[:, 0], (0, stages - s - 1)))
    return torch.stack(rows)
