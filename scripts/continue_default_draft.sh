#!/bin/bash
# Continue the shipped default draft on more self-distilled data (issue 14, session of 2026-12-02 evening).
# Every stage resumes where it stopped when rerun (kill it at any time):
#   RUNS=/work/runs bash scripts/continue_default_draft.sh distill   # two one-thread shards, then merge
#   RUNS=/work/runs bash scripts/continue_default_draft.sh train     # DDP over two one-thread CPU processes
#   RUNS=/work/runs bash scripts/continue_default_draft.sh curve     # held-out tau of the checkpoints (two processes)
#   RUNS=/work/runs bash scripts/continue_default_draft.sh bench     # shipped vs continued vs plain, two prompt shards
#   RUNS=/work/runs bash scripts/continue_default_draft.sh quiet_bench  # issue 14's goal run (1 process, 20 per set)
#   RUNS=/work/runs bash scripts/continue_default_draft.sh optin_bench  # bf16 target with batched verification
#   RUNS=/work/runs bash scripts/continue_default_draft.sh load         # issue 15's load benchmark
# A further round continues the previous round's draft into a new run folder, e.g.
#   RUNS=/work/runs RUN=continued2 INIT=continued/draft INITIAL_TOKENS=2893860 STEPS=2000 LR=3e-4 bash ... train
# (INITIAL_TOKENS: answer tokens the INIT draft had seen, the previous curve's last point).
# On written answers instead of self-distilled ones (scripts/prepare_text_corpus.py), features computed online:
#   RUNS=/work/runs RUN=text DATA=corpus_mix.jsonl CACHE= STEPS=600 bash scripts/continue_default_draft.sh train
# RUNS must hold prompts.jsonl from scripts/prepare_training_prompts.py (see hub_cards/dspark_smollm2_135m.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:?set RUNS to the folder holding prompts.jsonl}
DSPARK=${DSPARK:-$ROOT/.venv/bin/dspark}
PY=${PY:-$ROOT/.venv/bin/python}
STEPS=${STEPS:-2000}
RUN=${RUN:-continued}          # run folder (checkpoints, draft)
INIT=${INIT:-default}          # the draft this round starts from
INITIAL_TOKENS=${INITIAL_TOKENS:-883000}  # answer tokens INIT had seen (the shipped draft: 883k)
cd "$RUNS"
distill() {  # self-distillation in bf16, prompts with index i mod 2 in process i; then one run merges the parts
  for i in 0 1; do
    OMP_NUM_THREADS=1 $DSPARK train --data prompts.jsonl --output-dir sd --self-distill --prepare-only \
      --distill-dtype bfloat16 --distill-batch-size 64 --max-new-tokens 224 --max-prompt-tokens 256 \
      --feature-cache cache --threads 1 --distill-shard $i/2 > sd_shard$i.log 2>&1 &
  done
  wait
  OMP_NUM_THREADS=2 $DSPARK train --data prompts.jsonl --output-dir sd --self-distill --prepare-only \
    --distill-dtype bfloat16 --distill-batch-size 64 --max-new-tokens 224 --max-prompt-tokens 256 \
    --feature-cache cache --threads 2 > sd_merge.log 2>&1
}
train() {  # warm start from the shipped draft (its shape and 8,192-token vocabulary kept); global batch 8
  OMP_NUM_THREADS=1 ACCELERATE_USE_CPU=1 $PY -m accelerate.commands.launch --multi_gpu --num_processes 2 \
    --num_machines 1 --dynamo_backend no -m dspark_hf.cli train \
    --data ${DATA:-sd/distilled.jsonl} --output-dir $RUN ${CACHE---feature-cache cache} --init-from $INIT \
    --num-anchors 32 --max-steps $STEPS --batch-size 4 --lr ${LR:-5e-4} --warmup-ratio 0.02 --seed 1 --cpu-bf16 \
    --save-every 200 --keep-checkpoints 20 --save-dtype bfloat16 --threads 1 --no-progress > $RUN.log 2>&1
}
M=$ROOT/docs/measurements/${MEASUREMENTS:-continued_default_draft}
curve() {  # held-out prompts 40-44 of each set (CURVE_PROMPTS: how many from 40), 64 tokens, whole block
  mkdir -p $M
  OMP_NUM_THREADS=1 $PY $ROOT/scripts/learning_curve.py --run $RUN --initial-tokens $INITIAL_TOKENS --threads 1 \
    --num-prompts ${CURVE_PROMPTS:-5} --steps ${CURVE_A:-0,400,800} --json $M/learning_curve_a.json > $M/learning_curve_a.log 2>&1 &
  OMP_NUM_THREADS=1 $PY $ROOT/scripts/learning_curve.py --run $RUN --initial-tokens $INITIAL_TOKENS --threads 1 \
    --num-prompts ${CURVE_PROMPTS:-5} --steps ${CURVE_B:-1200,$STEPS} --json $M/learning_curve_b.json > $M/learning_curve_b.log 2>&1 &
  wait
  $PY - "$M" <<'PY'
import json, sys
from pathlib import Path
m = Path(sys.argv[1])
a, b = (json.loads((m / f"learning_curve_{x}.json").read_text()) for x in "ab")
a["points"] = sorted(a["points"] + b["points"], key=lambda p: p["step"])
(m / "learning_curve.json").write_text(json.dumps(a, indent=1) + "\n")
for x in "ab":
    (m / f"learning_curve_{x}.json").unlink()
PY
}
bench() {  # the shipped and the continued draft side by side with plain decoding; two prompt shards at once
  mkdir -p $M
  OMP_NUM_THREADS=1 $DSPARK profile --threads 1 --dtype auto > $M/profile_auto.log 2>&1
  half=$(( ${LIMIT:-6} / 2 ))
  for shard in 0 1; do
    OMP_NUM_THREADS=1 $DSPARK bench --draft $ROOT/src/dspark_hf/bundled/default_draft --draft $RUN/draft \
      --datasets mt-bench,gsm8k,humaneval --start $(( shard * half )) --limit $half --max-new-tokens 128 \
      --policies whole,hardware --baselines none --threads 1 --no-plots --out bench_shard$shard > bench_shard$shard.log 2>&1 &
  done
  wait
  $DSPARK bench --merge bench_shard0 bench_shard1 --out $M/bench > $M/bench.log 2>&1
}
quiet_bench() {  # the issue's goal run: one process, one thread, machine otherwise quiet, 20 prompts per set
  mkdir -p $M
  OMP_NUM_THREADS=1 $DSPARK profile --threads 1 --dtype auto > $M/profile_auto.log 2>&1
  OMP_NUM_THREADS=1 $DSPARK bench --draft ${DRAFT:-$RUN/draft} --datasets mt-bench,gsm8k,humaneval \
    --start 0 --limit ${LIMIT:-20} --max-new-tokens 128 --policies ${POLICIES:-whole,hardware} --baselines prompt-lookup \
    --threads 1 --out $M/bench_quiet > $M/bench_quiet.log 2>&1
}
optin_bench() {  # the opt-in bf16 target (one batched verification forward): speed and identical-output rate
  mkdir -p $M
  OMP_NUM_THREADS=1 $DSPARK bench --draft ${DRAFT:-$RUN/draft} --datasets mt-bench,gsm8k,humaneval \
    --start 0 --limit ${LIMIT:-5} --max-new-tokens 128 --policies whole,hardware --baselines none \
    --dtype bfloat16-batched --threads 1 --out $M/bench_bfloat16-batched > $M/bench_bfloat16-batched.log 2>&1
}
load() {  # issue 15: the packed profile, then the load benchmark (float32, prompts 40-45 of each set)
  mkdir -p $M/load
  OMP_NUM_THREADS=1 $DSPARK profile --packed --requests 1,2,4,8,16 --context 256 --repeats 3 --warmup 1 \
    --dtype float32 --threads 1 > $M/load/packed_profile.txt 2>&1
  OMP_NUM_THREADS=1 $DSPARK bench --draft ${DRAFT:-$RUN/draft} --concurrency 1,2,4,8,16 \
    --datasets mt-bench,gsm8k,humaneval --start 40 --limit 6 --max-new-tokens 64 \
    --policies ${LOAD_POLICIES:-fixed:1,fixed:3,threshold:0.5,hardware} --threads 1 --out $M/load > $M/load/concurrency.log 2>&1
}
"$@"
