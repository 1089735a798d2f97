#!/bin/bash
# Run w (2026-12-07, issue 14): the goal configuration on this session's machine, a 2-vCPU Intel Xeon (family 6,
# model 207) that exposes AVX512-BF16 but not AMX (runs o-v had AMX-BF16), one thread, nothing else running.
#   bash docs/measurements/2026-12-07b/run_measure.sh machine forward profile goal
#   bash docs/measurements/2026-12-07b/run_measure.sh forward_kernels packed load kernels
# (run w ran these steps in this order; a first `kernels` run was repeated at the end: its log is the repeat)
# machine: lscpu (model, flags of interest)
# forward: forward_costs.py (the target's forward per dtype and row count, verification contexts as a DSpark call
#          enters them)
# profile: dspark profile --dtype auto (what `auto` picks here and the cost profile the hardware-aware policy reads)
# goal:    the issue's goal configuration with the shipped draft (60 prompts, 128 new tokens, greedy, default dtype),
#          with transformers' prompt lookup and plain generate on the DSpark call's kernels beside it
# packed:  dspark profile --packed (issue 15: the float32 packed cost curve of the batch engine on this machine)
# load:    issue 15's load benchmark as in runs o-p (1/2/4/8/16 requests at once, 18 prompts from 40, 64 new tokens,
#          three interleaved passes, the median pass)
# forward_kernels: forward_kernels.py (float32 forward with every layer on one kernel: F.linear, weight-major,
#          input-major; 1 and 2 threads)
# kernels: linear_shapes.py (per weight shape: F.linear / weight-major / input-major seconds at 1-8 rows, and which row
#          counts each gives bit-identical to one-row F.linear on the order-revealing probes)
set -uo pipefail  # no -e: `dspark bench` exits 3 when it flags a mismatch (prompt lookup's)
cd "$(dirname "$0")/../../.."
M=docs/measurements/2026-12-07b
for step in "$@"; do
  date -u
  case $step in
    machine) lscpu | grep -E "Model name|CPU family|Model:|Thread|^CPU\(s\)|L2|L3" | tee $M/machine.log
             echo "bf16/amx flags: $(grep -o -w -E 'avx512_bf16|amx_bf16|amx_tile|amx_int8' /proc/cpuinfo | sort -u | tr '\n' ' ')" | tee -a $M/machine.log ;;
    forward) OMP_NUM_THREADS=1 .venv/bin/python $M/forward_costs.py 1 2>&1 | grep -v "Loading weights\|FutureWarning\|forward_call" | tee $M/forward_costs.log ;;
    profile) OMP_NUM_THREADS=1 .venv/bin/dspark profile --threads 1 --dtype auto 2>&1 | grep -v "Loading weights" | tee $M/profile_auto.log ;;
    goal) OMP_NUM_THREADS=1 .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --datasets mt-bench,gsm8k,humaneval \
            --start 0 --limit 20 --max-new-tokens 128 --policies hardware --baselines prompt-lookup,plain-kernels \
            --threads 1 --out $M/bench_goal 2>&1 | grep -v "Loading weights" | tee $M/bench_goal.log ;;
    packed) OMP_NUM_THREADS=1 .venv/bin/dspark profile --packed --requests 1,2,4,8,16 --context 256 --repeats 3 --warmup 1 \
              --dtype float32 --threads 1 2>&1 | grep -v "Loading weights" | tee $M/profile_packed.log ;;
    load) OMP_NUM_THREADS=1 .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --concurrency 1,2,4,8,16 \
            --datasets mt-bench,gsm8k,humaneval --start 40 --limit 6 --max-new-tokens 64 \
            --policies fixed:1,fixed:3,hardware,hardware:no-lookup --repeats 3 --threads 1 \
            --out $M/load 2>&1 | grep -v "Loading weights" | tee $M/load.log ;;
    forward_kernels) for t in 1 2; do OMP_NUM_THREADS=$t .venv/bin/python $M/forward_kernels.py $t 2>&1 | grep -v "Loading weights"; done | tee $M/forward_kernels.log ;;
    kernels) OMP_NUM_THREADS=1 .venv/bin/python $M/linear_shapes.py 2>&1 | tee $M/linear_shapes.log ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
date -u
