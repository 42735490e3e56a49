#!/usr/bin/env bash
# rnnbench's own regression check: measure a small CPU suite and compare it with the baseline
# committed in .ci/baseline/ (see docs/ci.md for the same idea in a user's GitHub workflow).
#
#   bash .ci/regression.sh            measure, compare, exit non-zero on a regression
#   bash .ci/regression.sh --update   measure and rewrite .ci/baseline/ (review, then commit it)
#
# Exact counts (parameters, saved-for-backward bytes) fail on any change. Times come from shared,
# noisy CPUs and from a machine other than the baseline's, so they are compared normalised by a
# matrix-product reference measured in the same run, by their minimum, and fail only beyond 2x.
#
# RNNBENCH_CI_OUT (a directory to keep the files and report.md in; default a fresh temporary one),
# RNNBENCH_CI_BASELINE (default .ci/baseline) and RNNBENCH (the command) override the defaults.
#
# To add a check: one line in MEASURE (the rnnbench command, without --json) and, if it is not an
# exact check, one in COMPARE (extra `rnnbench compare` options); then run with --update.
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
CHECKS=(params paper_table2 memory speed)
declare -A MEASURE=(
  [params]="params --cell all --variant all -N 64 -M 64,64"
  [paper_table2]="params --config bench_configs/paper_table2.toml"
  [memory]="memory --cell all --variant all $TINY --no-rss"
  # one thread: on a shared 2-core runner two threads wait on each other and times jump 100x
  [speed]="speed --cell gru,lstm --variant all $TINY --mode fwd+bwd --min-run-time 0.3 --threads 1"
)
declare -A COMPARE=(
  [speed]="--normalize --time-stat min --time-fail-ratio 2.0"
)

for name in "${CHECKS[@]}"; do
  echo "== measure $name: rnnbench ${MEASURE[$name]}"
  # the tables go to a log: the comparison below is what CI needs to show
  if ! $RNNBENCH ${MEASURE[$name]} --json "$OUT/$name.json" >"$OUT/$name.log" 2>&1; then
    cat "$OUT/$name.log"
    echo "regression.sh: measuring $name failed" >&2
    exit 2
  fi
done

if (( update )); then
  mkdir -p "$BASELINE"
  for name in "${CHECKS[@]}"; do cp "$OUT/$name.json" "$BASELINE/$name.json"; done
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

if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then cat "$report" >>"$GITHUB_STEP_SUMMARY"; fi
echo "regression report: $report"
case $status in
  0) echo "regression.sh: no regression" ;;
  1) echo "regression.sh: regression against $BASELINE (if intended: bash .ci/regression.sh --update)" >&2 ;;
  *) echo "regression.sh: the comparison could not be made (exit $status)" >&2 ;;
esac
exit $status
