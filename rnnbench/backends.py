"""Implementations of a case ("backends"): build a callable, check it against the eager reference.

Every backend starts from the same :class:`RecurrentStack` (same seed, same weights) and returns a
:class:`Runnable`: ``run(x) -> (output, final states)`` for input (T, B, N), ``forward(x)`` its
output alone (what is timed), and ``parameters()`` in the order of the reference stack's
parameters, so gradients compare one to one. :func:`build` times nothing: it builds, prepares
(compiles) and verifies; a backend is timed only after it matches eager on that device
(rnnbench/agreement.py holds the comparison and its tolerances).

- ``eager``: the zoo's own runner.
- ``compile``: ``torch.compile`` of that runner; the first calls (which compile) are timed apart.
- ``native``: the torch.nn module a family declares (``torch.nn.GRU`` / ``torch.nn.LSTM``: cuDNN on
  a GPU, oneDNN on a CPU) with the weights of the canonical form copied in.
- ``fused`` / ``triton``: rnnbench.fused with its loops in C++ on a CPU where that builds, else
  torch operations (``fused-cpp`` / ``fused-torch`` name one), or the Triton kernels (a CUDA
  device, or CPU tensors under TRITON_INTERPRET=1, for correctness only); a case's ``fold``
  (auto, on, off) chooses how they compute the IRC recurrence, ``fused-recompute`` recomputes the
  gates in the backward.

A backend that cannot run a case raises :class:`~rnnbench.outcome.Unsupported` with the reason;
the measurement turns it into an ``unsupported`` row (rnnbench/outcome.py). :data:`BACKENDS` is
the list; a new backend is one more :class:`Backend` in it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from rnnbench import agreement, fused, fused_cpp
from rnnbench.case import Case
from rnnbench.cells.registry import CellSpec, declared_families, get_family
from rnnbench.devices import dtype_name, parse_dtype, resolve_device, synchronize
from rnnbench.errors import RnnbenchError
from rnnbench.outcome import Unsupported, one_line
from rnnbench.runner import RecurrentStack


class Mismatch(RuntimeError):
    """A backend's result differs from the eager reference beyond the dtype's tolerance."""


@dataclass
class Runnable:
    backend: str
    forward: Callable[[torch.Tensor], torch.Tensor]   # (T, B, N) -> (T, B, output size): timed
    module: nn.Module                                 # owns what training would update
    reference: RecurrentStack
    params: list[nn.Parameter] | None = None          # aligned with reference.parameters()
    prepare: Callable[[torch.Tensor, bool], None] | None = None  # e.g. compile, before timing
    compile_time_s: float | None = None
    verify_error: float | None = None
    notes: list[str] = field(default_factory=list)
    #: (T, B, N) -> (output, final states per layer as the eager runner gives them); None: the
    #: backend gives the output only, and the check compares that
    run: Callable[[torch.Tensor], tuple] | None = None

    def parameters(self) -> list[nn.Parameter]:
        if self.params is not None:
            return list(self.params)
        return [p for p in self.module.parameters() if p.requires_grad]


Builder = Callable[[RecurrentStack, Case], Runnable]


def _covers_all(spec: CellSpec) -> str | None:
    return None


@dataclass(frozen=True)
class Backend:
    name: str
    builder: Builder
    description: str
    #: None when this backend runs the spec's cells, else why not (a backend's declared coverage)
    covers: Callable[[CellSpec], str | None] = _covers_all
    folds: bool = False  # takes a case's fold (rnnbench.case.FOLDS) for IRC cells


#: backends that were a fold spelled into the name, and what they are now
RENAMED = {"fused-folded": ("fused-torch", "on"), "fused-unfolded": ("fused-torch", "off"),
           "triton-folded": ("triton", "on"), "triton-unfolded": ("triton", "off")}


def renamed_note(name: str) -> str | None:
    """What an old fold-in-the-name backend is now, or None."""
    if name not in RENAMED:
        return None
    backend, fold = RENAMED[name]
    return (f"backend {name!r} is now --backend {backend} --fold {fold} "
            f"(in a suite: backend = \"{backend}\", fold = \"{fold}\")")


def folds_for(backend: str, variant: str, folds) -> list[str]:
    """The folds a case of this backend and variant is measured at: the asked ones where the
    backend folds an IRC recurrence, else only "auto" (IHC and the baselines have nothing to fold,
    eager and native compute as they are written)."""
    b = BACKENDS.get(backend)
    return list(folds) if b is not None and b.folds and variant == "irc" else ["auto"]


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        if note := renamed_note(name):
            raise RnnbenchError(note)
        raise RnnbenchError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    return BACKENDS[name]


def covering(spec: CellSpec) -> list[str]:
    """The backends that declare they run this spec (whether this machine can is another matter)."""
    return [name for name, b in BACKENDS.items() if b.covers(spec) is None]


# -- what every backend shares ---------------------------------------------------------------------
def training_loss(out: torch.Tensor) -> torch.Tensor:
    """The loss of a timed training step: mean square of the outputs, in float32 at least."""
    return out.float().square().mean()


def build_stack(case: Case, *, device=None, dtype=None, seed: int = 0) -> RecurrentStack:
    """The eager reference of a case, with weights fixed by ``seed`` (the caller's RNG untouched)."""
    spec = case.spec
    spec.check_sizes(case.input_size, case.hidden_sizes[0])
    device = resolve_device(device or case.device)
    dtype = parse_dtype(dtype or case.dtype)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        stack = RecurrentStack(spec, case.input_size, case.hidden_sizes, **dict(case.options))
    return stack.to(device=device, dtype=dtype)


def make_inputs(case: Case, n_sets: int = 1, *, device=None, dtype=None, seed: int = 1,
                max_bytes: int = 256 * 2**20) -> list[torch.Tensor]:
    """``n_sets`` different inputs of shape (T, B, N), fewer if they would pass ``max_bytes``."""
    device = resolve_device(device or case.device)
    dtype = parse_dtype(dtype or case.dtype)
    per_set = case.seq_len * case.batch * case.input_size * torch.finfo(dtype).bits // 8
    n_sets = max(1, min(n_sets, max_bytes // max(per_set, 1)))
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(case.seq_len, case.batch, case.input_size, generator=gen)
            .to(device=device, dtype=dtype) for _ in range(n_sets)]


def verify(runnable: Runnable, x: torch.Tensor, *, train: bool) -> float:
    """Compare with the eager reference (rnnbench.agreement): output, final states and, when
    ``train``, every gradient; raise Mismatch beyond the dtype's tolerance. Returns the largest
    relative error."""
    ref = runnable.reference
    run = runnable.run or (lambda v: (runnable.forward(v), None))
    errs = agreement.errors(run, ref, x, train=train, params=runnable.parameters(),
                            reference_params=list(ref.parameters()),
                            names=[n for n, _ in ref.named_parameters()])
    what, err = agreement.worst(errs)
    tol = agreement.tolerance(x.dtype)
    if not err <= tol:
        raise Mismatch(f"{runnable.backend} does not match eager: {what} differs by {err:.2g} "
                       f"(relative, tolerance {tol:g} for {dtype_name(x.dtype)})")
    return err


def build(case: Case, *, check: bool = True, seed: int = 0,
          example: torch.Tensor | None = None) -> Runnable:
    """Build the case's backend on its device and dtype, prepare it, and (unless ``check`` is
    False) verify it against eager. Raises Unsupported, SizeError, Mismatch or torch errors."""
    backend = get_backend(case.backend)
    if ":" in case.cell and case.backend != "eager":
        # the other backends are derived from a family's declaration, which a user cell lacks
        raise Unsupported(f"{case.cell} is a user cell: it runs on the eager backend only")
    stack = build_stack(case, seed=seed)
    runnable = backend.builder(stack, case)
    train = case.mode != "fwd"
    if example is None and (runnable.prepare is not None or (check and case.backend != "eager")):
        example = make_inputs(case, 1, seed=seed + 12345)[0]
    if runnable.prepare is not None:
        t0 = time.perf_counter()
        runnable.prepare(example, train)
        synchronize(example.device)
        runnable.compile_time_s = time.perf_counter() - t0
    if check and case.backend != "eager":
        runnable.verify_error = verify(runnable, example, train=train)
    return runnable


# -- the backends ----------------------------------------------------------------------------------
def _eager(stack: RecurrentStack, case: Case) -> Runnable:
    return Runnable("eager", lambda x: stack(x)[0], stack, stack, run=stack)


def _compile(stack: RecurrentStack, case: Case) -> Runnable:
    compiled = torch.compile(stack, dynamic=False)

    def prepare(x: torch.Tensor, train: bool) -> None:
        # compilation happens on the first call, in the grad mode the timing will use
        try:
            if train:
                out = compiled(x)[0]
                torch.autograd.grad(training_loss(out), [p for p in stack.parameters()])
            else:
                with torch.inference_mode():
                    compiled(x)
        except torch.OutOfMemoryError:
            raise
        except Exception as e:
            raise Unsupported(f"torch.compile failed here: {one_line(e)}") from None

    return Runnable("compile", lambda x: compiled(x)[0], stack, stack, prepare=prepare, run=compiled)


def _native_module(spec: CellSpec) -> type | None:
    fam = get_family(spec.family)
    return fam.native if fam is not None else None


def _covers_native(spec: CellSpec) -> str | None:
    mod = _native_module(spec)
    if mod is None or spec.variant != "baseline":
        names = "/".join(f.native.__name__ for f in declared_families() if f.native is not None)
        return f"native is torch.nn.{names}; {spec.display} has no torch implementation"
    if spec.form != "canonical":
        return (f"native computes torch's {spec.display} equations, which are the canonical form: "
                "use --form canonical")
    return None


def _native(stack: RecurrentStack, case: Case) -> Runnable:
    spec = case.spec
    why = _covers_native(spec)
    if why:
        raise Unsupported(why)
    native = _native_module(spec)
    sizes = stack.hidden_sizes
    if len(set(sizes)) != 1:
        raise Unsupported(f"torch.nn.{native.__name__} takes one hidden size for every layer, "
                          f"got {sizes}")
    p0 = next(stack.parameters())
    mod = native(stack.input_size, sizes[0], num_layers=len(sizes)).to(device=p0.device,
                                                                       dtype=p0.dtype)
    aligned = []
    with torch.no_grad():
        for k, cell in enumerate(stack.layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                dst = getattr(mod, f"{name}_l{k}")
                dst.copy_(getattr(cell, name))
                aligned.append(dst)
    if len(aligned) != len(list(stack.parameters())):
        raise Unsupported(f"{spec.label} has parameters torch.nn.{type(mod).__name__} lacks")

    def run(x):
        out, hidden = mod(x)
        # torch gives (layers, B, M) per state; the runner gives each layer's states in order
        states = hidden if isinstance(hidden, tuple) else (hidden,)
        return out, [tuple(s[k] for s in states) for k in range(len(sizes))]

    return Runnable("native", lambda x: mod(x)[0], mod, stack, params=aligned, run=run)


def _fused_covers(impl: str) -> Callable[[CellSpec], str | None]:
    def covers(spec: CellSpec) -> str | None:
        ok, why = fused.declares(spec, impl=impl)
        return None if ok else why
    return covers


def _fused_builder(impl: str, *, gates: str = "auto") -> Builder:
    """gates: see rnnbench.fused.resolve_gates; the case's fold goes to rnnbench.fused as it is.
    impl "auto": rnnbench.fused.pick_impl (the C++ loop on a CPU where it builds, else torch)."""
    def build_fused(stack: RecurrentStack, case: Case) -> Runnable:
        if case.fold == "on" and case.variant == "ihc":
            raise Unsupported(f"{case.spec.label}: IHC cannot be folded (its gate depends on h "
                              "through Γ)")
        device, dtype = resolve_device(case.device), parse_dtype(case.dtype)
        run_impl = fused.pick_impl(case.spec, device, dtype) if impl == "auto" else impl
        if run_impl == "cpp" and not fused_cpp.runs(device, dtype):
            raise Unsupported(f"the C++ loop runs float32 and float64 on a CPU, not {case.dtype} "
                              f"on {case.device}")
        ok, why = fused.supports(case.spec, impl=run_impl)
        if not ok:
            raise Unsupported(why or f"rnnbench.fused does not run {case.spec.label}")
        runnable = fused_runnable(stack, case.backend, impl=run_impl, fold=case.fold, gates=gates)
        if run_impl == "triton" and resolve_device(case.device).type != "cuda":
            runnable.notes.append("Triton interpreter on CPU tensors: correct, but its times say "
                                  "nothing about the kernels")
        return runnable

    return build_fused


def fused_runnable(stack: RecurrentStack, name: str, *, impl: str, fold="auto",
                   gates: str = "auto") -> Runnable:
    """A Runnable of rnnbench.fused over ``stack`` (the `fused`/`triton` backends and `verify`)."""

    def run(x):
        try:
            return fused.fused_forward(stack, x, impl=impl, fold=fold, gates=gates)
        except RnnbenchError as e:
            # its refusals (no GPU for triton, a fold it cannot do) concern this case only
            raise Unsupported(str(e)) from None

    return Runnable(name, lambda x: run(x)[0], stack, stack, run=run)


BACKENDS: dict[str, Backend] = {b.name: b for b in [
    Backend("eager", _eager, "the zoo's own runner (rnnbench.runner.RecurrentStack)"),
    Backend("compile", _compile, "torch.compile of the eager runner"),
    Backend("native", _native, "the torch.nn module a family declares (torch.nn.GRU / LSTM: cuDNN "
            "on a GPU, oneDNN on a CPU); canonical forms only", _covers_native),
    Backend("fused", _fused_builder("auto"),
            "IRC/IHC: hoisted products, folding by the cost model (or --fold), hand-written "
            "backward (rnnbench.fused); on a CPU in float32/64 its loops run in C++ (fused-cpp) "
            "when that builds, else as fused-torch", _fused_covers("torch"), folds=True),
    Backend("triton", _fused_builder("triton"),
            "rnnbench.fused with Triton kernels (CUDA, or TRITON_INTERPRET=1 on CPU for "
            "correctness; folding by the cost model or --fold)", _fused_covers("triton"), folds=True),
    Backend("fused-torch", _fused_builder("torch"),
            "fused with its loops in torch ops (any device; gates kept for the backward on a CPU, "
            "recomputed elsewhere)", _fused_covers("torch"), folds=True),
    Backend("fused-cpp", _fused_builder("cpp"),
            "fused with its forward and reverse loops in C++ (rnnbench.fused_cpp; CPU, float32/64; "
            "built on first use)", _fused_covers("cpp"), folds=True),
    Backend("fused-recompute", _fused_builder("torch", gates="recompute"),
            "fused, the backward recomputing the gates from the h sequence (the Triton kernels' "
            "algorithm) on every device", _fused_covers("torch"), folds=True),
]}
