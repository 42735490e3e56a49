"""Training a cell on a synthetic task: the model, matched sizes, the loop, and its result row.

The task inputs go straight into the recurrent stack (N = the task's feature count) and a linear
readout maps the last layer's outputs to the answer. Cells whose feedback is elementwise need N = M
(``spec.requires_square``); only those get a learned N→M input projection, reported apart from the
recurrent parameters so that the comparison between cells stays about the cells.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from rnnbench.bench.timing import quantile
from rnnbench.bench.params import applicable_options, changed_options, count_unique
from rnnbench.case import Case
from rnnbench.cells.registry import DEFAULT_CELL, CellSpec
from rnnbench.errors import ConfigError, RnnbenchError, SizeError
from rnnbench.results import Row
from rnnbench.runner import RecurrentStack
from rnnbench.tasks.data import TaskSpec, generator



def backend_names() -> list[str]:
    """The implementations the timing harness knows (rnnbench.backends), eager first."""
    try:
        from rnnbench.backends import BACKENDS as known
    except ImportError:
        return ["eager"]
    return ["eager"] + [b for b in known if b != "eager"]


def check_backend(backend: str) -> None:
    names = backend_names()
    if backend not in names:
        raise RnnbenchError(f"unknown backend {backend!r}; choose from {', '.join(names)}")


class TaskModel(nn.Module):
    """[input projection N→M, only for cells that need N = M] → recurrent stack → linear readout.

    With a backend other than eager, the recurrent part runs through rnnbench.backends (the
    implementations the timing harness measures), and the module that backend trains (torch.nn.GRU
    for native) takes the stack's place among the parameters.
    """

    def __init__(self, spec: CellSpec, task: TaskSpec, hidden_sizes: Sequence[int],
                 options: dict | None = None, backend: str = "eager",
                 cfg: TrainConfig | None = None):
        super().__init__()
        self.task = task
        n = task.input_size
        hidden_sizes = list(hidden_sizes)
        self.projection = None
        if spec.requires_square and n != hidden_sizes[0]:
            self.projection = nn.Linear(n, hidden_sizes[0])
            n = hidden_sizes[0]
        opts = applicable_options(spec, options or {})
        self.rnn = RecurrentStack(spec, n, hidden_sizes, **opts)
        self.readout = nn.Linear(self.rnn.output_size, task.output_size)
        self.runnable = None
        if backend != "eager":
            from rnnbench.backends import Unsupported, get_backend, verify
            case = make_case(spec, task, hidden_sizes, cfg or TrainConfig(), opts, backend)
            case = dataclasses.replace(case, input_size=n)
            try:
                self.runnable = get_backend(backend).builder(self.rnn, case)
            except Unsupported as e:
                raise UnsupportedRun(e.reason) from None
            # as in the timing commands: a backend trains only after it matches eager (Mismatch)
            p0 = next(self.rnn.parameters())
            probe = torch.randn(min(task.seq_len, 8), 2, n, generator=torch.Generator().manual_seed(0))
            verify(self.runnable, probe.to(p0), train=True)
            if self.runnable.module is not self.rnn:
                # the backend trains its own copy of the weights; the stack only seeded them
                del self.rnn
                self.core = self.runnable.module

    @property
    def recurrent(self) -> nn.Module:
        return self.core if hasattr(self, "core") else self.rnn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.projection is not None:
            x = self.projection(x)
        y = self.runnable.forward(x) if self.runnable is not None else self.rnn(x)[0]
        if self.task.name == "adding":
            return self.readout(y[-1]).squeeze(-1)            # (B,)
        return self.readout(y[-self.task.targets:])           # (K, B, alphabet)

    def param_counts(self) -> dict:
        rec = count_unique(self.recurrent)
        proj = count_unique(self.projection) if self.projection is not None else 0
        return {"params": count_unique(self), "params_recurrent": rec, "params_projection": proj,
                "params_readout": count_unique(self.readout)}


class UnsupportedRun(RnnbenchError):
    """The chosen backend cannot run this cell; the run becomes an 'unsupported' row."""


def loss_and_score(task: TaskSpec, pred: torch.Tensor, target: torch.Tensor
                   ) -> tuple[torch.Tensor, float]:
    """Training loss, and the reported metric (MSE, or per-symbol accuracy over the recall steps)."""
    if task.name == "adding":
        loss = torch.nn.functional.mse_loss(pred, target)
        return loss, float(loss.detach())
    loss = torch.nn.functional.cross_entropy(pred.reshape(-1, task.output_size), target.reshape(-1))
    return loss, float((pred.detach().argmax(-1) == target).float().mean())


# -- matched sizes -------------------------------------------------------------------------------
def recurrent_params(spec: CellSpec, input_size: int, hidden_size: int, layers: int = 1,
                     options: dict | None = None) -> int:
    """Parameters of the recurrent stack alone, counted from the built module. A cell that needs
    N = M is counted at N = M, as it runs behind its input projection."""
    n = hidden_size if spec.requires_square else input_size
    # a real build, so storage shared between parameters is counted once, as `params` counts it
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        stack = RecurrentStack(spec, n, [hidden_size] * layers,
                               **applicable_options(spec, options or {}))
    return count_unique(stack)


def match_hidden_size(spec: CellSpec, input_size: int, target_params: int, layers: int = 1,
                      options: dict | None = None, max_hidden: int = 1 << 16) -> int:
    """The hidden size M whose recurrent parameter count is closest to ``target_params`` (ties go
    to the smaller M). Counts come from built modules, so a cell's real layout decides."""
    if target_params <= 0:
        raise SizeError(f"target parameter count must be positive, got {target_params}")

    def count(m: int) -> int:
        return recurrent_params(spec, input_size, m, layers, options)

    # Every cell's count grows with M, so bracket the target and bisect.
    hi = 1
    while count(hi) < target_params:
        if hi >= max_hidden:
            raise SizeError(f"{spec.label} cannot reach {target_params:,} recurrent parameters "
                            f"below M = {max_hidden:,}")
        hi = min(2 * hi, max_hidden)
    lo = max(1, hi // 2)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count(mid) < target_params:
            lo = mid
        else:
            hi = mid
    return min((lo, hi), key=lambda m: (abs(count(m) - target_params), m))


# -- training --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1200
    batch: int = 32
    lr: float = 5e-3
    clip: float = 1.0
    eval_every: int = 50
    val_size: int = 1000
    seed: int = 0
    device: str = "cpu"
    stop_when_solved: bool = False

    def __post_init__(self):
        for name in ("steps", "batch", "eval_every", "val_size"):
            if getattr(self, name) <= 0:
                flag = "--" + name.replace("_", "-")
                raise RnnbenchError(f"{flag} must be positive, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise RnnbenchError(f"--lr must be a positive number, got {self.lr}")
        if not self.clip > 0:
            raise RnnbenchError(f"--clip must be positive, got {self.clip}")


@dataclass
class TrainResult:
    curve_step: list[int]
    curve_value: list[float]
    step_times: list[float]
    steps_done: int
    wall_s: float
    counts: dict
    solved_step: int | None = None
    diverged: bool = False
    train_loss_last: float = float("nan")
    extra: dict = dataclasses.field(default_factory=dict)  # e.g. prepare_time_s (compile)

    @property
    def final(self) -> float:
        return self.curve_value[-1]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


@torch.no_grad()
def evaluate(model: TaskModel, val: tuple[torch.Tensor, torch.Tensor], chunk: int = 500) -> float:
    """The metric over the whole validation set, in chunks so memory stays flat."""
    x, y = val
    total, n = 0.0, x.shape[1]
    model.eval()
    for s in range(0, n, chunk):
        xs, ys = x[:, s:s + chunk], (y[s:s + chunk] if y.dim() == 1 else y[:, s:s + chunk])
        _, score = loss_and_score(model.task, model(xs), ys)
        total += score * xs.shape[1]
    model.train()
    return total / n


def train(spec: CellSpec, task: TaskSpec, hidden_sizes: Sequence[int], cfg: TrainConfig,
          options: dict | None = None, on_eval: Callable[[int, float], None] | None = None,
          backend: str = "eager") -> TrainResult:
    """Adam with gradient-norm clipping on fresh batches; the validation set is one fixed draw.

    The weights, the training stream and the validation set each have their own seed derived
    from ``cfg.seed``, so the same seed gives the same curve, whatever else ran before.
    """
    device = torch.device(cfg.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator(cfg.seed, "weights").initial_seed())
        model = TaskModel(spec, task, hidden_sizes, options, backend, cfg)
    model.to(device)
    counts = model.param_counts()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    train_gen, val_gen = generator(cfg.seed, "train"), generator(cfg.seed, "validation")
    val_x, val_y = task.batch(cfg.val_size, val_gen)
    val = (val_x.to(device), val_y.to(device))
    extra = {}
    if model.runnable is not None and model.runnable.prepare is not None:
        # compile (or the like) before the clock starts, on a batch outside the training stream
        x, _ = task.batch(cfg.batch, generator(cfg.seed, "prepare"))
        x = x.to(device)
        if model.projection is not None:
            x = model.projection(x).detach()
        from rnnbench.backends import Unsupported
        t0 = time.perf_counter()
        try:
            model.runnable.prepare(x, True)
        except Unsupported as e:
            raise UnsupportedRun(e.reason) from None
        _sync(cfg.device)
        extra["prepare_time_s"] = time.perf_counter() - t0

    steps, values, times = [0], [evaluate(model, val)], []
    if on_eval:
        on_eval(0, values[0])
    solved = 0 if task.solved(values[0]) else None
    diverged, last_loss = False, float("nan")
    start = time.perf_counter()
    step = 0
    for step in range(1, cfg.steps + 1):
        x, y = task.batch(cfg.batch, train_gen)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        _sync(cfg.device)
        t0 = time.perf_counter()
        loss, _ = loss_and_score(task, model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        _sync(cfg.device)
        times.append(time.perf_counter() - t0)
        last_loss = float(loss.detach())
        if not math.isfinite(last_loss):
            diverged = True
        if step % cfg.eval_every == 0 or step == cfg.steps or diverged:
            v = evaluate(model, val)
            steps.append(step)
            values.append(v)
            if on_eval:
                on_eval(step, v)
            if solved is None and task.solved(v):
                solved = step
                if cfg.stop_when_solved:
                    break
            if diverged:
                break
    return TrainResult(steps, values, times, step, time.perf_counter() - start, counts,
                       solved, diverged, last_loss, extra)


# -- one run as a result row ---------------------------------------------------------------------
def make_case(spec: CellSpec, task: TaskSpec, hidden_sizes: Sequence[int], cfg: TrainConfig,
              options: dict, backend: str) -> Case:
    """The case a training run fills in: the model's own T and N, the training batch."""
    return Case(bench="task", cell=spec.family, variant=spec.variant, form=spec.form,
                backend=backend, mode="train", dtype="float32", device=cfg.device,
                batch=cfg.batch, seq_len=task.total_len, input_size=task.input_size,
                hidden_size=tuple(hidden_sizes), layers=len(hidden_sizes),
                options=tuple(sorted(changed_options(spec, options).items())))


def run_case(spec: CellSpec, task: TaskSpec, hidden_sizes: Sequence[int], cfg: TrainConfig, *,
             options: dict | None = None, backend: str = "eager", labels: dict | None = None,
             on_eval: Callable[[int, float], None] | None = None) -> Row:
    """Train one cell on one task and return its row in the shared result schema."""
    check_backend(backend)
    hidden_sizes = list(hidden_sizes)
    opts = applicable_options(spec, options or {})
    case = make_case(spec, task, hidden_sizes, cfg, opts, backend)
    lab = {**task.labels(), "metric": task.metric,
           "better": "lower" if task.lower_is_better else "higher",
           "solved_at": repr(task.solved_at), "seed": str(cfg.seed), "lr": repr(cfg.lr),
           "clip": repr(cfg.clip), "threads": str(torch.get_num_threads()),
           "case": f"{task.label}-s{cfg.seed}", **(labels or {})}
    try:
        res = train(spec, task, hidden_sizes, cfg, opts, on_eval, backend)
    except UnsupportedRun as e:
        return case.row(status="unsupported", reason=f"{backend}: {e}", labels=lab)
    except (RnnbenchError, KeyboardInterrupt):
        raise
    except Exception as e:  # one run's OOM or crash is its row; a suite goes on
        from rnnbench.outcome import classify
        status, reason = classify(e)
        return case.row(status=status, reason=reason, labels=lab)
    values = res.curve_value
    best_i = max(range(len(values)), key=lambda i: (-values[i] if task.lower_is_better
                                                      else values[i], -i))
    finite = [t for t in res.step_times if math.isfinite(t)]
    # the harness's quantile definition, so task and speed IQRs compare
    q = [quantile(finite, 0.25), None, quantile(finite, 0.75)]
    metrics = {
        "val_final": values[-1],
        "val_best": values[best_i],
        "best_step": res.curve_step[best_i],
        "trivial": task.trivial,
        "solved_step": res.solved_step,
        "steps": res.steps_done,
        **res.counts,
        "step_time_s_median": statistics.median(finite),
        "step_time_s_q25": q[0],
        "step_time_s_q75": q[2],
        "step_time_s_iqr": q[2] - q[0],
        "step_time_s_min": min(finite),
        # every step's time (forward, backward, clipping, update), for compare's significance test
        "step_samples_s": finite,
        "train_time_s": res.wall_s,
        "train_loss_last": res.train_loss_last,
        "curve_step": res.curve_step,
        "curve_value": values,
        **res.extra,
    }
    if res.counts["params_projection"]:
        lab["input_projection"] = (f"learned {task.input_size}→{hidden_sizes[0]} "
                                   f"({spec.display} needs N = M)")
    warnings = ["training diverged (non-finite loss); the curve stops there"] if res.diverged else []
    return case.row(metrics=metrics, labels=lab, warnings=warnings)


# -- plans: what one invocation trains, from flags or a suite file ----------------------------------
@dataclass(frozen=True)
class Run:
    """One training run: a cell at given sizes on a task, with its labels (group, matching)."""

    spec: CellSpec
    task: TaskSpec
    hidden_sizes: tuple[int, ...]
    cfg: TrainConfig
    options: tuple[tuple[str, object], ...] = ()
    backend: str = "eager"
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def identity(self) -> tuple:
        """What decides the outcome: two runs with equal identity train the same model alike."""
        return (self.spec.family, self.spec.variant, self.spec.form, self.task, self.hidden_sizes,
                self.cfg, self.options, self.backend)


def plan_runs(specs: Sequence[CellSpec], task: TaskSpec, hidden_sizes: Sequence[int],
              cfg: TrainConfig, *, matched_params: bool = False,
              reference: CellSpec | None = None, options: dict | None = None,
              backend: str = "eager", group: str = "") -> list[Run]:
    """Runs for each cell: at the given hidden sizes, or at the M whose recurrent parameter count is
    closest to the reference cell's at those sizes."""
    check_backend(backend)
    hidden_sizes = tuple(hidden_sizes)
    options = dict(options or {})
    opts = tuple(sorted((k, v) for k, v in options.items() if v is not None))
    runs = []
    base = {"group": group} if group else {}
    if matched_params:
        if reference is None:
            raise RnnbenchError("--matched-params needs a reference cell")
        ref_n = hidden_sizes[0] if reference.requires_square else task.input_size
        with torch.random.fork_rng(devices=[]):
            ref_stack = RecurrentStack(reference, ref_n, list(hidden_sizes),
                                       **applicable_options(reference, options))
        target = count_unique(ref_stack)
        for spec in specs:
            m = match_hidden_size(spec, task.input_size, target, len(hidden_sizes), options)
            got = recurrent_params(spec, task.input_size, m, len(hidden_sizes), options)
            lab = {**base, "matched": "params", "reference": reference.name,
                   "reference_params": str(target),
                   "matched_off_pct": f"{100.0 * (got - target) / target:+.2f}"}
            runs.append(Run(spec, task, (m,) * len(hidden_sizes), cfg, opts, backend,
                            tuple(lab.items())))
    else:
        for spec in specs:
            runs.append(Run(spec, task, hidden_sizes, cfg, opts, backend,
                            tuple({**base, "matched": "hidden"}.items())))
    return runs


def _labels(run: Run) -> dict:
    labels = dict(run.labels)
    group = labels.get("group", "")
    # the reference cell is the same model in both groups; the suffix keeps the two rows apart
    suffix = "-pm" if labels.get("matched") == "params" else ""
    # the training settings are part of the identity: --resume must not keep a 20-step run for 2000
    cfg = run.cfg
    train_id = f"n{cfg.steps}-b{cfg.batch}-lr{cfg.lr:g}-c{cfg.clip:g}-e{cfg.eval_every}-v{cfg.val_size}"
    if cfg.stop_when_solved:
        train_id += "-stop"
    labels["case"] = ((f"{group}/" if group else "") + f"{run.task.label}-s{cfg.seed}-{train_id}"
                      + suffix)
    return labels


RUN_LABELS = ("group", "matched", "reference", "reference_params", "matched_off_pct", "case")


def execute(run: Run, on_eval: Callable[[int, float], None] | None = None) -> Row:
    return run_case(run.spec, run.task, run.hidden_sizes, run.cfg, options=dict(run.options),
                    backend=run.backend, labels=_labels(run), on_eval=on_eval)


def run_key(run: Run) -> str:
    """The key the run's row will have, known before training (for --resume)."""
    opts = applicable_options(run.spec, dict(run.options))
    case = make_case(run.spec, run.task, run.hidden_sizes, run.cfg, opts, run.backend)
    return case.row(labels={"case": _labels(run)["case"]}).key


def relabel(row: Row, run: Run) -> Row:
    """A finished row reused for a run of the same identity under other labels (the reference cell
    appears at matched hidden size and at matched parameter count, and is trained once)."""
    d = row.to_dict()
    d["labels"] = {**{k: v for k, v in row.labels.items() if k not in RUN_LABELS}, **_labels(run),
                   "reused": "trained once for an identical run"}
    d["key"] = ""
    return Row.from_dict(d)


# -- suites: a TOML file of run groups -------------------------------------------------------------
SUITE_TRAIN_KEYS = {"steps": int, "batch": int, "lr": float, "clip": float, "eval_every": int,
                    "val_size": int, "seed": int, "device": str, "stop_when_solved": bool}
SUITE_TASK_KEYS = {"seq_len": int, "targets": int, "interfere": int, "alphabet": int}
SUITE_RUN_KEYS = {"id": str, "task": str, "cell": (str, list), "variant": (str, list), "form": str,
                  "hidden_size": (int, list), "layers": int, "matched_params": bool,
                  "reference": str, "backend": str, "options": dict,
                  **SUITE_TASK_KEYS, **SUITE_TRAIN_KEYS}


def _check_type(value, want, where: str, key: str):
    wants = want if isinstance(want, tuple) else (want,)
    ok = any(isinstance(value, w) and not (w in (int, float) and isinstance(value, bool))
             for w in wants) or (float in wants and isinstance(value, int)
                                 and not isinstance(value, bool))
    if not ok:
        names = " or ".join("list" if w is list else "table" if w is dict else w.__name__
                            for w in wants)
        raise ConfigError(f"{where}: {key} must be {names}, got {value!r}")
    return float(value) if wants == (float,) else value


def parse_cell(text: str) -> tuple[str, str]:
    """'gru' or 'gru/irc' into (family, variant)."""
    fam, _, var = text.partition("/")
    return fam, var or "baseline"


def load_suite(path, overrides: dict | None = None) -> tuple[dict, list[Run]]:
    """Read and validate a task suite; ``overrides`` (training settings from the command line)
    replace the file's values everywhere. Any malformed entry is a ConfigError naming its place."""
    from pathlib import Path

    from rnnbench.suite import read_toml

    path = Path(path)
    data = read_toml(path, "config file")
    meta, defaults, runs_raw = _task_tables(data, path)
    plan, ids = [], set()
    for i, raw in enumerate(runs_raw, 1):
        where = f"{path.name}, run {i}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: each [[runs]] entry must be a table")
        unknown = set(raw) - set(SUITE_RUN_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        entry = {**defaults, **raw}
        entry = {k: _check_type(v, SUITE_RUN_KEYS[k], where, k) for k, v in entry.items()}
        for req in ("id", "task", "hidden_size"):
            if req not in entry:
                raise ConfigError(f"{where}: missing {req!r}")
        rid = entry["id"]
        if not rid or "/" in rid or rid in ids:
            raise ConfigError(f"{where}: id {rid!r} must be non-empty, without '/', and unique")
        ids.add(rid)
        plan += _entry_runs(entry, rid, overrides, f"{path.name}, run {rid!r}")
    return meta, plan


def _task_tables(data: dict, path) -> tuple[dict, dict, list]:
    """[meta] (bench = "task"), [defaults] checked key by key, and the [[runs]] entries."""
    unknown_top = set(data) - {"meta", "defaults", "runs"}
    if unknown_top:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(sorted(unknown_top))}; "
                          "a task suite has [meta], [defaults] and [[runs]]")
    meta = data.get("meta", {})
    if not isinstance(meta, dict) or meta.get("bench") != "task":
        raise ConfigError(f'{path}: a task suite needs [meta] with bench = "task"')
    runs_raw = data.get("runs")
    if not isinstance(runs_raw, list) or not runs_raw:
        raise ConfigError(f"{path}: a task suite needs at least one [[runs]] entry")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path}: [defaults] must be a table")
    for k, v in defaults.items():
        if k not in SUITE_RUN_KEYS or k == "id":
            raise ConfigError(f"{path}, [defaults]: unknown key {k!r}")
        _check_type(v, SUITE_RUN_KEYS[k], f"{path.name}, [defaults]", k)
    return meta, defaults, runs_raw


