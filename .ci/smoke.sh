#!/usr/bin/env bash
# Install smoke test: README command 1 and a tiny suite, each in a fresh virtual environment of every
# Python that pyproject's requires-python admits and this image has (pyenv). A Python the image has
# but requires-python refuses is named, not tried: admitting one means adding it here first.
set -euo pipefail
cd "$(dirname "$0")/.."
spec=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["requires-python"])')
pythons=()
for root in "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/*; do
  [ -x "$root/bin/python3" ] || continue
  ver=$("$root/bin/python3" -c 'import platform; print(platform.python_version())')
  if python3 -c 'import sys; from packaging.specifiers import SpecifierSet as S; sys.exit(0 if sys.argv[2] in S(sys.argv[1]) else 1)' "$spec" "$ver"; then
    pythons+=("$root/bin/python3")
  else
    echo "smoke: Python $ver is not admitted by requires-python $spec; skipped"
  fi
done
[ ${#pythons[@]} -gt 0 ] || { echo "smoke: no Python here satisfies $spec" >&2; exit 1; }
for py in "${pythons[@]}"; do
  ver=$("$py" -c 'import platform; print(platform.python_version())')
  venv=$(mktemp -d "${TMPDIR:-/tmp}/rnnbench-smoke-$ver.XXXXXX")
  trap 'rm -rf "$venv"' EXIT
  echo "smoke: Python $ver in $venv"
  "$py" -m venv "$venv"
  (
    # shellcheck disable=SC1091
    source "$venv/bin/activate"
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    # README command 1, as written (the image's torch is the local CPU wheel)
    pip install -q torch==2.13.0 && pip install -q -e . && rnnbench params --config bench_configs/paper_table2.toml > "$venv/params.txt"
    rnnbench --version
    rnnbench run bench_configs/smoke.toml --json "$venv/smoke.json" --quiet > "$venv/run.txt"
    python -c 'import json, sys; rows = json.load(open(sys.argv[1]))["results"]; bad = [r["key"] for r in rows if r["status"] != "ok"]; sys.exit(f"smoke: not ok: {bad}" if bad else 0)' "$venv/smoke.json"
  )
  rm -rf "$venv"
  trap - EXIT
  echo "smoke: Python $ver ok"
done
