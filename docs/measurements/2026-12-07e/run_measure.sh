#!/bin/bash
# Run z (2026-12-07, issue 14): the compiled few-row float32 kernel (src/dspark_hf/integration/few_row_kernel.py), on
# the 2-vCPU Intel Xeon without AMX (family 6, model 207; the host of runs w-y), one thread, nothing else running.
#   bash docs/measurements/2026-12-07e/run_measure.sh machine few_rows profile ab     (first, 12:13-12:37 UTC, at 7a6ac32:
#     the weight-major/compiled choice measured at 1-9 rows)
#   bash docs/measurements/2026-12-07e/run_measure.sh goal packed load                (then, at the commit after: 1-16 rows)
# machine:  lscpu (model, flags of interest)
# few_rows: the target's linear layers alone, three kernels, 1-16 rows (few_rows.py)
# profile:  `dspark profile --threads 1` in a fresh cache holding only the converted target: the weight-major/compiled
#           measurement of each row count (its line) and the cost curve of the verification forward measured with it
# ab:       the default policy with the kernels chosen here, without the compiled kernel (+no-few-row: weight-major
#           product where faster, as before run z) and with F.linear everywhere (+F.linear), side by side in one
#           `dspark bench` run: 7 prompts per set, 128 new tokens, greedy, default dtype (auto, measured at the start)
# goal:     the issue's goal configuration (run y's command: 20 prompts per set, 128 new tokens, prompt lookup beside)
# packed:   the packed cost curve of the batch engine (run w's command), now with the compiled kernel (key __wmc)
# load:     issue 15's load benchmark (run w's and y's command)
set -uo pipefail  # no -e: a `dspark bench` that flags a mismatch exits 3 and the next step still runs
cd "$(dirname "$0")/../../.."
M=docs/measurements/2026-12-07e
for step in "$@"; do
  date -u
  case $step in
    machine) lscpu | grep -E "Model name|CPU family|Model:|Thread|^CPU\(s\)|L2|L3" | tee $M/machine.log
             echo "bf16/amx flags: $(grep -o -w -E 'avx512_bf16|amx_bf16|amx_tile|amx_int8' /proc/cpuinfo | sort -u | tr '\n' ' ')" | tee -a $M/machine.log ;;
    few_rows) OMP_NUM_THREADS=1 .venv/bin/python $M/few_rows.py 2>&1 | grep -v "Loading weights" | tee $M/few_rows.log ;;
    profile) rm -rf /tmp/dspark_cache_run_z && mkdir -p /tmp/dspark_cache_run_z
             cp -r "${DSPARK_HF_CACHE:-$HOME/.cache/dspark_hf}/smollm2-135m-instruct-f32" /tmp/dspark_cache_run_z/
             DSPARK_HF_CACHE=/tmp/dspark_cache_run_z OMP_NUM_THREADS=1 .venv/bin/dspark profile --threads 1 --dtype float32 2>&1 \
               | grep -v "Loading weights" | tee $M/profile.log ;;
    ab) OMP_NUM_THREADS=1 .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --datasets mt-bench,gsm8k,humaneval \
          --start 0 --limit 7 --max-new-tokens 128 --policies hardware --baselines none --linear-ablation \
          --threads 1 --out $M/bench_ab 2>&1 | grep -v "Loading weights" | tee $M/bench_ab.log ;;
    goal) rm -f "${DSPARK_HF_CACHE:-$HOME/.cache/dspark_hf}"/profiles/*__float32__wmc.json  # profiled again on the 1-16-row choice
          OMP_NUM_THREADS=1 .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --datasets mt-bench,gsm8k,humaneval \
            --start 0 --limit 20 --max-new-tokens 128 --policies hardware --baselines prompt-lookup \
            --threads 1 --out $M/bench_goal 2>&1 | grep -v "Loading weights" | tee $M/bench_goal.log ;;
    packed) OMP_NUM_THREADS=1 .venv/bin/dspark profile --packed --requests 1,2,4,8,16 --context 256 --repeats 3 --warmup 1 --dtype float32 \
              --threads 1 2>&1 | grep -v "Loading weights" | tee $M/profile_packed.log ;;
    load) OMP_NUM_THREADS=1 .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --concurrency 1,2,4,8,16 \
            --datasets mt-bench,gsm8k,humaneval --start 40 --limit 6 --max-new-tokens 64 \
            --policies fixed:1,fixed:3,hardware,hardware:no-lookup --repeats 3 --threads 1 \
            --out $M/load 2>&1 | grep -v "Loading weights" | tee $M/load.log ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
date -u
