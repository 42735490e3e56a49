"""The cell zoo: one module per family, all listed by :mod:`rnnbench.cells.registry`."""

from rnnbench.cells.family import Coefficients, Family
from rnnbench.cells.registry import (CellSpec, all_specs, declared_families, families, get,
                                     get_family,
                                     register, register_family, select, unregister_family)

__all__ = ["CellSpec", "Coefficients", "Family", "all_specs", "declared_families", "families",
           "get", "get_family", "register", "register_family", "select", "unregister_family"]
