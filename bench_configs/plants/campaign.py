"""Run `rnnbench ab` many times on the planted cells and tabulate each job's verdict: the check
of ab's false-alarm rate and power that docs/measurements-*-cpu.md records.

    python bench_configs/plants/campaign.py OUT_DIR --jobs 20 --pairs k20:k20,k20:k21,k20:k22 [AB_OPTIONS]

One line per job on stdout (pair, job, verdict, ratio, interval, wall seconds), a TSV in OUT_DIR;
`campaign.py OUT_DIR --summary` turns the TSV into a Markdown table per pair.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--pairs", default="k20:k20,k20:k21,k20:k22")
    ap.add_argument("--suite", default=str(HERE / "plant.toml"))
    ap.add_argument("--summary", action="store_true", help="summarise OUT_DIR/jobs.tsv; run nothing")
    a, a.ab_options = ap.parse_known_args()  # the rest goes to every `rnnbench ab`
    if a.summary:
        print(summary(a.out / "jobs.tsv"))
        return 0
    a.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    tsv = a.out / "jobs.tsv"
    with open(tsv, "a", encoding="utf-8") as fh:
        for job in range(1, a.jobs + 1):
            for pair in a.pairs.split(","):  # pairs interleaved, so drift spreads over all of them
                base, head = pair.split(":")
                name = f"{base}-{head}-{job:02d}"
                t0 = time.monotonic()
                cmd = [sys.executable, "-m", "rnnbench.cli", "ab", a.suite, "--base", str(HERE / base),
                       "--head", str(HERE / head), "--json", str(a.out / f"{name}.json"),
                       "--workdir", str(a.out / f"{name}.ab"), "--quiet", *a.ab_options]
                code = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode
                wall = time.monotonic() - t0
                try:
                    res = json.loads((a.out / f"{name}.json").read_text())
                    timed = [v for v in res["verdicts"] if v["comparison"] in ("statistical", "instructions")]
                    cells = [f"{v['metric']}={v['verdict']}:{v['ratio']:.4f}" +
                             (f"[{v['low']:.3f},{v['high']:.3f}]" if v.get("low") is not None else "")
                             for v in timed]
                except (OSError, ValueError, KeyError, TypeError):
                    cells = ["no result"]
                load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
                line = "\t".join([pair, str(job), str(code), f"{wall:.0f}", *cells, f"load={load}"])
                print(line, flush=True)
                fh.write(line + "\n")
                fh.flush()
    return 0


def summary(tsv: Path) -> str:
    """Per pair: jobs, how many failed (exit 1), the estimated ratios and intervals, wall times."""
    import re
    import statistics
    rows: dict[str, list] = {}
    for line in tsv.read_text(encoding="utf-8").splitlines():
        pair, _job, code, wall, *cells = line.split("\t")
        for cell in cells:
            m = re.match(r"(.+?)=(\w+):([\d.]+)(?:\[([\d.]+),([\d.a-z]+)\])?", cell)
            if m:
                rows.setdefault(f"{pair} {m[1]}", []).append(
                    (int(code), m[2], float(m[3]), m[4] and float(m[4]), m[5], float(wall)))
    out = ["| pair, metric | jobs | exit 1 (regression) | ratio: median [min, max] | "
           "interval low: median | interval high: median | wall s: median [max] |",
           "|---|---|---|---|---|---|---|"]
    for name, jobs in rows.items():
        ratios = [j[2] for j in jobs]
        lows = [j[3] for j in jobs if j[3] is not None]
        highs = [float(j[4]) for j in jobs if j[4] not in (None, "", "inf")]
        walls = [j[5] for j in jobs]
        out.append(f"| {name} | {len(jobs)} | {sum(j[0] == 1 for j in jobs)} | "
                   f"{statistics.median(ratios):.4f} [{min(ratios):.4f}, {max(ratios):.4f}] | "
                   f"{statistics.median(lows):.3f} | {statistics.median(highs):.3f} | "
                   f"{statistics.median(walls):.0f} [{max(walls):.0f}] |" if lows and highs else
                   f"| {name} | {len(jobs)} | {sum(j[0] == 1 for j in jobs)} | "
                   f"{statistics.median(ratios):.4f} [{min(ratios):.4f}, {max(ratios):.4f}] | | | "
                   f"{statistics.median(walls):.0f} [{max(walls):.0f}] |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
