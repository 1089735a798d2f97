#!/usr/bin/env bash
# 2026-12-06 (run p): the batch-1 drafting gate with outlier-robust seconds and the row-invariance probes
# primed before the first round. Quiet machine, one thread per process.
# From the repository root: bash docs/measurements/2026-12-06b/run_measure.sh [STEP...]
# (steps: trace ab goal load bf16; default: all five in that order).
set -euo pipefail
OUT=docs/measurements/2026-12-06b
export OMP_NUM_THREADS=1
STEPS=${*:-trace ab goal load bf16}
for step in $STEPS; do
  date -u
  case $step in
    trace) .venv/bin/python docs/measurements/2026-12-06/gate_trace_mtbench.py 2>&1 | grep -v "Loading weights" | tee $OUT/gate_trace_mtbench.log ;;
    ab) .venv/bin/python docs/measurements/2026-12-05e/ab_lookup_b1.py 6 40 mt-bench,gsm8k,humaneval hardware \
          hardware:no-lookup fixed:1 2>&1 | grep -v "Loading weights" | tee $OUT/ab_lookup_b1.log ;;
    goal) .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --datasets mt-bench,gsm8k,humaneval --start 0 \
            --limit 20 --max-new-tokens 128 --policies hardware,hardware:no-lookup --baselines prompt-lookup --threads 1 \
            --out $OUT/bench_goal 2>&1 | grep -v "Loading weights" | tee $OUT/bench_goal.log ;;
    load) .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --concurrency 1,2,4,8,16 \
            --datasets mt-bench,gsm8k,humaneval --start 40 --limit 6 --max-new-tokens 64 \
            --policies fixed:1,fixed:3,hardware,hardware:no-lookup --repeats 3 --threads 1 \
            --out $OUT/load 2>&1 | grep -v "Loading weights" | tee $OUT/load.log ;;
    bf16) .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --datasets mt-bench,gsm8k,humaneval --start 0 \
            --limit 20 --max-new-tokens 128 --policies hardware --baselines none --dtype bfloat16-batched --threads 1 \
            --out $OUT/bench_bf16_batched 2>&1 | grep -v "Loading weights" | tee $OUT/bench_bf16_batched.log ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
date -u
