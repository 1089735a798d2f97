#!/usr/bin/env bash
# Session of 2026-12-07 (run aa) measurements, from the repository root, nothing else running:
#   bash docs/measurements/2026-12-07f/run_measure.sh machine load
# machine: the host (CPU model, flags that matter, memory)
# load:    issue 15's load benchmark in a closed loop (--requests 8: every level rests on 8 requests; at C=1 the
#          engine and the batch-1 path each serve the same 8 prompts in turn), two interleaved passes
cd "$(dirname "$0")/../../.."
M=docs/measurements/2026-12-07f
for step in "$@"; do
  case $step in
    machine) { date -u; lscpu | grep -E "Model name|Model:|^CPU\(s\)|Thread"; grep -o -w -E 'avx512_bf16|amx_bf16|amx_tile|avx512f' /proc/cpuinfo | sort -u | tr '\n' ' '; echo;
               free -g | head -2; git log --oneline | head -1; } > $M/machine.log 2>&1; cat $M/machine.log ;;
    load) OMP_NUM_THREADS=1 .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --concurrency 1,2,4,8,16 \
            --datasets mt-bench,gsm8k,humaneval --start 40 --limit 6 --max-new-tokens 64 \
            --policies fixed:1,fixed:3,hardware --requests 8 --repeats 2 --threads 1 \
            --out $M/load 2>&1 | grep -v "Loading weights" > $M/load.log ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
