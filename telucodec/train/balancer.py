"""EnCodec's loss balancer: weights say what share of the gradient each loss gets, not its scale.

With plain weighted sums, a loss's influence is its weight times its gradient's size, and the
sizes differ by orders of magnitude between, say, a log-mel L1 and a waveform MSE (and drift as
training goes). The balancer takes each term's gradient with respect to the decoded waveform,
divides it by a running average of that gradient's norm, and sends

    total_norm * sum_i (w_i / sum_j w_j) * g_i / avg ||g_i||

back through the model, so a term with weight 2 moves the output twice as hard as one with
weight 1 whatever its numeric range (Défossez et al., "High Fidelity Neural Audio Compression",
2022, section 3.4). Terms that do not go through the waveform (commitment, codebook) are
backpropagated as usual, outside the balance.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


class Balancer:
    def __init__(self, weights: dict[str, float], total_norm: float = 1.0, ema_decay: float = 0.999,
                 epsilon: float = 1e-12) -> None:
        self.weights = {k: float(w) for k, w in weights.items() if w}
        self.total_norm, self.ema_decay, self.epsilon = total_norm, ema_decay, epsilon
        self.sums: dict[str, float] = {}    # bias-corrected EMA: sum of decayed norms ...
        self.counts: dict[str, float] = {}  # ... over the sum of decayed counts

    def backward(self, terms: dict[str, torch.Tensor], output: torch.Tensor,
                 others: torch.Tensor | None = None) -> dict[str, float]:
        """Backpropagate the balanced `terms` (each a function of `output`) plus `others` (a
        scalar backpropagated unchanged, or None). Returns each term's gradient norm."""
        names = [k for k in terms if k in self.weights]
        grads = [torch.autograd.grad(terms[k], output, retain_graph=True)[0] for k in names]
        norms = torch.stack([g.norm() for g in grads]).detach()
        if dist.is_available() and dist.is_initialized():  # every rank must scale alike
            dist.all_reduce(norms)
            norms /= dist.get_world_size()
        total_weight = sum(self.weights[k] for k in names)
        combined = torch.zeros_like(output)
        for name, grad, norm in zip(names, grads, norms.tolist()):
            self.sums[name] = self.ema_decay * self.sums.get(name, 0.0) + norm
            self.counts[name] = self.ema_decay * self.counts.get(name, 0.0) + 1.0
            average = self.sums[name] / self.counts[name]
            combined += grad * (self.total_norm * self.weights[name] / total_weight / (average + self.epsilon))
        tensors, grad_tensors = [output], [combined]
        if others is not None and others.requires_grad:
            tensors.append(others)
            grad_tensors.append(torch.ones_like(others))
        torch.autograd.backward(tensors, grad_tensors)
        return dict(zip(names, norms.tolist()))

    def state_dict(self) -> dict[str, dict[str, float]]:
        return {"sums": dict(self.sums), "counts": dict(self.counts)}

    def load_state_dict(self, state: dict[str, dict[str, float]]) -> None:
        self.sums, self.counts = dict(state["sums"]), dict(state["counts"])
