#!/bin/bash
# Run v (2026-12-07, issue 14): exact weight-major layers in bf16 row-by-row verification (3f7ac43), measured on the
# session's 2-vCPU Intel Xeon (AMX), one thread, nothing else running.
#   bash docs/measurements/2026-12-07/run_measure.sh forward profile goal
# forward: forward_ab.py (the target's forward before / after, interleaved in one process)
# round costs (not a step: reads the goal bench's records): for m in "dspark[default_draft]:hardware" \
#   "dspark[default_draft]:hardware+F.linear"; do python docs/measurements/2026-12-06f/round_costs.py \
#   docs/measurements/2026-12-07/bench_goal/runs.jsonl.gz "$m"; done > docs/measurements/2026-12-07/round_costs.log
# profile: dspark profile --dtype auto (the cost profile the hardware-aware policy reads, key __rows_wm)
# goal:    the issue's goal configuration with the shipped draft, plus plain generate on the same kernels
#          (--baselines plain-kernels: what the kernels give without drafting) and every DSpark policy again with
#          F.linear layers (--linear-ablation: +F.linear, the verification as it was before 3f7ac43).
# bf16:    the opt-in bf16 target (--dtype bfloat16-batched: one batched verification forward, not always identical)
# Run v ran forward, profile, goal, then bf16 (after the rehearsal).
set -uo pipefail  # no -e: `dspark bench` exits 3 when it flags a mismatch (prompt lookup's)
cd "$(dirname "$0")/../../.."
M=docs/measurements/2026-12-07
for step in "$@"; do
  date -u
  case $step in
    forward) OMP_NUM_THREADS=1 .venv/bin/python $M/forward_ab.py 2>&1 | grep -v "Loading weights\|FutureWarning\|forward_call" | tee $M/forward_ab.log ;;
    profile) OMP_NUM_THREADS=1 .venv/bin/dspark profile --threads 1 --dtype auto 2>&1 | grep -v "Loading weights" | tee $M/profile_auto.log ;;
    goal) OMP_NUM_THREADS=1 .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --datasets ${DATASETS:-mt-bench,gsm8k,humaneval} \
            --start 0 --limit ${LIMIT:-20} --max-new-tokens 128 --policies hardware --baselines prompt-lookup,plain-kernels \
            --linear-ablation --threads 1 --out $M/bench_goal${SUFFIX:-} 2>&1 | grep -v "Loading weights" | tee $M/bench_goal${SUFFIX:-}.log ;;
    bf16) OMP_NUM_THREADS=1 .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --datasets mt-bench,gsm8k,humaneval \
            --start 0 --limit 20 --max-new-tokens 128 --policies hardware --baselines none --dtype bfloat16-batched \
            --threads 1 --out $M/bench_bf16_batched 2>&1 | grep -v "Loading weights" | tee $M/bench_bf16_batched.log ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
date -u
