#!/usr/bin/env bash
# Issue 15, 2026-12-05: a second run of run_gate_plain.sh (same code, 08:55 UTC), the load benchmark of run_gate_calls.sh again, with the step gates also pricing the plain steps
# that no request chose to draft (DraftingGate.measure_plain), besides keeping their probe interval across calls
# (and a gate over a batch its exploration interval). Quiet machine, one thread. From the repository root:
#   bash docs/measurements/2026-12-05/run_gate_plain2.sh
set -euo pipefail
OUT=docs/measurements/2026-12-05
export OMP_NUM_THREADS=1
date -u
.venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --concurrency 1,2,4,8,16 --datasets mt-bench,gsm8k,humaneval \
    --start 40 --limit 6 --max-new-tokens 64 --policies fixed:1,fixed:3,hardware --repeats 3 --threads 1 \
    --out $OUT/load_block_gate_plain2 2>&1 | tee $OUT/load_block_gate_plain2.log
date -u
