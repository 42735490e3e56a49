"""The cell zoo's single list. Every command, test and config reads cells from here.

A family module declares its regulated update once (:class:`~rnnbench.cells.family.Family`,
:func:`register_family`) and registers its cell classes with :func:`register`; :func:`_discover`
imports every module in this package, so adding a cell family is adding one file.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass, field

from rnnbench.cells.family import Family
from rnnbench.errors import SizeError, UnknownCellError

VARIANTS = ("baseline", "irc", "ihc")
FORMS = ("paper", "canonical")
#: the cell a command trains or matches against when none is named: the paper's first (eqs. 1-3)
DEFAULT_CELL = "gru"


@dataclass(frozen=True)
class CellSpec:
    family: str
    variant: str
    form: str
    cls: type
    equations: str
    requires_square: bool = False
    options: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.family if self.variant == "baseline" else f"{self.family}/{self.variant}"

    @property
    def display(self) -> str:
        """As the paper writes it: GRU, IRC-GRU, IHC-LSTM."""
        title = getattr(self.cls, "title", self.family.upper())
        return title if self.variant == "baseline" else f"{self.variant.upper()}-{title}"

    @property
    def label(self) -> str:
        suffix = "" if self.form == "paper" else f" ({self.form})"
        return f"{self.family}/{self.variant}{suffix}"

    def check_sizes(self, input_size: int, hidden_size: int) -> None:
        for what, n in (("input size", input_size), ("hidden size", hidden_size)):
            if not isinstance(n, int) or n <= 0:
                raise SizeError(f"{self.label}: {what} must be a positive integer, got {n!r}")
        if self.requires_square and input_size != hidden_size:
            raise SizeError(
                f"{self.label} needs input size N equal to hidden size M "
                f"(its feedback is elementwise), got N={input_size}, M={hidden_size}"
            )

    def build(self, input_size: int, hidden_size: int, **options):
        self.check_sizes(input_size, hidden_size)
        return self.cls(input_size, hidden_size, **{**self.options, **options})


_REGISTRY: dict[tuple[str, str, str], CellSpec] = {}
_FAMILIES: dict[str, Family] = {}
# bumped by every (un)registration: declared_families() is read on every fused forward (which C++
# loop to load), and sorting the zoo each time cost more than a small layer's whole step
_generation = 0
_declared: tuple[int, list[Family]] | None = None


def _changed() -> None:
    global _generation
    _generation += 1


def register_family(family: Family, module: str | None = None) -> Family:
    """Add a family's declaration; returns it with ``module`` (where it was declared) filled in."""
    if family.name in _FAMILIES:
        raise ValueError(f"family {family.name!r} declared twice")
    if module is None:
        module = getattr(family.update, "__module__", "") or ""
    family = dataclasses.replace(family, module=module)
    _FAMILIES[family.name] = family
    _changed()
    return family


def get_family(name: str) -> Family | None:
    """The declaration of a family's regulated update, or None (a family of baselines only)."""
    _discover()
    return _FAMILIES.get(name)


def generation() -> int:
    """A number that changes whenever a cell or a family is registered or removed."""
    return _generation


def declared_families() -> list[Family]:
    """Every declared family, in the zoo's order."""
    global _declared
    _discover()
    if _declared is None or _declared[0] != _generation:
        rank = {f: i for i, f in enumerate(families())}
        _declared = (_generation, sorted(_FAMILIES.values(),
                                         key=lambda f: (rank.get(f.name, len(rank)), f.name)))
    return list(_declared[1])


def unregister_family(name: str) -> None:
    """Remove a family's declaration and every cell registered under it (for tests' toy families)."""
    _FAMILIES.pop(name, None)
    for key in [k for k in _REGISTRY if k[0] == name]:
        del _REGISTRY[key]
    _changed()


def register(family: str, variant: str, form: str = "paper", *, equations: str,
             requires_square: bool = False, **options):
    """Class decorator: add a cell class to the zoo under (family, variant, form)."""
    if variant not in VARIANTS or form not in FORMS:
        raise ValueError(f"bad registration {family}/{variant}/{form}")

    def deco(cls):
        key = (family, variant, form)
        if key in _REGISTRY:
            raise ValueError(f"cell {key} registered twice")
        spec = CellSpec(family, variant, form, cls, equations, requires_square, dict(options))
        _REGISTRY[key] = spec
        _changed()
        cls.specs = getattr(cls, "specs", ()) + (spec,)
        return cls

    return deco


_discovered = False


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    import rnnbench.cells as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name not in ("registry", "base", "connections", "regulated", "family"):
            importlib.import_module(f"{pkg.__name__}.{mod.name}")


def families() -> list[str]:
    _discover()
    order = ["gru", "lstm", "sru", "tlstm", "fastgrnn", "pru"]
    found = {f for f, _, _ in _REGISTRY}
    return [f for f in order if f in found] + sorted(found - set(order))


def all_specs() -> list[CellSpec]:
    _discover()
    fam_rank = {f: i for i, f in enumerate(families())}
    return sorted(_REGISTRY.values(), key=lambda s: (fam_rank[s.family], VARIANTS.index(s.variant),
                                                      FORMS.index(s.form)))


def get(family: str, variant: str = "baseline", form: str = "paper") -> CellSpec:
    if ":" in family:  # package.module:Class, a user's own cell (rnnbench/usercell.py)
        from rnnbench.usercell import user_spec
        if variant != "baseline" or form != "paper":
            raise UnknownCellError(f"{family}: a user cell has only the baseline variant and the "
                                   f"paper form, not {variant}/{form}")
        return user_spec(family)
    _discover()
    family = family.lower().replace("-", "").replace("_", "")
    if family not in families():
        raise UnknownCellError(f"unknown cell {family!r}; choose from {', '.join(families())}")
    if variant not in VARIANTS:
        raise UnknownCellError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if form not in FORMS:
        raise UnknownCellError(f"unknown form {form!r}; choose from {', '.join(FORMS)}")
    spec = _REGISTRY.get((family, variant, form))
    if spec is None:
        have = sorted(f for fa, v, f in _REGISTRY if fa == family and v == variant)
        raise UnknownCellError(
            f"{family}/{variant} has no {form!r} form (it has: {', '.join(have) or 'none'}); "
            "the canonical form exists for the gru, lstm, sru and fastgrnn baselines")
    return spec


def select(cells: list[str] | str, variants: list[str] | str, form: str = "paper",
           notes: list[str] | None = None) -> list[CellSpec]:
    """Expand 'all' and lists into specs, keeping the zoo's order.

    Only the baselines have a canonical form; IRC/IHC cells exist in the paper form alone, so with
    ``form="canonical"`` they are selected in the paper form, and (when ``notes`` is given) a line
    saying so is appended to it for the caller to show.
    """
    fams = families() if cells in ("all", ["all"]) else [cells] if isinstance(cells, str) else cells
    vars_ = list(VARIANTS) if variants in ("all", ["all"]) else (
        [variants] if isinstance(variants, str) else variants)
    # Only the baselines have a canonical form; IRC/IHC cells exist in the paper form alone; a
    # user cell has its one baseline, whatever the variants asked of the zoo's cells
    keys = dict.fromkeys((f, "baseline", "paper") if ":" in f else
                         (f, v, form if v == "baseline" else "paper") for f in fams for v in vars_)
    specs = [get(*k) for k in keys]
    swapped = sorted({s.display for s in specs if s.form != form and ":" not in s.family})
    if swapped and notes is not None:
        notes.append(f"{', '.join(swapped)}: no {form} form; run in the paper form")
    return specs
