#!/usr/bin/env bash
# 2026-12-05 (run n): the speed issue's goal run with lookup rounds, on a quiet machine, one thread.
# From the repository root: bash docs/measurements/2026-12-05e/run_measure.sh [STEP...] (steps: profile goal ab).
set -euo pipefail
OUT=docs/measurements/2026-12-05e
export OMP_NUM_THREADS=1
STEPS=${*:-profile goal}
for step in $STEPS; do
  date -u
  case $step in
    profile) .venv/bin/dspark profile --threads 1 --dtype auto 2>&1 | grep -v "Loading weights" | tee $OUT/profile_auto.log ;;
    goal) .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --datasets mt-bench,gsm8k,humaneval --start 0 \
            --limit 20 --max-new-tokens 128 --policies hardware,hardware:no-lookup --baselines prompt-lookup --threads 1 \
            --out $OUT/bench_goal 2>&1 | grep -v "Loading weights" | tee $OUT/bench_goal.log ;;
    ab) .venv/bin/python $OUT/ab_lookup_b1.py 6 40 mt-bench,gsm8k,humaneval hardware hardware:no-lookup fixed:1 2>&1 \
          | grep -v "Loading weights" | tee $OUT/ab_lookup_b1.log ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
date -u
