#!/bin/bash
# Continue the shipped default draft on more self-distilled data (issue 14, session of 2026-12-02 evening).
# Every stage resumes where it stopped when rerun (kill it at any time):
#   RUNS=/work/runs bash scripts/continue_default_draft.sh distill   # two one-thread shards, then merge
#   RUNS=/work/runs bash scripts/continue_default_draft.sh train     # DDP over two one-thread CPU processes
#   RUNS=/work/runs bash scripts/continue_default_draft.sh curve     # held-out tau of the checkpoints
# RUNS must hold prompts.jsonl from scripts/prepare_training_prompts.py (see hub_cards/dspark_smollm2_135m.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:?set RUNS to the folder holding prompts.jsonl}
DSPARK=${DSPARK:-$ROOT/.venv/bin/dspark}
PY=${PY:-$ROOT/.venv/bin/python}
STEPS=${STEPS:-1400}
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
    --num_machines 1 --mixed_precision no --dynamo_backend no -m dspark_hf.cli train \
    --data sd/distilled.jsonl --output-dir continued --feature-cache cache --init-from default \
    --num-anchors 32 --max-steps $STEPS --batch-size 4 --lr 5e-4 --warmup-ratio 0.02 --seed 1 \
    --save-every 200 --keep-checkpoints 20 --save-dtype bfloat16 --threads 1 --no-progress > continued.log 2>&1
}
curve() {  # held-out prompts 40-44 of each set, 64 tokens, whole block; 883k = what the shipped draft had seen
  OMP_NUM_THREADS=1 $PY $ROOT/scripts/learning_curve.py --run continued --initial-tokens 883000 --threads 1 \
    --json $ROOT/docs/measurements/continued_default_draft/learning_curve.json ${CURVE_STEPS:+--steps $CURVE_STEPS}
}
"$@"
