#!/usr/bin/env bash
# Issue 15, 2026-12-05 run k: the load benchmark of 2026-12-05/run_load_gate.sh (same command) after the reduced-
# vocabulary draw (blocks drawn among the draft's 8,192 ids, target-vocabulary logits built only when read).
# Quiet machine, one thread. From the repository root:  bash docs/measurements/2026-12-05b/run_load.sh NAME
set -euo pipefail
NAME=${1:?usage: run_load.sh NAME (the output folder under docs/measurements/2026-12-05b)}
OUT=docs/measurements/2026-12-05b
export OMP_NUM_THREADS=1
date -u
.venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --concurrency 1,2,4,8,16 --datasets mt-bench,gsm8k,humaneval \
    --start 40 --limit 6 --max-new-tokens 64 --policies fixed:1,fixed:3,hardware --repeats 3 --threads 1 \
    --out $OUT/$NAME 2>&1 | tee $OUT/$NAME.log
date -u
