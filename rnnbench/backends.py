"""Implementations of a case ("backends"): build a callable, check it against the eager reference.

Every backend starts from the same :class:`RecurrentStack` (same seed, same weights) and returns a
:class:`Runnable`: ``forward(x) -> output`` for input (T, B, N) and ``parameters()`` in the order
of the reference stack's parameters, so gradients compare one to one. :func:`build` times nothing:
it builds, prepares (compiles) and verifies; a backend is timed only after it matches eager on that
device.

- ``eager``: the zoo's own runner.
- ``compile``: ``torch.compile`` of that runner; the first calls (which compile) are timed apart.
- ``native``: ``torch.nn.GRU`` / ``torch.nn.LSTM`` (cuDNN on a GPU, oneDNN on a CPU) with the
  weights of the canonical GRU/LSTM copied in: the same function, torch's implementation.
- ``fused`` / ``triton``: wired lazily to ``rnnbench.fused`` when that module exists.

A backend that cannot run a case raises :class:`Unsupported` with the reason; the measurement
turns it into an ``unsupported`` row. New backends come in through :func:`register_backend`.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from rnnbench.case import Case
from rnnbench.devices import dtype_name, parse_dtype, resolve_device, synchronize
from rnnbench.errors import RnnbenchError, SizeError
from rnnbench.runner import RecurrentStack


class Unsupported(Exception):
    """This backend cannot run this case; ``reason`` says why, in one line."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Mismatch(RuntimeError):
    """A backend's result differs from the eager reference beyond the dtype's tolerance."""


@dataclass
class Runnable:
    backend: str
    forward: Callable[[torch.Tensor], torch.Tensor]   # (T, B, N) -> (T, B, output size)
    module: nn.Module                                 # owns what training would update
    reference: RecurrentStack
    params: list[nn.Parameter] | None = None          # aligned with reference.parameters()
    prepare: Callable[[torch.Tensor, bool], None] | None = None  # e.g. compile, before timing
    compile_time_s: float | None = None
    verify_error: float | None = None
    notes: list[str] = field(default_factory=list)

    def parameters(self) -> list[nn.Parameter]:
        if self.params is not None:
            return list(self.params)
        return [p for p in self.module.parameters() if p.requires_grad]


Builder = Callable[[RecurrentStack, Case], Runnable]


@dataclass(frozen=True)
class Backend:
    name: str
    builder: Builder
    description: str
    placeholder: bool = False   # a stand-in that a real registration may replace


BACKENDS: dict[str, Backend] = {}


def register_backend(name: str, builder: Builder, *, description: str, replace: bool = False,
                     placeholder: bool = False) -> Backend:
    """Add a backend. Replacing an existing one needs ``replace=True`` unless it is a placeholder
    (how rnnbench.fused takes over the lazily wired ``fused`` and ``triton``)."""
    old = BACKENDS.get(name)
    if old is not None and not (replace or old.placeholder):
        raise ValueError(f"backend {name!r} is registered already")
    backend = Backend(name, builder, description, placeholder)
    BACKENDS[name] = backend
    return backend


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise RnnbenchError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    return BACKENDS[name]


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


def tolerance(dtype: torch.dtype) -> float:
    """Largest error relative to the reference's largest magnitude that still counts as equal.

    The recurrence feeds each step's rounding into the next, so low precisions get room for
    T steps of it (a bfloat16 value has 8 bits of mantissa: one rounding is 0.4%)."""
    return {torch.float64: 1e-9, torch.float32: 1e-3, torch.float16: 2e-2,
            torch.bfloat16: 8e-2}.get(dtype, 1e-3)


def _rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().double(), want.detach().double()
    if got.shape != want.shape:
        return float("inf")
    scale = want.abs().max().item()
    diff = (got - want).abs().max().item()
    if not torch.isfinite(got).all():
        return float("inf")
    return diff / scale if scale > 0 else diff


