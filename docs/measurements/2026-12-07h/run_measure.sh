#!/usr/bin/env bash
# Session of 2026-12-07 (run ac) measurements, from the repository root, nothing else running:
#   bash docs/measurements/2026-12-07h/run_measure.sh machine profile load load2 c1sep split setup goal bf16
# machine: the host (CPU model, flags that matter, memory)
# profile: the packed cost profile of the engine's float32 target (the cache was empty on this host)
# load:    issue 15's load benchmark, runs aa/ab's command (closed loop, 8 requests per level, two interleaved passes)
# load2:   the same again (a second sample), into load2/
# c1sep:   one request: the engine against the batch-1 path on 18 prompts, each with its own copy of the draft
#          (run ab's script, docs/measurements/2026-12-07g/c1_engine_vs_batch1.py)
# split:   one request: where a step's time goes on the two paths (target and draft forwards, the rest; engine_step_split.py)
# setup:   what a manager costs around its requests (manager_setup_cost.py)
# goal:    issue 14's goal configuration (20 prompts per set, 128 new tokens, default dtype, one thread), the default
#          policy with prompt lookup and plain generate on the verification kernels beside it
# bf16:    the same prompts with the opt-in bf16 target verified in one batched forward (not always identical)
cd "$(dirname "$0")/../../.."
M=docs/measurements/2026-12-07h
for step in "$@"; do
  case $step in
    machine) { date -u; lscpu | grep -E "Model name|Model:|^CPU\(s\)|Thread"; grep -o -w -E 'avx512_bf16|amx_bf16|amx_tile|avx512f' /proc/cpuinfo | sort -u | tr '\n' ' '; echo;
               free -g | head -2; git log --oneline | head -1; git status --short | head; } > $M/machine.log 2>&1; cat $M/machine.log ;;
    profile) OMP_NUM_THREADS=1 .venv/bin/dspark profile --packed --dtype float32 --threads 1 2>&1 | grep -v "Loading weights" > $M/profile_packed.log ;;
    load|load2) OMP_NUM_THREADS=1 .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --concurrency 1,2,4,8,16 \
            --datasets mt-bench,gsm8k,humaneval --start 40 --limit 6 --max-new-tokens 64 \
            --policies fixed:1,fixed:3,hardware --requests 8 --repeats 2 --threads 1 \
            --out $M/$step 2>&1 | grep -v "Loading weights" > $M/$step.log ;;
    c1sep) OMP_NUM_THREADS=1 PYTHONPATH=tests .venv/bin/python docs/measurements/2026-12-07g/c1_engine_vs_batch1.py hardware 6 separate 2>&1 \
          | grep -v "Loading weights" > $M/c1_separate.log ;;
    split) OMP_NUM_THREADS=1 .venv/bin/python $M/engine_step_split.py 3 2>&1 | grep -v "Loading weights" > $M/engine_step_split.log ;;
    setup) OMP_NUM_THREADS=1 .venv/bin/python $M/manager_setup_cost.py 2>&1 | grep -v "Loading weights" > $M/manager_setup_cost.log ;;
    goal) OMP_NUM_THREADS=1 .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --datasets mt-bench,gsm8k,humaneval \
            --start 0 --limit 20 --max-new-tokens 128 --policies hardware --baselines prompt-lookup,plain-kernels \
            --threads 1 --out $M/bench_goal 2>&1 | grep -v "Loading weights" > $M/bench_goal.log ;;
    bf16) OMP_NUM_THREADS=1 .venv/bin/dspark bench --draft src/dspark_hf/bundled/default_draft --datasets mt-bench,gsm8k,humaneval \
            --start 0 --limit 20 --max-new-tokens 128 --policies hardware --baselines none --dtype bfloat16-batched \
            --threads 1 --out $M/bench_bf16_batched 2>&1 | grep -v "Loading weights" > $M/bench_bf16_batched.log ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
