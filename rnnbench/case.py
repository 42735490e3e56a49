"""A benchmark case: what to measure, on which cell, implementation, sizes and device.

Every command builds Cases (from flags or a suite file) and every measurement turns one Case into
one result Row, so the key that joins results across files is computed in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from rnnbench.cells.registry import CellSpec, get
from rnnbench.errors import SizeError
from rnnbench.results import Row, case_key

DTYPES = ("float32", "bfloat16", "float16", "float64")
#: how a fused backend computes the IRC recurrence: by the cost model, always folded
#: (R = W_g·diag(α)·U_V, one product a step) or never (two): the one word for it in flags, suites
#: and rows (a row's labels["fold"], absent for "auto")
FOLDS = ("auto", "on", "off")


@dataclass(frozen=True)
class Case:
    bench: str                 # speed | memory | verify | task
    cell: str
    variant: str = "baseline"
    form: str = "paper"
    backend: str = "eager"     # eager | compile | native | fused | triton
    mode: str = "fwd+bwd"      # fwd | fwd+bwd | bwd
    dtype: str = "float32"
    device: str = "cpu"
    batch: int = 32
    seq_len: int = 128
    input_size: int = 512
    hidden_size: int | tuple[int, ...] = 512
    layers: int = 1
    options: tuple[tuple[str, object], ...] = field(default_factory=tuple)  # cell options, sorted
    fold: str = "auto"         # one of FOLDS; other than auto only where a backend folds (IRC)

    @property
    def spec(self) -> CellSpec:
        return get(self.cell, self.variant, self.form)

    @property
    def hidden_sizes(self) -> list[int]:
        hs = self.hidden_size
        return list(hs) if isinstance(hs, (list, tuple)) else [hs] * self.layers

    def row(self, *, metrics: dict | None = None, status: str = "ok", reason: str = "",
            warnings: list | None = None, labels: dict | None = None) -> Row:
        labels = dict(labels or {})
        if self.options:
            labels.setdefault("options", ",".join(f"{k}={v}" for k, v in self.options))
        if self.fold != "auto":
            labels["fold"] = self.fold
        return Row(bench=self.bench, cell=self.cell, variant=self.variant, form=self.form,
                   backend=self.backend, mode=self.mode, dtype=self.dtype, device=self.device,
                   batch=self.batch, seq_len=self.seq_len, input_size=self.input_size,
                   hidden_size=self.hidden_sizes, layers=self.layers, metrics=dict(metrics or {}),
                   status=status, reason=reason, warnings=list(warnings or []), labels=labels)

    @property
    def key(self) -> str:
        return case_key(self.row())

    def to_dict(self) -> dict:
        return asdict(self)


def layer_sizes(input_size: int, hidden_sizes: int | Sequence[int], layers: int | None = None
                ) -> list[tuple[int, int]]:
    """(N, M) per layer. One hidden size with `layers` repeats it; a list gives each layer's M."""
    if isinstance(hidden_sizes, int):
        hidden_sizes = [hidden_sizes] * (layers or 1)
    elif layers is not None and layers != len(hidden_sizes):
        raise SizeError(f"--layers {layers} does not match the {len(hidden_sizes)} hidden sizes given")
    hidden_sizes = list(hidden_sizes)
    if not hidden_sizes:
        raise SizeError("at least one layer is needed")
    sizes, n = [], input_size
    for m in hidden_sizes:
        sizes.append((n, m))
        n = m
    return sizes
