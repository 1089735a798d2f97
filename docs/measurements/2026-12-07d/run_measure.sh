#!/bin/bash
# Run y (2026-12-07, issue 14): `--dtype auto` times float32 and exact bf16 interleaved (stored-costs version 6), on
# the 2-vCPU Intel Xeon without AMX (family 6, model 207; the host of runs w-x), one thread, nothing else running.
#   bash docs/measurements/2026-12-07d/run_measure.sh machine auto goal
# machine: lscpu (model, flags of interest)
# auto:    what `--dtype auto` takes (dspark profile --dtype auto, with a fresh dspark_hf cache folder holding only the
#          converted target, so that nothing measured is reused), three times, a few minutes apart
# goal:    the issue's goal configuration (20 prompts per set, 128 new tokens, greedy, default dtype: `auto` times the
#          dtypes at the start, in the user's cache, where no version-6 figures exist yet; the hardware policy reads
#          the cost profile stored for the dtype it takes; transformers' prompt lookup beside it)
# policies: the default policy against fixed lengths 1 and 2 (what it chooses between on this host's float32 curve),
#          7 prompts per set, default dtype (auto's stored choice), no baselines but plain
# load:    issue 15's load benchmark, run w's command unchanged (float32 target, the packed profile of run w, 18 prompts
#          from 40, 64 new tokens, all requests at once, three interleaved passes), a second sample on this host
set -uo pipefail  # no -e: a `dspark bench` that flags a mismatch exits 3 and the next step still runs
cd "$(dirname "$0")/../../.."
M=docs/measurements/2026-12-07d
for step in "$@"; do
  date -u
  case $step in
    machine) lscpu | grep -E "Model name|CPU family|Model:|Thread|^CPU\(s\)|L2|L3" | tee $M/machine.log
             echo "bf16/amx flags: $(grep -o -w -E 'avx512_bf16|amx_bf16|amx_tile|amx_int8' /proc/cpuinfo | sort -u | tr '\n' ' ')" | tee -a $M/machine.log ;;
    auto) for i in 1 2 3; do
            rm -rf /tmp/dspark_cache_run_y && mkdir -p /tmp/dspark_cache_run_y  # the converted target only is kept:
            cp -r "${DSPARK_HF_CACHE:-$HOME/.cache/dspark_hf}/smollm2-135m-instruct-f32" /tmp/dspark_cache_run_y/
            date -u
            DSPARK_HF_CACHE=/tmp/dspark_cache_run_y OMP_NUM_THREADS=1 .venv/bin/dspark profile --threads 1 --dtype auto 2>&1 \
              | grep -v "Loading weights" | grep -E "auto|dtype"
          done | tee $M/profile_auto.log ;;
    goal) OMP_NUM_THREADS=1 .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --datasets mt-bench,gsm8k,humaneval \
            --start 0 --limit 20 --max-new-tokens 128 --policies hardware --baselines prompt-lookup \
            --threads 1 --out $M/bench_goal 2>&1 | grep -v "Loading weights" | tee $M/bench_goal.log ;;
    policies) OMP_NUM_THREADS=1 .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --datasets mt-bench,gsm8k,humaneval \
            --start 0 --limit 7 --max-new-tokens 128 --policies hardware,fixed:1,fixed:2 --baselines none \
            --threads 1 --out $M/bench_policies 2>&1 | grep -v "Loading weights" | tee $M/bench_policies.log ;;
    load) OMP_NUM_THREADS=1 .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --concurrency 1,2,4,8,16 \
            --datasets mt-bench,gsm8k,humaneval --start 40 --limit 6 --max-new-tokens 64 \
            --policies fixed:1,fixed:3,hardware,hardware:no-lookup --repeats 3 --threads 1 \
            --out $M/load 2>&1 | grep -v "Loading weights" | tee $M/load.log ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
date -u
