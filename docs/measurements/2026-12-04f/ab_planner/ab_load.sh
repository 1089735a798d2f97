#!/usr/bin/env bash
# A/B: the planner before (e145e07, worktree /work/wt_old) and after (main) on the real load bench, alternating.
cd /work/main
for pass in 1 2; do
  for side in old new; do
    src=/work/main/src; [ $side = old ] && src=/work/wt_old/src
    OMP_NUM_THREADS=1 PYTHONPATH=$src .venv/bin/python -m dspark_hf.cli bench --draft src/dspark_hf/bundled/default_draft --concurrency 2,8 \
      --datasets mt-bench,gsm8k,humaneval --start 40 --limit 6 --max-new-tokens 64 --policies hardware --repeats 2 --threads 1 \
      --out /work/diag/ab_$side$pass --no-plots 2>&1 | grep -E "^C=|^\| (2|8) \|" | sed "s/^/$side$pass /"
  done
done
