"""The multi-layer sequence runner every cell plugs into: the `eager` implementation.

Every input-only product is computed for the whole sequence before the time loop (Cell.hoist), so
the loop holds only what truly depends on the previous step. Later backends are checked against it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rnnbench.cells.registry import CellSpec
from rnnbench.case import layer_sizes
from rnnbench.errors import SizeError

State = tuple[torch.Tensor, ...]


class RecurrentStack(nn.Module):
    """Layers of one cell kind. Input (T, B, N), or (B, T, N) with batch_first."""

    def __init__(self, spec: CellSpec, input_size: int, hidden_sizes: int | Sequence[int],
                 layers: int | None = None, *, batch_first: bool = False, **cell_options):
        super().__init__()
        self.spec, self.batch_first = spec, batch_first
        self.layers = nn.ModuleList()
        n = input_size
        for _, m in layer_sizes(input_size, hidden_sizes, layers):
            cell = spec.build(n, m, **cell_options)
            self.layers.append(cell)
            n = cell.output_size
        self.input_size = input_size
        self.hidden_sizes = [c.hidden_size for c in self.layers]

    @property
    def output_size(self) -> int:
        return self.layers[-1].output_size

    def init_state(self, batch: int, *, dtype=None, device=None) -> list[State]:
        p = next(self.parameters())
        return [c.init_state(batch, dtype=dtype or p.dtype, device=device or p.device)
                for c in self.layers]

    def forward(self, x: torch.Tensor, state: list[State] | None = None
                ) -> tuple[torch.Tensor, list[State]]:
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise SizeError(f"expected input of shape (T, B, {self.input_size}), got {tuple(x.shape)}")
        if self.batch_first:
            x = x.transpose(0, 1)
        if state is None:
            state = self.init_state(x.shape[1], dtype=x.dtype, device=x.device)
        finals = []
        for cell, st in zip(self.layers, state):
            x, st = run_layer(cell, x, tuple(st))
            finals.append(st)
        if self.batch_first:
            x = x.transpose(0, 1)
        return x, finals


def run_layer(cell, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
    hoisted = cell.hoist(x, state)
    per_step = zip(*(h.unbind(0) for h in hoisted)) if hoisted else iter(lambda: (), None)
    outputs = []
    for x_t, pre_t in zip(x.unbind(0), per_step):
        out, state = cell.step(pre_t, x_t, state)
        outputs.append(out)
    return cell.finish(torch.stack(outputs)), state
