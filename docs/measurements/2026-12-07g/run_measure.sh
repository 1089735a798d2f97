#!/usr/bin/env bash
# Session of 2026-12-07 (run ab) measurements, from the repository root, nothing else running:
#   bash docs/measurements/2026-12-07g/run_measure.sh machine c1 load c1sep load2 costs after
# machine: the host (CPU model, flags that matter, memory)
# c1:      one request: the engine against the batch-1 path on 18 prompts (6 per set from 40), alternating
# c1sep:   the same with a separate copy of the draft for the engine (no gate or estimates shared between the paths)
# costs:   one request: each kind of round's cost on the two paths, and the gates at the end (9 prompts, separate drafts)
# after:   c1sep and costs again after the engine's policy reads the profile of its own verification forwards
#          (into c1_separate_after.log, c1_step_costs_after.log)
# load:    issue 15's load benchmark, run aa's command (closed loop, 8 requests per level, two interleaved passes)
# load2:   the same again (a second sample), into load2/
cd "$(dirname "$0")/../../.."
M=docs/measurements/2026-12-07g
for step in "$@"; do
  case $step in
    machine) { date -u; lscpu | grep -E "Model name|Model:|^CPU\(s\)|Thread"; grep -o -w -E 'avx512_bf16|amx_bf16|amx_tile|avx512f' /proc/cpuinfo | sort -u | tr '\n' ' '; echo;
               free -g | head -2; git log --oneline | head -1; git status --short | head; } > $M/machine.log 2>&1; cat $M/machine.log ;;
    c1) OMP_NUM_THREADS=1 PYTHONPATH=tests .venv/bin/python $M/c1_engine_vs_batch1.py hardware 6 2>&1 \
          | grep -v "Loading weights" > $M/c1.log ;;
    c1sep) OMP_NUM_THREADS=1 PYTHONPATH=tests .venv/bin/python $M/c1_engine_vs_batch1.py hardware 6 separate 2>&1 \
          | grep -v "Loading weights" > $M/c1_separate.log ;;
    costs) OMP_NUM_THREADS=1 PYTHONPATH=tests .venv/bin/python $M/c1_step_costs.py 3 2>&1 \
          | grep -v "Loading weights" > $M/c1_step_costs.log ;;
    after) OMP_NUM_THREADS=1 PYTHONPATH=tests .venv/bin/python $M/c1_engine_vs_batch1.py hardware 6 separate 2>&1 \
          | grep -v "Loading weights" > $M/c1_separate_after.log
           OMP_NUM_THREADS=1 PYTHONPATH=tests .venv/bin/python $M/c1_step_costs.py 3 2>&1 \
          | grep -v "Loading weights" > $M/c1_step_costs_after.log ;;
    load) OMP_NUM_THREADS=1 .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --concurrency 1,2,4,8,16 \
            --datasets mt-bench,gsm8k,humaneval --start 40 --limit 6 --max-new-tokens 64 \
            --policies fixed:1,fixed:3,hardware --requests 8 --repeats 2 --threads 1 \
            --out $M/load 2>&1 | grep -v "Loading weights" > $M/load.log ;;
    load2) OMP_NUM_THREADS=1 .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --concurrency 1,2,4,8,16 \
            --datasets mt-bench,gsm8k,humaneval --start 40 --limit 6 --max-new-tokens 64 \
            --policies fixed:1,fixed:3,hardware --requests 8 --repeats 2 --threads 1 \
            --out $M/load2 2>&1 | grep -v "Loading weights" > $M/load2.log ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
