#!/usr/bin/env bash
# 2026-12-05 (run l): every measurement of the one-row / plain-step weight-major change, in order, on a quiet
# machine, one thread. From the repository root: bash docs/measurements/2026-12-05c/run_measure.sh [STEP...]
# (steps: linears profile packed never load goal; default all). Each step writes its log here.
set -euo pipefail
OUT=docs/measurements/2026-12-05c
export OMP_NUM_THREADS=1
STEPS=${*:-linears profile packed never load goal}
for step in $STEPS; do
  date -u
  case $step in
    linears) .venv/bin/python scripts/ab_one_row_linears.py 2>&1 | grep -v "Loading weights" | tee $OUT/one_row_linears.log ;;
    profile) .venv/bin/dspark profile --threads 1 --dtype auto 2>&1 | grep -v "Loading weights" | tee $OUT/profile_auto.log ;;
    packed) .venv/bin/dspark profile --packed --requests 1,2,4,8,16 --context 256 --repeats 3 --warmup 1 --dtype float32 \
              --threads 1 2>&1 | grep -v "Loading weights" | tee $OUT/profile_packed.log ;;
    never) for c in 1 2 4 8; do
             echo "C=$c"; PYTHONPATH=scripts .venv/bin/python scripts/engine_never_drafts.py $c 64 2>&1 | grep -v "Loading weights"
           done | tee $OUT/engine_never_drafts.log ;;
    load) OUT=$OUT bash docs/measurements/2026-12-05/run_load_gate.sh load_plain_wm ;;
    goal) .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --datasets mt-bench,gsm8k,humaneval --start 0 \
            --limit 20 --max-new-tokens 128 --policies hardware,fixed:1 --baselines prompt-lookup --threads 1 \
            --out $OUT/bench_goal 2>&1 | grep -v "Loading weights" | tee $OUT/bench_goal.log ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
date -u
