"""Dependency graphs and the GCN that refines group and label features (paper eq. 5-9)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def build_graph(features: torch.Tensor, topk: float = 0.75, r: float = 0.2) -> torch.Tensor:
    """Row-stochastic dependency graph from feature similarity (eq. 5-7).

    Args:
        features: (n, d) node features (group or label text features).
        topk: Fraction of each row kept: K = max(1, int(topk * n)) entries, the node itself
            included (its own similarity is the row maximum).
        r: Total weight of the neighbours; the diagonal gets 1 - r.

    Returns:
        (n, n) float32 matrix whose rows sum to 1, diagonal 1 - r (1 for a node left without
        neighbours). Negative similarities are clipped to 0 before normalising, so every
        weight is a non-negative share of r (CLIP text similarities are positive anyway).
    """
    unit = F.normalize(features.float(), dim=-1)
    return graph_from_similarity(unit @ unit.T, topk, r)  # (n, n) eq. 5


def graph_from_similarity(sim: torch.Tensor, topk: float = 0.75, r: float = 0.2) -> torch.Tensor:
    """The graph of :func:`build_graph` from a given (n, n) cosine-similarity matrix (eq. 6-7);
    e.g. the published code's precomputed files (see :mod:`hspnet_cli.model.similarity`)."""
    sim = torch.as_tensor(sim, dtype=torch.float32)
    n = sim.shape[0]
    k = max(1, int(topk * n))
    keep = torch.zeros_like(sim, dtype=torch.bool)
    keep.scatter_(1, sim.topk(k, dim=1).indices, True)  # eq. 6
    sparse = torch.where(keep, sim.clamp_min(0.0), torch.zeros_like(sim))
    sparse.fill_diagonal_(0.0)
    row_sum = sparse.sum(dim=1, keepdim=True)
    has_neighbours = row_sum > 0
    graph = torch.where(has_neighbours, sparse * r / row_sum.clamp_min(1e-12), torch.zeros_like(sparse))
    diag = torch.where(has_neighbours.squeeze(1), torch.full((n,), 1.0 - r), torch.ones(n))
    return graph + torch.diag(diag)  # eq. 7


class GCN(nn.Module):
    """L graph-convolution layers H <- act(A H W) with a residual to the input (eq. 8-9).

    Widths d -> h -> ... -> h -> d, no bias, LeakyReLU(0.2) after every layer but the last
    (the published layout). ``residual="gamma"``: gamma * H_L + (1 - gamma) * H_0 with a
    learnable scalar gamma (published code); ``residual="add"``: H_0 + H_L (paper).
    ``init="fan_out"`` draws each layer's weights from U(+-1/sqrt(out_features)) as the published
    code does; ``"fan_in"`` keeps ``nn.Linear``'s own bound 1/sqrt(in_features) (for the
    d -> 2d -> 2d -> d layout the first and last layers' bounds are swapped between the two).
    """

    def __init__(
        self,
        dim: int,
        hidden: int,
        layers: int = 3,
        residual: str = "gamma",
        gamma_init: float = 0.9,
        init: str = "fan_out",
    ) -> None:
        super().__init__()
        widths = [dim] + [hidden] * (layers - 1) + [dim]
        self.weights = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(widths[:-1], widths[1:]))
        if init == "fan_out":
            with torch.no_grad():
                for layer in self.weights:
                    bound = 1.0 / math.sqrt(layer.out_features)
                    layer.weight.uniform_(-bound, bound)
        elif init != "fan_in":
            raise ValueError(f"GCN init must be fan_out or fan_in, got {init!r}")
        self.residual = residual
        self.gamma = nn.Parameter(torch.tensor(float(gamma_init))) if residual == "gamma" else None

    def forward(self, graph: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Refine node features.

        Args:
            graph: (n, n) row-stochastic adjacency.
            x: (n, d) node features H_0.

        Returns:
            (n, d) refined features.
        """
        h = x
        for i, layer in enumerate(self.weights):
            h = graph.to(h.dtype) @ layer(h)  # A H W
            if i < len(self.weights) - 1:
                h = F.leaky_relu(h, 0.2)
        if self.gamma is not None:
            return self.gamma * h + (1.0 - self.gamma) * x
        return x + h
