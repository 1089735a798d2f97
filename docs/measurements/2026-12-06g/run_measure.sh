#!/bin/bash
# Run u (2026-12-06, night; issue 14): the fifth training round of the default draft and its goal measurement, on the
# session's 2-vCPU Intel Xeon. RUNS holds prompts.jsonl and sd/distilled.jsonl of this round (run t drew the prompts:
# scripts/prepare_training_prompts.py --chat 4500 --writing 3500 --maths 600 --stdlib-code 600 --software 300 --seed 3
# --exclude prompts_used.jsonl; `RUNS=... bash scripts/continue_default_draft.sh distill` answered them, over runs t-u).
#   RUNS=/work/runs5 PREVIOUS=/work/runs4 bash docs/measurements/2026-12-06g/run_measure.sh mix   # training data
#   RUNS=/work/runs5 bash docs/measurements/2026-12-06g/run_measure.sh train  # both cores, ~30 min, resumes
#   RUNS=/work/runs5 bash docs/measurements/2026-12-06g/run_measure.sh curve  # held-out tau of the checkpoints
#   RUNS=/work/runs5 bash docs/measurements/2026-12-06g/run_measure.sh ab     # one process, quiet machine
#   RUNS=/work/runs5 bash docs/measurements/2026-12-06g/run_measure.sh goal   # one process, quiet machine
# `ab`: the fourth-round draft (shipped before this round; RUNS/shipped_r4 is a copy of it) and the new one side by
# side with plain decoding, the default policy and the whole block (always added), the issue's 60 prompts.
# `goal` is run t's goal configuration (docs/measurements/2026-12-06f/run_measure.sh goal) for the new draft.
# Run u ran mix, train, curve and ab (in that order), then `goal` on mt-bench only (DATASETS=mt-bench
# SUFFIX=_mtbench: the set below 1.5x before; the whole goal run did not fit in the session).
set -uo pipefail  # no -e: `dspark bench` exits 3 when it flags a mismatch (prompt lookup's)
cd "$(dirname "$0")/../../.."
ROOT=$PWD
RUNS=${RUNS:?set RUNS}
M=$ROOT/docs/measurements/2026-12-06g
ROUND="RUN=continued4 INIT=default INITIAL_TOKENS=6300186 STEPS=1400 LR=5e-4 DATA=sd_mix.jsonl"
for step in "$@"; do
  date -u
  case $step in
    mix) bash docs/measurements/2026-12-06e/run_measure.sh mix ;;  # run s's mix: this round + previous non-chat
    train) env $ROUND bash scripts/continue_default_draft.sh train
           cp $RUNS/continued4/train_config.json $RUNS/continued4/train_log.jsonl $M/ ;;
    curve) env $ROUND CURVE_PROMPTS=10 CURVE_A=400,800 CURVE_B=1200,1400 MEASUREMENTS=2026-12-06g \
             bash scripts/continue_default_draft.sh curve ;;
    ab) OMP_NUM_THREADS=1 .venv/bin/dspark bench --draft $RUNS/shipped_r4 --draft $RUNS/continued4/draft \
          --datasets mt-bench,gsm8k,humaneval --start 0 --limit 20 --max-new-tokens 128 --policies hardware \
          --baselines none --threads 1 --out $M/bench_ab 2>&1 | grep -v "Loading weights" | tee $M/bench_ab.log ;;
    goal) OMP_NUM_THREADS=1 .venv/bin/dspark bench --draft $RUNS/continued4/draft --datasets ${DATASETS:-mt-bench,gsm8k,humaneval} \
            --start 0 --limit 20 --max-new-tokens 128 --policies hardware,hardware:no-lookup --baselines prompt-lookup \
            --threads 1 --out $M/bench_goal${SUFFIX:-} 2>&1 | grep -v "Loading weights" | tee $M/bench_goal${SUFFIX:-}.log ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
date -u