def _entry_runs(entry: dict, rid: str, overrides: dict | None, where: str) -> list[Run]:
    """The runs of one [[runs]] entry (its type-checked keys), errors named by ``where``."""
    from rnnbench.cells.registry import get, select

    try:
        task = TaskSpec.make(entry["task"], **{k: entry.get(k) for k in SUITE_TASK_KEYS})
        if task.name == "adding" and any(k in entry for k in ("targets", "interfere", "alphabet")):
            raise ConfigError("targets, interfere and alphabet apply to memorization and copy")
        if task.name != "adding" and "seq_len" in entry:
            raise ConfigError("seq_len applies to the adding problem; use interfere (L)")
        train_kw = {k: entry[k] for k in SUITE_TRAIN_KEYS if k in entry}
        train_kw.update({k: v for k, v in (overrides or {}).items() if v is not None})
        cfg = TrainConfig(**train_kw)
        hs = _entry_hidden_sizes(entry["hidden_size"], entry.get("layers"))
        cells, variants = entry.get("cell", DEFAULT_CELL), entry.get("variant", "baseline")
        specs = _select_all(select, get, cells, variants, entry.get("form", "paper"))
        ref = None
        if entry.get("matched_params", False):
            ref = get(*parse_cell(entry.get("reference", DEFAULT_CELL)))
        return plan_runs(specs, task, hs, cfg, matched_params=entry.get("matched_params", False),
                         reference=ref, options=entry.get("options"),
                         backend=entry.get("backend", "eager"), group=rid)
    except (RnnbenchError, TypeError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _entry_hidden_sizes(hs, layers) -> list[int]:
    hs = [hs] if isinstance(hs, int) else hs
    if not hs or not all(isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in hs):
        raise ConfigError(f"hidden_size must be a positive integer or a list of them, got {hs!r}")
    if layers is not None:
        if len(hs) == 1:
            hs = hs * layers
        elif layers != len(hs):
            raise ConfigError(f"layers = {layers} does not match {len(hs)} hidden sizes")
    return hs


def _select_all(select, get, cells, variants, form) -> list[CellSpec]:
    cells = [cells] if isinstance(cells, str) else cells
    variants = [variants] if isinstance(variants, str) else variants
    if not cells or not variants or not all(isinstance(c, str) for c in cells + variants):
        raise ConfigError("cell and variant must be names or lists of names")
    return select(cells[0] if cells == ["all"] else cells,
                  variants[0] if variants == ["all"] else variants, form)
