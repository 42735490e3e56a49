"""Users' own cells: ``--cell package.module:Class`` on every command, ``cell = ["mycells:MyCell"]``
in suites, so that a team can gate its own cell in CI with the same harness as the zoo's.

The contract (README, "Your own cells"):
- ``Class(input_size, hidden_size)`` builds a ``torch.nn.Module``;
- ``forward(x, state)`` takes one step: x of shape (batch, input_size), state a (batch,
  hidden_size) tensor, zeros at t = 0; it returns the new state;
- if the class defines ``init_state(batch, device, dtype)``, the state may be a tuple, and the
  step's output is its first tensor.

A user cell gets the one variant "baseline", the "paper" form and the "eager" backend: the fused
and native backends are derived from the zoo's declarations, which a user cell does not have.
Import and contract errors are UnknownCellError (one line, exit 2), raised when the spec is made, so
a sweep never starts on a cell that cannot run.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import re
import sys

from rnnbench.errors import UnknownCellError

# package.module:Class, each part a Python identifier
_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def is_user_cell(name: object) -> bool:
    return isinstance(name, str) and ":" in name


def _import_class(name: str) -> type:
    if not _NAME.match(name):
        raise UnknownCellError(f"cell {name!r}: a user cell is written package.module:Class")
    module_name, cls_name = name.split(":")
    # as `python -m` would: the working directory is searched too, after PYTHONPATH, so a module
    # beside the suite imports without ceremony and a side of `rnnbench ab` still comes first
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise UnknownCellError(f"cell {name!r}: cannot import {module_name!r} ({e}); put its folder "
                               "on PYTHONPATH or run from that folder") from None
    except Exception as e:  # noqa: BLE001 - a user's module can raise anything at import
        raise UnknownCellError(f"cell {name!r}: importing {module_name!r} failed: "
                               f"{type(e).__name__}: {e}") from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise UnknownCellError(f"cell {name!r}: module {module_name!r} has no {cls_name!r}")
    from torch import nn
    if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
        raise UnknownCellError(f"cell {name!r}: {cls_name} is not a torch.nn.Module subclass")
    return cls


def _adapter(name: str, user_cls: type) -> type:
    """A zoo Cell around the user's module, so the runner, counters and probes take it as is."""
    import torch

    from rnnbench.cells.base import Cell

    def __init__(self, input_size: int, hidden_size: int):
        Cell.__init__(self, input_size, hidden_size)
        try:
            self.user = user_cls(input_size, hidden_size)
        except Exception as e:  # noqa: BLE001 - the user's constructor
            raise UnknownCellError(f"cell {name!r}: {user_cls.__name__}({input_size}, "
                                   f"{hidden_size}) failed: {type(e).__name__}: {e}") from None
        self._custom_state = callable(getattr(self.user, "init_state", None))

    def init_state(self, batch: int, *, dtype, device):
        if not self._custom_state:
            return (torch.zeros(batch, self.hidden_size, dtype=dtype, device=device),)
        st = self.user.init_state(batch, device, dtype)
        return tuple(st) if isinstance(st, (tuple, list)) else (st,)

    def hoist(self, x, state):
        return ()  # a user cell's step sees the raw input: nothing is known to be input-only

    def step(self, hoisted, x_t, state):
        new = self.user(x_t, state if self._custom_state else state[0])
        new = tuple(new) if isinstance(new, (tuple, list)) else (new,)
        if not new or not isinstance(new[0], torch.Tensor):
            raise UnknownCellError(f"cell {name!r}: forward must return the new state (a tensor, "
                                   f"or a tuple of tensors), got {type(new[0] if new else None).__name__}")
        return new[0], new

    def extra_repr(self):
        return f"{name}, N={self.input_size}, M={self.hidden_size}"

    return type(f"User_{user_cls.__name__}", (Cell,), {
        "__init__": __init__, "init_state": init_state, "hoist": hoist, "step": step,
        "extra_repr": extra_repr, "title": name, "user_cell": name, "__module__": __name__,
    })


def _check_contract(name: str, cls: type) -> None:
    """Build it once, tiny, and take one step: a cell that breaks the contract fails here, with
    what it did wrong, and not in the middle of a sweep."""
    import torch

    cell = cls(3, 4)
    try:
        state = cell.init_state(2, dtype=torch.float32, device="cpu")
        out, new = cell.step((), torch.zeros(2, 3), state)
    except UnknownCellError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's forward
        raise UnknownCellError(f"cell {name!r}: one step with x (2, 3) and a state (2, 4) failed: "
                               f"{type(e).__name__}: {e}") from None
    if tuple(out.shape) != (2, 4):
        raise UnknownCellError(f"cell {name!r}: the step's output must have shape (batch, "
                               f"hidden_size) = (2, 4), got {tuple(out.shape)}")
    if len(new) != len(state) or any(a.shape != b.shape for a, b in zip(new, state)):
        raise UnknownCellError(f"cell {name!r}: forward must return a state shaped like the one it "
                               f"was given ({[tuple(s.shape) for s in state]}), got "
                               f"{[tuple(s.shape) for s in new]}")


def user_class(name: str) -> type:
    """The user's class itself, imported from the current sys.path."""
    return _import_class(name)


def spec_for_class(name: str, user_cls: type):
    """A CellSpec around ``user_cls``, checked against the contract."""
    from rnnbench.cells.registry import CellSpec

    cls = _adapter(name, user_cls)
    _check_contract(name, cls)
    return CellSpec(name, "baseline", "paper", cls,
                    equations=f"{name}: the user's step, forward(x_t, state) -> state")


@functools.lru_cache(maxsize=None)
def user_spec(name: str):
    """The CellSpec of a user cell, imported and checked once per process."""
    return spec_for_class(name, _import_class(name))
