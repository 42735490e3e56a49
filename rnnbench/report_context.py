"""What two result files were measured with, side by side: the context block that opens a Markdown
report, and warnings when settings or environment differ between the two sides.

`compare` uses it, and `ab` can: ``context(rf)`` reads one side, ``differences(a, b)`` says what
differs among the fields that move timings, and ``markdown_block([(name, ctx), ...])`` writes the
block. A time measured with 1 thread against one measured with 2, or on another CPU model, differs
for reasons that are not the code's; the reader should see that before any verdict.
"""

from __future__ import annotations

import shlex

# (key, label, moves timings): the fields that move timings are compared between the two sides
FIELDS = (
    ("machine", "machine", True),
    ("device", "device", True),
    ("torch", "torch", True),
    ("python", "Python", False),
    ("threads", "threads", True),
    ("pin_cpus", "pinned CPUs", True),
    ("min_run_time", "min_run_time", True),
    ("rounds", "rounds", True),
    ("commit", "commit", False),
    ("date", "date", False),
    ("command", "command", False),
)
LABELS = {k: label for k, label, _ in FIELDS}
WATCHED = tuple(k for k, _, moves in FIELDS if moves)


def _flag(argv: list[str], name: str) -> str | None:
    """The value given to ``--name`` in a recorded command line (``--name V`` or ``--name=V``)."""
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def _text(v) -> str:
    if v is None or v == "":
        return ""
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    return str(v)


def context(rf) -> dict[str, str]:
    """The context of one result file (a :class:`rnnbench.results.ResultFile`), as text per field;
    a field the file does not record is an empty string. Never raises on odd files."""
    env = rf.env if isinstance(rf.env, dict) else {}
    prov = rf.provenance if isinstance(rf.provenance, dict) else {}
    argv = [str(a) for a in prov.get("argv") or []] if isinstance(prov.get("argv"), list) else []
    suite = prov.get("suite") if isinstance(prov.get("suite"), dict) else {}
    settings = suite.get("settings") if isinstance(suite.get("settings"), dict) else {}
    speed = settings.get("speed") if isinstance(settings.get("speed"), dict) else {}
    commit = _text(prov.get("commit"))[:12]
    if commit and prov.get("dirty"):
        commit += " (modified)"
    device = _text(env.get("device"))
    name = _text(env.get("device_name"))
    return {
        "machine": _text(env.get("cpu")) or name,
        "device": f"{device} ({name})" if device.startswith("cuda") and name else device,
        "torch": _text(env.get("torch")),
        "python": _text(env.get("python")),
        "threads": _text(speed.get("threads") or _flag(argv, "--threads") or env.get("threads")),
        "pin_cpus": _text(speed.get("pin_cpus") or _flag(argv, "--pin-cpus")),
        "min_run_time": _text(speed.get("min_run_time") or _flag(argv, "--min-run-time")),
        "rounds": _text(env.get("rounds") or _flag(argv, "--rounds")),
        "commit": commit,
        "date": _text(prov.get("time")),
        "command": " ".join(shlex.quote(a) for a in ["rnnbench", *argv[1:]]) if argv else "",
    }


def differences(a: dict[str, str], b: dict[str, str], keys=WATCHED) -> list[str]:
    """'threads: 1 → 2' for each field that moves timings and differs between the sides. A field
    one side does not record is not a difference: older files lack some."""
    return [f"{LABELS.get(k, k)}: {a.get(k) or '?'} → {b.get(k) or '?'}" for k in keys
            if a.get(k) and b.get(k) and a.get(k) != b.get(k)]


def warning_line(diffs: list[str]) -> str:
    """One line for a terminal or log."""
    return ("the two sides were measured differently (" + "; ".join(diffs)
            + "): time differences may come from that, not from the code")


def markdown_block(sides: list[tuple[str, dict[str, str]]]) -> str:
    """A table with a column per side and a row per recorded field, then the differences (if two
    sides) as a warning. Values are code-quoted: file names and commands stay literal."""
    def cell(v: str) -> str:
        return f"`{v}`" if v else "–"

    rows = [k for k, _, _ in FIELDS if any(ctx.get(k) for _, ctx in sides)]
    lines = ["| | " + " | ".join(f"`{name}`" for name, _ in sides) + " |",
             "|---|" + "---|" * len(sides)]
    for k in rows:
        lines.append(f"| {LABELS[k]} | " + " | ".join(cell(ctx.get(k, "")) for _, ctx in sides)
                     + " |")
    if len(sides) == 2:
        diffs = differences(sides[0][1], sides[1][1])
        if diffs:
            lines += ["", "> **Warning:** " + warning_line(diffs) + "."]
    return "\n".join(lines) + "\n"
