#!/usr/bin/env bash
# rnnbench's own regression check, in two parts (docs/ci.md has the same ideas for a user's CI):
#
# 1. Exact counts against the baseline committed in .ci/baseline/: parameter counts of every cell,
#    the paper's Table II, saved-for-backward bytes. Any change fails; they do not depend on the
#    machine, so a committed file is the right reference.
# 2. Speed against the parent commit, with `rnnbench ab` (bench_configs/ci_ab.toml): the parent is
#    checked out as a worktree and both versions are measured interleaved on this machine, paired
#    round by round, with instruction counts under valgrind beside the times. A commit whose
#    message holds [ab-accept] reports its slowdowns without failing (an intended cost).
#    Skipped, with a line saying why, when the clone has no parent or the parent predates `ab`.
#
#   bash .ci/regression.sh            measure, compare, exit non-zero on a regression
#   bash .ci/regression.sh --update   measure the counts and rewrite .ci/baseline/ (review, commit)
#
# RNNBENCH_CI_OUT (a directory to keep the files and report.md in; default a fresh temporary one),
# RNNBENCH_CI_BASELINE (default .ci/baseline), RNNBENCH (the command), RNNBENCH_CI_AB=0 (skip
# part 2) and RNNBENCH_CI_AB_ROUNDS (default 10) override the defaults.
#
# To add an exact check: one line in MEASURE (the rnnbench command, without --json); then run with
# --update.
set -euo pipefail
cd "$(dirname "$0")/.."

RNNBENCH=${RNNBENCH:-"python3 -m rnnbench.cli"}
BASELINE=${RNNBENCH_CI_BASELINE:-.ci/baseline}
OUT=${RNNBENCH_CI_OUT:-$(mktemp -d)}
mkdir -p "$OUT"
update=0
case "${1:-}" in
  --update) update=1 ;;
  "") ;;
  *) echo "usage: bash .ci/regression.sh [--update]" >&2; exit 2 ;;
esac

TINY="-N 16 -M 16 -B 4 -T 8"
CHECKS=(params paper_table2 memory)
declare -A MEASURE=(
  [params]="params --cell all --variant all -N 64 -M 64,64"
  [paper_table2]="params --config bench_configs/paper_table2.toml"
  [memory]="memory --cell all --variant all $TINY --no-rss"
)
declare -A COMPARE=()

for name in "${CHECKS[@]}"; do
  echo "== measure $name: rnnbench ${MEASURE[$name]}"
  # the tables go to a log: the comparison below is what CI needs to show
  if ! $RNNBENCH ${MEASURE[$name]} --json "$OUT/$name.json" --overwrite >"$OUT/$name.log" 2>&1; then
    cat "$OUT/$name.log"
    echo "regression.sh: measuring $name failed" >&2
    exit 2
  fi
done

if (( update )); then
  mkdir -p "$BASELINE"
  for name in "${CHECKS[@]}"; do cp "$OUT/$name.json" "$BASELINE/$name.json"; done
  rm -f "$BASELINE/speed.json"  # times are checked against the parent commit now, never a file
  echo "baseline updated in $BASELINE/: review the diff and commit it"
  exit 0
fi

status=0
report="$OUT/report.md"
: >"$report"
for name in "${CHECKS[@]}"; do
  echo "== compare $name"
  if [[ ! -f "$BASELINE/$name.json" ]]; then
    echo "regression.sh: no baseline $BASELINE/$name.json; run bash .ci/regression.sh --update" >&2
    status=2
    continue
  fi
  rc=0
  $RNNBENCH compare "$BASELINE/$name.json" "$OUT/$name.json" ${COMPARE[$name]:-} --changes-only \
    --markdown "$OUT/$name.md" --title "rnnbench CI: $name" || rc=$?
  if [[ -f "$OUT/$name.md" ]]; then cat "$OUT/$name.md" >>"$report"; echo >>"$report"; fi
  # keep comparing after a failure so one run shows every regression; the worst code wins
  (( rc > status )) && status=$rc
done

# -- part 2: speed against the parent commit, paired -------------------------------------------------
ab_status=0
parent_ok() {
  git rev-parse --verify -q HEAD~1 >/dev/null || { echo "no parent commit in this clone"; return 1; }
  git cat-file -e HEAD~1:rnnbench/ab.py 2>/dev/null || { echo "the parent predates rnnbench ab"; return 1; }
  git cat-file -e HEAD~1:rnnbench/bench/instructions.py 2>/dev/null || { echo "the parent cannot count instructions"; return 1; }
}
if [[ "${RNNBENCH_CI_AB:-1}" == 0 ]]; then
  echo "== ab against the parent: skipped (RNNBENCH_CI_AB=0)"
elif ! why=$(parent_ok); then
  echo "== ab against the parent: skipped ($why)"
else
  parent="$OUT/parent"
  git worktree add -q --detach "$parent" HEAD~1
  trap 'git worktree remove --force "$parent" 2>/dev/null || true' EXIT
  echo "== ab: HEAD~1 ($(git rev-parse --short HEAD~1)) → HEAD ($(git rev-parse --short HEAD)), bench_configs/ci_ab.toml"
  # instructions beyond 1% fail: these tiny cases are mostly Python, and any change of an imported
  # module moves the heap and with it CPython's address-keyed caches, by up to 0.3% measured on
  # identical cell code (docs/measurements-2026-12-03-cpu.md)
  $RNNBENCH ab bench_configs/ci_ab.toml --base "$parent" --head . --instructions \
    --instructions-threshold 1% \
    --rounds "${RNNBENCH_CI_AB_ROUNDS:-10}" \
    --json "$OUT/ab.json" --markdown "$OUT/ab.md" --workdir "$OUT/ab.work" || ab_status=$?
  if [[ -f "$OUT/ab.md" ]]; then cat "$OUT/ab.md" >>"$report"; echo >>"$report"; fi
  if (( ab_status == 1 )) && git log -1 --format=%B | grep -q '\[ab-accept\]'; then
    echo "regression.sh: ab found a slowdown; the commit message says [ab-accept], so it does not fail"
    ab_status=0
  fi
  (( ab_status > status )) && status=$ab_status
fi

if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then cat "$report" >>"$GITHUB_STEP_SUMMARY"; fi
echo "regression report: $report"
case $status in
  0) echo "regression.sh: no regression" ;;
  1) echo "regression.sh: regression (counts against $BASELINE: bash .ci/regression.sh --update if intended; speed against the parent: [ab-accept] in the commit message if intended)" >&2 ;;
  *) echo "regression.sh: the comparison could not be made (exit $status)" >&2 ;;
esac
exit $status
