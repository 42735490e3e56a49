"""The registry is the one list: a new cell registered in one place reaches the commands."""

import pytest
import torch
from typer.testing import CliRunner

from rnnbench.cells import registry
from rnnbench.cells.base import Cell, linear
from rnnbench.cli import app
from rnnbench.errors import UnknownCellError
from rnnbench.runner import RecurrentStack


@pytest.fixture
def elman():
    """A toy Elman cell, registered the way a family file does it, removed afterwards."""

    @registry.register("elman", "baseline", equations="h' = tanh(W x + U h + b)")
    class Elman(Cell):
        title = "Elman"

        def __init__(self, input_size, hidden_size):
            super().__init__(input_size, hidden_size)
            self.new_param("W", hidden_size, input_size)
            self.new_param("U", hidden_size, hidden_size)
            self.new_param("b", hidden_size)

        def hoist(self, x, state):
            return (linear(x, self.W, self.b),)

        def step(self, hoisted, x_t, state):
            h = torch.tanh(hoisted[0] + linear(state[0], self.U))
            return h, (h,)

    yield Elman
    registry.unregister_family("elman")


def test_a_cell_registered_once_reaches_every_command(elman):
    assert "elman" in registry.families()
    r = CliRunner().invoke(app, ["list"])
    assert "elman" in r.output
    r = CliRunner().invoke(app, ["params", "--cell", "elman", "--variant", "baseline", "-N", "3", "-M", "4"])
    assert r.exit_code == 0 and "32" in r.output  # NM + M² + M = 12 + 16 + 4
    stack = RecurrentStack(registry.get("elman"), 3, [4])
    x = torch.randn(5, 2, 3)
    y, _ = stack(x)
    h = torch.zeros(2, 4)
    for t in range(5):  # the Elman recurrence, written out
        h = torch.tanh(x[t] @ stack.layers[0].W.T + stack.layers[0].b
                       + h @ stack.layers[0].U.T)
    torch.testing.assert_close(y[-1], h)


def test_lookup_errors_name_the_choices():
    with pytest.raises(UnknownCellError, match="choose from gru, lstm, sru, tlstm, fastgrnn, pru"):
        registry.get("rnn")
    with pytest.raises(UnknownCellError, match="has no 'canonical' form"):
        registry.get("pru", "baseline", "canonical")
    assert registry.get("T-LSTM").family == "tlstm"  # spelled as the paper does


def test_zoo_is_complete():
    specs = registry.all_specs()
    paper = {(s.family, s.variant) for s in specs if s.form == "paper"}
    assert len(paper) == 18
    assert {s.family for s in specs if s.form == "canonical"} == {"gru", "lstm", "sru", "fastgrnn"}
    assert [s.display for s in specs if s.family == "tlstm"] == ["T-LSTM", "IRC-T-LSTM", "IHC-T-LSTM"]


def test_select_says_when_it_swaps_canonical_for_paper():
    from rnnbench.cells import select
    notes = []
    specs = select(["gru"], ["baseline", "irc"], "canonical", notes=notes)
    assert [(s.variant, s.form) for s in specs] == [("baseline", "canonical"), ("irc", "paper")]
    assert notes == ["IRC-GRU: no canonical form; run in the paper form"]
    quiet = []
    select(["gru"], ["baseline"], "canonical", notes=quiet)
    assert quiet == []
