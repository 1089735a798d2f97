#!/bin/bash
# Run x (2026-12-07, issue 14): on the 2-vCPU Intel Xeon without AMX (family 6, model 207; the host of run w), one
# thread, nothing else running: the default policy's speed in each dtype configuration, side by side.
#   bash docs/measurements/2026-12-07c/run_measure.sh machine profiles dtypes   (code at 25ea2e5)
#   bash docs/measurements/2026-12-07c/run_measure.sh auto                      (after auto's new score)
#   bash docs/measurements/2026-12-07c/run_measure.sh goal                      (at 1e82ebb, after the rehearsal)
# machine:  lscpu (model, flags of interest)
# profiles: dspark profile in float32 and in exact bfloat16 (row by row): the cost curves the hardware-aware policy
#           reads in each configuration, measured now
# dtypes:   one `dspark bench` per configuration (exact bf16 row by row, float32, the opt-in batched bf16), the same 21
#           prompts (7 per set from 0), 128 new tokens, greedy, the shipped draft, the default policy (whole always
#           runs beside it), each against plain decoding in its own dtype in the same run
# goal:     the issue's goal configuration (20 prompts per set; default dtype: `auto` times the dtypes at the start
#           under its new score; the hardware policy reads the cost profile of the `profiles` step; transformers'
#           prompt lookup beside it)
# auto:     what `--dtype auto` takes here once it scores the forwards of 1-4 new tokens (dspark profile --dtype auto,
#           with a fresh dspark_hf cache folder holding only the converted target, so that nothing measured is reused)
set -uo pipefail  # no -e: a `dspark bench` that flags a mismatch exits 3 and the next step still runs
cd "$(dirname "$0")/../../.."
M=docs/measurements/2026-12-07c
for step in "$@"; do
  date -u
  case $step in
    machine) lscpu | grep -E "Model name|CPU family|Model:|Thread|^CPU\(s\)|L2|L3" | tee $M/machine.log
             echo "bf16/amx flags: $(grep -o -w -E 'avx512_bf16|amx_bf16|amx_tile|amx_int8' /proc/cpuinfo | sort -u | tr '\n' ' ')" | tee -a $M/machine.log ;;
    profiles) for d in float32 bfloat16; do
                OMP_NUM_THREADS=1 .venv/bin/dspark profile --threads 1 --dtype $d 2>&1 | grep -v "Loading weights"
              done | tee $M/profiles.log ;;
    dtypes) for d in bfloat16 float32 bfloat16-batched; do
              OMP_NUM_THREADS=1 .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft \
                --datasets mt-bench,gsm8k,humaneval --start 0 --limit 7 --max-new-tokens 128 --policies hardware \
                --baselines none --dtype $d --threads 1 --out $M/bench_$d 2>&1 | grep -v "Loading weights" | tee $M/bench_$d.log
            done ;;
    auto) rm -rf /tmp/dspark_cache_run_x && mkdir -p /tmp/dspark_cache_run_x  # the converted target only is kept:
          cp -r "${DSPARK_HF_CACHE:-$HOME/.cache/dspark_hf}/smollm2-135m-instruct-f32" /tmp/dspark_cache_run_x/
          DSPARK_HF_CACHE=/tmp/dspark_cache_run_x OMP_NUM_THREADS=1 .venv/bin/dspark profile --threads 1 --dtype auto 2>&1 \
            | grep -v "Loading weights" | tee $M/profile_auto.log ;;
    goal) OMP_NUM_THREADS=1 .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --datasets mt-bench,gsm8k,humaneval \
            --start 0 --limit 20 --max-new-tokens 128 --policies hardware --baselines prompt-lookup \
            --threads 1 --out $M/bench_goal 2>&1 | grep -v "Loading weights" | tee $M/bench_goal.log ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
date -u
