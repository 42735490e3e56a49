"""The shape shared by every IRC and IHC cell.

Each regulated cell has gates that see only the regulated input ``v_t`` and a candidate ``W_A x_t``
that sees only the input, so the input weights of all gates and the candidate are one stacked matrix
``W`` multiplied with the whole sequence once. Per step only ``W_gates d_t`` (see connections.py)
remains. The family's declaration (family.py) supplies the gate letters and the update.
"""

from __future__ import annotations

import torch

from rnnbench.cells.base import Cell, ParamInfo, linear
from rnnbench.cells.connections import CONNECTION_INFO, Connection
from rnnbench.cells.family import Family

BETA_INFO = ParamInfo("θ_β", "β = σ(θ_β)")
#: EdgeML initialises zeta = 1 (beta = 0.73)
THETA_BETA_INIT = 1.0


class RegulatedCell(Cell):
    #: the family's declaration; a subclass sets it, and gets its gates and state names from it
    family: Family
    gates: tuple[str, ...] = ()
    candidate: str = "A"
    #: SRU and T-LSTM feed back ``omega_V * h`` (elementwise) instead of ``U_V h``.
    diagonal_feedback = False

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        fam = cls.__dict__.get("family")
        if fam is not None:
            cls.gates = fam.gates
            cls.diagonal_feedback = fam.diagonal_feedback
            if "state_names" not in cls.__dict__:
                cls.state_names = fam.state_names()

    def __init__(self, input_size: int, hidden_size: int, *, kind: str, gamma_input: str = "h"):
        super().__init__(input_size, hidden_size)
        self.kind = kind
        self.w_name = "W_" + "".join(self.gates) + self.candidate
        self.new_param(self.w_name, (len(self.gates) + 1) * hidden_size, input_size)
        self.connection = Connection(kind, input_size, hidden_size,
                                     diagonal=self.diagonal_feedback, gamma_input=gamma_input)
        letters = ",".join(self.gates)
        self.param_info = {
            self.w_name: ParamInfo(f"W_{{{letters}}}; W_{self.candidate}",
                                   "input weights of the gates and the candidate, stacked"),
            **CONNECTION_INFO, **self.extra_param_info,
        }
        if self.family.has_beta:
            self.new_param("theta_beta", 1, init=THETA_BETA_INIT)
            self.param_info["theta_beta"] = BETA_INFO

    extra_param_info: dict[str, ParamInfo] = {}

    @property
    def W(self) -> torch.Tensor:
        return getattr(self, self.w_name)

    @property
    def n_gate_rows(self) -> int:
        return len(self.gates) * self.hidden_size

    def hoist(self, x, state):
        return (linear(x, self.W),) + self.connection.hoist(x)

    def step(self, hoisted, x_t, state):
        wx, conn_hoisted = hoisted[0], hoisted[1:]
        G = self.n_gate_rows
        d = self.connection.correction(conn_hoisted, x_t, state[0])
        gates = torch.sigmoid(wx[:, :G] + linear(d, self.W[:G]))
        fam = self.family
        c = state[1] if fam.has_c else None
        h, c = fam.update(gates.chunk(len(self.gates), -1), wx[:, G:], state[0], c, x_t, self.beta())
        return h, ((h, c) if fam.has_c else (h,))

    def beta(self) -> torch.Tensor | None:
        return torch.sigmoid(self.theta_beta) if self.family.has_beta else None

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.kind}"
