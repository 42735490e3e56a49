"""The PRU paper's synthetic tasks, generated from a seed (nothing is downloaded).

Every generator takes a ``torch.Generator`` and returns time-major tensors, so a run is reproduced
by its seed alone and the validation set is one fixed draw.

- Adding problem: inputs ``(u_t, m_t)``, ``u_t ~ U[0, 1]``, exactly two markers ``m_t = 1``, one in
  each half; the target ``Σ m_t u_t`` is read at the last step. Predicting 1 always scores
  ``E[(U1 + U2 - 1)^2] = Var(U1 + U2) = 1/6``.
- Memorisation problem: K target symbols, then L interfering symbols drawn from the same alphabet,
  then K recall steps at which the K targets must be produced in order.
- Copy task: the same shape, but the L steps between the targets and the recall are blanks.

The memorisation and copy inputs are one-hot over ``alphabet + 2`` channels: the alphabet, then
BLANK (nothing), then GO (answer now; given at each recall step). The answer is scored only at the
K recall steps, so chance per-symbol accuracy is ``1 / alphabet``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import torch

from rnnbench.errors import RnnbenchError

TASKS = ("adding", "memorization", "copy")
ALIASES = {"memorisation": "memorization", "memorize": "memorization", "memorise": "memorization",
           "add": "adding"}

ADDING_TRIVIAL_MSE = 1.0 / 6.0


@dataclass(frozen=True)
class TaskSpec:
    """One task at fixed sizes. ``seq_len`` is T for adding; ``interfere`` is L for the others."""

    name: str
    seq_len: int = 100       # adding: T
    targets: int = 5         # memorization/copy: K
    interfere: int = 20      # memorization/copy: L
    alphabet: int = 8        # memorization/copy: symbols to remember

    def __post_init__(self):
        if self.name not in TASKS:
            raise RnnbenchError(f"unknown task {self.name!r}; choose from {', '.join(TASKS)}")
        if self.name == "adding":
            if self.seq_len < 2:
                raise RnnbenchError("the adding problem needs T >= 2 (one marker per half), "
                                    f"got {self.seq_len}")
        else:
            if self.targets < 1:
                raise RnnbenchError(f"--targets (K) must be at least 1, got {self.targets}")
            if self.interfere < 0:
                raise RnnbenchError(f"--interfere (L) must be 0 or more, got {self.interfere}")
            if self.alphabet < 2:
                raise RnnbenchError(f"--alphabet must be at least 2, got {self.alphabet}")

    @classmethod
    def make(cls, name: str, **sizes) -> TaskSpec:
        name = ALIASES.get(name.lower(), name.lower())
        return replace(cls(name), **{k: v for k, v in sizes.items() if v is not None})

    # -- what the model sees ------------------------------------------------------------------
    @property
    def input_size(self) -> int:
        return 2 if self.name == "adding" else self.alphabet + 2

    @property
    def output_size(self) -> int:
        return 1 if self.name == "adding" else self.alphabet

    @property
    def total_len(self) -> int:
        """Time steps the model runs over."""
        return self.seq_len if self.name == "adding" else 2 * self.targets + self.interfere

    # -- how it is scored -----------------------------------------------------------------------
    @property
    def metric(self) -> str:
        return "val_mse" if self.name == "adding" else "val_accuracy"

    @property
    def lower_is_better(self) -> bool:
        return self.name == "adding"

    @property
    def trivial(self) -> float:
        """The score of a model that learned nothing: always predicting 1, or guessing."""
        return ADDING_TRIVIAL_MSE if self.name == "adding" else 1.0 / self.alphabet

    @property
    def solved_at(self) -> float:
        """The score counted as solving the task."""
        return 0.01 if self.name == "adding" else 0.99

    def better(self, a: float, b: float) -> bool:
        return a < b if self.lower_is_better else a > b

    def solved(self, value: float) -> bool:
        return value < self.solved_at if self.lower_is_better else value >= self.solved_at

    @property
    def label(self) -> str:
        """Short and unique per task and sizes, for case keys and titles."""
        if self.name == "adding":
            return f"adding-T{self.seq_len}"
        return f"{self.name}-K{self.targets}-L{self.interfere}-A{self.alphabet}"

    def labels(self) -> dict:
        if self.name == "adding":
            return {"task": self.name, "T": str(self.seq_len)}
        return {"task": self.name, "K": str(self.targets), "L": str(self.interfere),
                "alphabet": str(self.alphabet)}

    def batch(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self.name == "adding":
            return adding_batch(self.seq_len, batch, generator)
        return symbol_batch(self.targets, self.interfere, self.alphabet, batch, generator,
                            interfering=self.name == "memorization")


def stream_seed(seed: int, stream: str) -> int:
    """Independent seeds for the training data, the validation set and the weights of one run."""
    digest = hashlib.sha256(f"rnnbench-task:{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def generator(seed: int, stream: str) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(seed, stream))


def adding_batch(seq_len: int, batch: int, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (T, B, 2) as (u_t, m_t) and targets (B,) = the sum of the two marked u_t."""
    T = seq_len
    half = T // 2
    u = torch.rand(T, batch, generator=generator)
    first = torch.randint(0, half, (batch,), generator=generator)
    second = torch.randint(half, T, (batch,), generator=generator)
    m = torch.zeros(T, batch)
    cols = torch.arange(batch)
    m[first, cols] = 1.0
    m[second, cols] = 1.0
    target = u[first, cols] + u[second, cols]
    return torch.stack([u, m], dim=-1), target


BLANK_OFFSET, GO_OFFSET = 0, 1  # the two channels after the alphabet


def symbol_batch(targets: int, interfere: int, alphabet: int, batch: int,
                 generator: torch.Generator, *, interfering: bool
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (K + L + K, B, alphabet + 2) one-hot and targets (K, B) symbol indices.

    Steps 0..K-1 show the targets; the next L steps show random alphabet symbols (memorisation) or
    BLANK (copy); the last K steps show GO, and the model answers the targets there in order.
    """
    K, L, A = targets, interfere, alphabet
    blank, go = A + BLANK_OFFSET, A + GO_OFFSET
    want = torch.randint(0, A, (K, batch), generator=generator)
    if interfering:
        middle = torch.randint(0, A, (L, batch), generator=generator)
    else:
        middle = torch.full((L, batch), blank)
    symbols = torch.cat([want, middle, torch.full((K, batch), go)])
    return torch.nn.functional.one_hot(symbols, A + 2).float(), want
