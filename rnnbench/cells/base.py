"""What every cell provides to the sequence runner.

A cell is one layer. The runner calls :meth:`Cell.hoist` once on the whole input sequence, so every
product that depends on the input alone is one matrix product, then :meth:`Cell.step` once per time
step, then :meth:`Cell.finish` on the stacked step outputs (for output maps that do not feed back).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ParamInfo:
    symbol: str  # as the paper writes it
    meaning: str


class Cell(nn.Module):
    #: names of the state tensors, in order; the first is what IRC/IHC feed back.
    state_names: tuple[str, ...] = ("h",)
    #: paper symbol and meaning for each parameter attribute
    param_info: dict[str, ParamInfo] = {}

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size

    # -- the runner's interface -------------------------------------------------------------
    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size,) * len(self.state_names)

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def init_state(self, batch: int, *, dtype: torch.dtype, device) -> tuple[torch.Tensor, ...]:
        return tuple(torch.zeros(batch, n, dtype=dtype, device=device) for n in self.state_sizes())

    def hoist(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """Input-only products for all steps at once; each result is indexed by time first."""
        raise NotImplementedError

    def step(self, hoisted: tuple[torch.Tensor, ...], x_t: torch.Tensor,
             state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        raise NotImplementedError

    def finish(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs

    # -- helpers --------------------------------------------------------------------------------
    def new_param(self, name: str, *shape: int, init: str | float = "uniform") -> nn.Parameter:
        """Register a parameter; 'uniform' is torch's RNN default U(-1/sqrt(M), 1/sqrt(M))."""
        p = nn.Parameter(torch.empty(*shape))
        with torch.no_grad():
            if init == "uniform":
                k = 1.0 / math.sqrt(self.hidden_size)
                p.uniform_(-k, k)
            else:
                p.fill_(float(init))
        self.register_parameter(name, p)
        return p

    def extra_repr(self) -> str:
        return f"N={self.input_size}, M={self.hidden_size}"


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ weight.T (+ bias) over any leading dimensions, as one product."""
    return torch.nn.functional.linear(x, weight, bias)
