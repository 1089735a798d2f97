#!/usr/bin/env bash
# Run t (2026-12-06, evening; issue 14): the goal configuration of the issue for the shipped (fourth-round) draft,
# measured on the session's 2-vCPU Intel Xeon, one thread, nothing else running:
#   goal: the default policy (hardware), the same without lookup rounds (hardware:no-lookup), the whole block
#         (always added) and transformers' prompt lookup, side by side with plain decoding; default dtype (auto)
#   bf16: the opt-in bf16 target with one batched verification forward (--dtype bfloat16-batched): its speed
#         against plain bf16 decoding and how many outputs stay identical
# From the repository root: bash docs/measurements/2026-12-06f/run_measure.sh [goal] [bf16]
# Both read the stored cost profile (~/.cache/dspark_hf/profiles/, run r's bf16 row-by-row profile, a copy here).
set -uo pipefail  # no -e: `dspark bench` exits 3 when it flags a mismatch (prompt lookup's), and the next step still runs
OUT=docs/measurements/2026-12-06f
export OMP_NUM_THREADS=1
STEPS=${*:-goal bf16}
for step in $STEPS; do
  date -u
  case $step in
    goal) .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --datasets mt-bench,gsm8k,humaneval --start 0 \
            --limit 20 --max-new-tokens 128 --policies hardware,hardware:no-lookup --baselines prompt-lookup --threads 1 \
            --out $OUT/bench_goal 2>&1 | grep -v "Loading weights" | tee $OUT/bench_goal.log ;;
    bf16) .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --datasets mt-bench,gsm8k,humaneval --start 0 \
            --limit 20 --max-new-tokens 128 --policies hardware --baselines none --dtype bfloat16-batched --threads 1 \
            --out $OUT/bench_bf16_batched 2>&1 | grep -v "Loading weights" | tee $OUT/bench_bf16_batched.log ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
date -u
