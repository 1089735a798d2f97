#!/usr/bin/env bash
# Run q's measurements (Intel Xeon, 1 thread, nothing else running). Steps: forward profile e2e goal
# Usage: OLD=/tmp/ab_old bash docs/measurements/2026-12-06c/run_measure.sh forward profile e2e goal
set -eu
cd "$(dirname "$0")/../../.."
OUT=docs/measurements/2026-12-06c
for step in "$@"; do
  case $step in
    forward) OLD=$OLD PASSES=3 bash $OUT/run_ab.sh | tee $OUT/row_forward_ab.log ;;
    profile) .venv/bin/dspark profile --threads 1 --dtype auto 2>&1 | grep -v "Loading weights" | tee $OUT/profile_auto.log ;;
    e2e) export DSPARK_EVAL_DATASETS_DIR=$PWD/../shared/eval_datasets  # the OLD checkout is not beside shared/
         for src in "$OLD/src" "$PWD/src"; do
           echo "== dspark_hf from $src"
           OMP_NUM_THREADS=1 PYTHONPATH="$src" .venv/bin/python docs/measurements/2026-12-05e/ab_lookup_b1.py 6 40 mt-bench,gsm8k,humaneval hardware 2>&1 | grep -v "Loading weights"
         done | tee $OUT/ab_lookup_b1_old_new.log ;;
    goal) .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --datasets mt-bench,gsm8k,humaneval --start 0 \
            --limit 20 --max-new-tokens 128 --policies hardware,hardware:no-lookup --baselines prompt-lookup --threads 1 \
            --out $OUT/bench_goal 2>&1 | grep -v "Loading weights" | tee $OUT/bench_goal.log ;;
  esac
done
