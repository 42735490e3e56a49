"""The cell zoo: one module per family, all listed by :mod:`rnnbench.cells.registry`."""

from rnnbench.cells.registry import CellSpec, all_specs, families, get, register, select

__all__ = ["CellSpec", "all_specs", "families", "get", "register", "select"]
