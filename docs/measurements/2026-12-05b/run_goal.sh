#!/usr/bin/env bash
# Issue 14, 2026-12-05 run k: the speed issue's goal run again (the command of 2026-12-04e, run e), after runs f-k
# (batch-1 gate keeping its probe interval across calls, the reduced-vocabulary draw). The cost profile is
# measured again first, since a drafting round got cheaper. Quiet machine, one thread. From the repository root:
#   bash docs/measurements/2026-12-05b/run_goal.sh
set -euo pipefail
OUT=docs/measurements/2026-12-05b
export OMP_NUM_THREADS=1
date -u
.venv/bin/dspark profile --threads 1 --dtype auto 2>&1 | tee $OUT/profile_auto.log
date -u
.venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --datasets mt-bench,gsm8k,humaneval --start 0 \
    --limit 20 --max-new-tokens 128 --policies hardware,fixed:1 --baselines prompt-lookup --threads 1 \
    --out $OUT/bench_goal 2>&1 | tee $OUT/bench_goal.log
date -u
