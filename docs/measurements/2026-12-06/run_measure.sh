#!/usr/bin/env bash
# 2026-12-06 (run o): lookup rows in the batched engine. Quiet machine, one thread per process.
# From the repository root: bash docs/measurements/2026-12-06/run_measure.sh [STEP...]
# (steps: profile profile32 packed load goal; default: all five in that order).
set -euo pipefail
OUT=docs/measurements/2026-12-06
export OMP_NUM_THREADS=1
STEPS=${*:-profile profile32 packed load goal}
for step in $STEPS; do
  date -u
  case $step in
    profile) .venv/bin/dspark profile --threads 1 --dtype auto 2>&1 | grep -v "Loading weights" | tee $OUT/profile_auto.log ;;
    profile32) .venv/bin/dspark profile --threads 1 --dtype float32 2>&1 | grep -v "Loading weights" | tee $OUT/profile_float32.log ;;
    packed) .venv/bin/dspark profile --packed --requests 1,2,4,8,16 --context 256 --repeats 3 --warmup 1 --dtype float32 \
              --threads 1 2>&1 | grep -v "Loading weights" | tee $OUT/profile_packed.log ;;
    load) .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --concurrency 1,2,4,8,16 \
            --datasets mt-bench,gsm8k,humaneval --start 40 --limit 6 --max-new-tokens 64 \
            --policies fixed:1,fixed:3,hardware,hardware:no-lookup --repeats 3 --threads 1 \
            --out $OUT/load 2>&1 | grep -v "Loading weights" | tee $OUT/load.log ;;
    goal) .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --datasets mt-bench,gsm8k,humaneval --start 0 \
            --limit 20 --max-new-tokens 128 --policies hardware,hardware:no-lookup --baselines prompt-lookup --threads 1 \
            --out $OUT/bench_goal 2>&1 | grep -v "Loading weights" | tee $OUT/bench_goal.log ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
date -u