def verify(runnable: Runnable, x: torch.Tensor, *, train: bool) -> float:
    """Compare outputs (and parameter gradients when ``train``) with the eager reference; raise
    Mismatch beyond tolerance. Returns the largest relative error seen."""
    ref = runnable.reference
    tol = tolerance(x.dtype)
    checks = []
    if train:
        with torch.enable_grad():
            got = runnable.forward(x)
            g_got = torch.autograd.grad(training_loss(got), runnable.parameters(), allow_unused=True)
            want, _ = ref(x)
            g_want = torch.autograd.grad(training_loss(want), list(ref.parameters()),
                                         allow_unused=True)
        checks.append(("output", got, want))
        names = [n for n, _ in ref.named_parameters()]
        if len(g_got) != len(g_want):
            raise Mismatch(f"{runnable.backend} has {len(g_got)} parameters, eager has {len(g_want)}")
        for name, a, b in zip(names, g_got, g_want):
            if a is None or b is None:
                if (a is None) != (b is None):
                    raise Mismatch(f"{runnable.backend}: gradient of {name} missing on one side")
                continue
            checks.append((f"gradient of {name}", a, b))
    else:
        with torch.inference_mode():
            checks.append(("output", runnable.forward(x), ref(x)[0]))
    worst = 0.0
    for what, a, b in checks:
        err = _rel_err(a, b)
        worst = max(worst, err)
        if not err <= tol:
            raise Mismatch(f"{runnable.backend} does not match eager: {what} differs by {err:.2g} "
                           f"of its largest value (tolerance {tol:g} for {dtype_name(x.dtype)})")
    return worst


def build(case: Case, *, check: bool = True, seed: int = 0,
          example: torch.Tensor | None = None) -> Runnable:
    """Build the case's backend on its device and dtype, prepare it, and (unless ``check`` is
    False) verify it against eager. Raises Unsupported, SizeError, Mismatch or torch errors."""
    backend = get_backend(case.backend)
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
    return Runnable("eager", lambda x: stack(x)[0], stack, stack)


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

    return Runnable("compile", lambda x: compiled(x)[0], stack, stack, prepare=prepare)


NATIVE = {"gru": nn.GRU, "lstm": nn.LSTM}


