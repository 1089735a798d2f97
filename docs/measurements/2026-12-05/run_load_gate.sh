#!/usr/bin/env bash
# Issue 15, 2026-12-05: the load benchmark of run_block_attention.sh again (block-diagonal attention, the same
# stored packed profile), writing $OUT/NAME and $OUT/NAME.log. Run on three versions of the step gate, one run
# each (this folder's README says which code each name measured): load_block_gate (intervals kept across
# calls), load_block_gate_plain and load_block_gate_plain2 (plain steps no request drafted priced too, the
# committed version, run twice). Run k (2026-12-05b) ran it twice more with OUT=docs/measurements/2026-12-05b
# (load_vocab_draw, load_vocab_draw2). Quiet machine, one thread. From the repository root:
#   [OUT=folder] bash docs/measurements/2026-12-05/run_load_gate.sh NAME
set -euo pipefail
NAME=${1:?usage: [OUT=folder] run_load_gate.sh NAME (the output folder under OUT, default docs/measurements/2026-12-05)}
OUT=${OUT:-docs/measurements/2026-12-05}
export OMP_NUM_THREADS=1
date -u
.venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --concurrency 1,2,4,8,16 --datasets mt-bench,gsm8k,humaneval \
    --start 40 --limit 6 --max-new-tokens 64 --policies fixed:1,fixed:3,hardware --repeats 3 --threads 1 \
    --out $OUT/$NAME 2>&1 | tee $OUT/$NAME.log
date -u
