#!/bin/bash
# Run r (2026-12-06): the third round of the default draft (issue 14), measured on the session's 2-vCPU Intel Xeon.
#   RUNS=/work/runs bash docs/measurements/2026-12-06d/run_measure.sh curve   # held-out tau, two processes
#   RUNS=/work/runs bash docs/measurements/2026-12-06d/run_measure.sh bench   # one process, quiet machine
# RUNS holds continued2/ (scripts/continue_default_draft.sh train with RUN=continued2) and shipped_prev/ (a copy
# of the draft shipped before this round).
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$PWD
RUNS=${RUNS:?set RUNS}
M=$ROOT/docs/measurements/2026-12-06d
PY=$ROOT/.venv/bin/python
DSPARK=$ROOT/.venv/bin/dspark
curve() {  # prompts 40-49 of each set, 64 new tokens, greedy, whole block, default dtype
  cd "$RUNS"
  OMP_NUM_THREADS=1 $PY $ROOT/scripts/learning_curve.py --run continued2 --initial-tokens 2893860 --threads 1 \
    --num-prompts 10 --steps 0,400,800 --json $M/curve_a.json > $M/curve_a.log 2>&1 &
  OMP_NUM_THREADS=1 $PY $ROOT/scripts/learning_curve.py --run continued2 --initial-tokens 2893860 --threads 1 \
    --num-prompts 10 --steps 1200,1600 --json $M/curve_b.json > $M/curve_b.log 2>&1 &
  wait
}
bench() {  # the previous and the new draft side by side with plain decoding, one process, one thread
  OMP_NUM_THREADS=1 $DSPARK profile --threads 1 --dtype auto > $M/profile_auto.log 2>&1
  OMP_NUM_THREADS=1 $DSPARK bench --draft $RUNS/shipped_prev --draft $RUNS/continued2/draft \
    --datasets mt-bench,gsm8k,humaneval --start 0 --limit ${LIMIT:-20} --max-new-tokens 128 \
    --policies hardware,whole --baselines none --threads 1 --no-plots --out $M/bench_ab > $M/bench_ab.log 2>&1
}
"$@"