def _native(stack: RecurrentStack, case: Case) -> Runnable:
    spec = case.spec
    if spec.family not in NATIVE or spec.variant != "baseline":
        raise Unsupported(f"native is torch.nn.GRU/LSTM; {spec.display} has no torch implementation")
    if spec.form != "canonical":
        raise Unsupported(f"native computes torch's {spec.display} equations, which are the "
                          "canonical form: use --form canonical")
    sizes = stack.hidden_sizes
    if len(set(sizes)) != 1:
        raise Unsupported(f"torch.nn.{NATIVE[spec.family].__name__} takes one hidden size for "
                          f"every layer, got {sizes}")
    p0 = next(stack.parameters())
    mod = NATIVE[spec.family](stack.input_size, sizes[0], num_layers=len(sizes)).to(
        device=p0.device, dtype=p0.dtype)
    aligned = []
    with torch.no_grad():
        for k, cell in enumerate(stack.layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                dst = getattr(mod, f"{name}_l{k}")
                dst.copy_(getattr(cell, name))
                aligned.append(dst)
    if len(aligned) != len(list(stack.parameters())):
        raise Unsupported(f"{spec.label} has parameters torch.nn.{type(mod).__name__} lacks")
    return Runnable("native", lambda x: mod(x)[0], mod, stack, params=aligned)


def _load_fused():
    try:
        fused = importlib.import_module("rnnbench.fused")
    except ModuleNotFoundError as e:
        if e.name != "rnnbench.fused":
            raise
        raise Unsupported("not built yet (rnnbench.fused does not exist)") from None
    if not (callable(getattr(fused, "fused_forward", None)) and callable(getattr(fused, "supports", None))):
        raise Unsupported("not built yet (rnnbench.fused has no fused_forward/supports)")
    return fused


def _cpu_impl(case: Case, impl: str) -> str:
    """"auto": the C++ loop (rnnbench.fused_cpp) where it runs, else the torch loop, saying why once."""
    from rnnbench import fused_cpp

    here = fused_cpp.runs(resolve_device(case.device), parse_dtype(case.dtype))
    if impl == "cpp":
        if not here:
            raise Unsupported(f"the C++ loop runs float32 and float64 on a CPU, not {case.dtype} "
                              f"on {case.device}")
        ok, why = fused_cpp.available()
        if not ok:
            raise Unsupported(f"the C++ loop is unavailable: {why}")
        return "cpp"
    if here and fused_cpp.available()[0]:
        return "cpp"
    if here:
        fused_cpp.note_fallback()
    return "torch"


def _fused_builder(impl: str, *, fold="auto", gates: str = "auto") -> Builder:
    """fold: the cost model ("auto") or forced (True/False); gates: see rnnbench.fused.resolve_gates.
    impl "auto": "cpp" on a CPU when the C++ loop builds, else "torch"."""
    def build_fused(stack: RecurrentStack, case: Case) -> Runnable:
        fused = _load_fused()
        run_impl = _cpu_impl(case, impl) if impl in ("auto", "cpp") else impl
        if run_impl == "triton" and resolve_device(case.device).type != "cuda":
            # on a CPU the kernels run only in Triton's interpreter: a correctness tool whose
            # times say nothing about the kernels
            raise Unsupported("the Triton kernels run on a CPU only interpreted (TRITON_INTERPRET=1), "
                              "which is for correctness (rnnbench verify), not timing")
        ok, why = fused.supports(case.spec, impl=run_impl)
        if not ok:
            raise Unsupported(why or f"rnnbench.fused does not run {case.spec.label}")

        def forward(x):
            try:
                out = fused.fused_forward(stack, x, impl=run_impl, fold=fold, gates=gates)
            except RnnbenchError as e:
                # its refusals (no GPU for triton, a fold it cannot do) concern this case only
                raise Unsupported(str(e)) from None
            return out[0] if isinstance(out, tuple) else out

        return Runnable(case.backend, forward, stack, stack)

    return build_fused


register_backend("eager", _eager, description="the zoo's own runner (rnnbench.runner.RecurrentStack)")
register_backend("compile", _compile, description="torch.compile of the eager runner")
register_backend("native", _native,
                 description="torch.nn.GRU / torch.nn.LSTM (cuDNN on a GPU, oneDNN on a CPU); "
                             "canonical GRU and LSTM only")
register_backend("fused", _fused_builder("auto"), placeholder=True,
                 description="IRC/IHC: hoisted products, folding by the cost model, hand-written "
                             "backward (rnnbench.fused); on a CPU in float32/64 its loops run in C++ "
                             "(fused-cpp) when that builds, else as fused-torch")
register_backend("triton", _fused_builder("triton"), placeholder=True,
                 description="rnnbench.fused with Triton kernels (CUDA; folding by the cost model)")
register_backend("fused-torch", _fused_builder("torch"),
                 description="fused with its loops in torch ops (any device; gates kept for the "
                             "backward on a CPU, recomputed elsewhere)")
register_backend("fused-cpp", _fused_builder("cpp"),
                 description="fused with its forward and reverse loops in C++ (rnnbench.fused_cpp; "
                             "CPU, float32/64; built on first use)")
register_backend("fused-folded", _fused_builder("torch", fold=True),
                 description="fused with the IRC recurrence always folded (R = W_g·diag(α)·U_V)")
register_backend("fused-unfolded", _fused_builder("torch", fold=False),
                 description="fused with the IRC recurrence never folded (two products per step)")
register_backend("fused-recompute", _fused_builder("torch", gates="recompute"),
                 description="fused, the backward recomputing the gates from the h sequence "
                             "(the Triton kernels' algorithm) on every device")
register_backend("triton-folded", _fused_builder("triton", fold=True),
                 description="triton with the IRC recurrence always folded")
register_backend("triton-unfolded", _fused_builder("triton", fold=False),
                 description="triton with the IRC recurrence never folded")


# -- turning failures into statuses ----------------------------------------------------------------
def one_line(e: BaseException, limit: int = 300) -> str:
    text = str(e).strip().splitlines()
    msg = f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
    return msg if len(msg) <= limit else msg[:limit - 1] + "…"


def classify(e: BaseException) -> tuple[str, str]:
    """(status, reason) for an exception met while measuring a case."""
    if isinstance(e, Unsupported):
        return "unsupported", e.reason
    if isinstance(e, SizeError):
        return "unsupported", str(e)
    if isinstance(e, torch.OutOfMemoryError):
        return "oom", one_line(e)
    text = str(e)
    if isinstance(e, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text):
        return "oom", one_line(e)
    if isinstance(e, NotImplementedError) or (isinstance(e, RuntimeError) and "not implemented for" in text):
        return "unsupported", one_line(e)
    return "failed", one_line(e)
