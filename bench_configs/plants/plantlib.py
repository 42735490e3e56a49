"""Planted slowdowns for checking `rnnbench ab` itself: a user cell whose step does K equal
recurrent matrix products. Against K = 20, K = 21 is about 5% more work and K = 22 about 10%;
against K = 200, K = 201 is 0.5% (for instruction counts, with plant_small.toml).

Each side folder (k20, k21, k22) holds a two-line plantcell.py naming its K; this folder goes on
PYTHONPATH after the side's, so both sides share this code:

    PYTHONPATH=bench_configs/plants rnnbench ab bench_configs/plants/plant.toml \\
        --base bench_configs/plants/k20 --head bench_configs/plants/k21
"""

import torch
from torch import nn


def plant_cell(products: int) -> type:
    class Plant(nn.Module):
        """h' = tanh(W x + b + (1/K) Σ_k U h), the K products computed one by one on purpose."""

        def __init__(self, input_size: int, hidden_size: int):
            super().__init__()
            self.w = nn.Linear(input_size, hidden_size)
            self.u = nn.Parameter(torch.empty(hidden_size, hidden_size).uniform_(
                -hidden_size ** -0.5, hidden_size ** -0.5))

        def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
            acc = self.w(x)
            for _ in range(products):
                acc = acc + (h @ self.u) / products
            return torch.tanh(acc)

    Plant.__name__ = Plant.__qualname__ = f"Plant{products}"
    return Plant
