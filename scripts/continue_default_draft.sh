#!/bin/bash
# Continue the shipped default draft on more self-distilled data (issue 14, session of 2026-12-02 evening).
# Every stage resumes where it stopped when rerun (kill it at any time):
#   RUNS=/work/runs bash scripts/continue_default_draft.sh distill   # two one-thread shards, then merge
#   RUNS=/work/runs bash scripts/continue_default_draft.sh train     # DDP over two one-thread CPU processes
#   RUNS=/work/runs bash scripts/continue_default_draft.sh curve     # held-out tau of the checkpoints (two processes)
#   RUNS=/work/runs bash scripts/continue_default_draft.sh bench     # shipped vs continued vs plain, two prompt shards
# RUNS must hold prompts.jsonl from scripts/prepare_training_prompts.py (see hub_cards/dspark_smollm2_135m.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:?set RUNS to the folder holding prompts.jsonl}
DSPARK=${DSPARK:-$ROOT/.venv/bin/dspark}
PY=${PY:-$ROOT/.venv/bin/python}
STEPS=${STEPS:-2000}
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
    --data sd/distilled.jsonl --output-dir continued --feature-cache cache --init-from default \
    --num-anchors 32 --max-steps $STEPS --batch-size 4 --lr 5e-4 --warmup-ratio 0.02 --seed 1 --cpu-bf16 \
    --save-every 200 --keep-checkpoints 20 --save-dtype bfloat16 --threads 1 --no-progress > continued.log 2>&1
}
M=$ROOT/docs/measurements/continued_default_draft
curve() {  # held-out prompts 40-44 of each set, 64 tokens, whole block; 883k = what the shipped draft had seen
  mkdir -p $M
  OMP_NUM_THREADS=1 $PY $ROOT/scripts/learning_curve.py --run continued --initial-tokens 883000 --threads 1 \
    --steps ${CURVE_A:-0,400,800} --json $M/learning_curve_a.json > $M/learning_curve_a.log 2>&1 &
  OMP_NUM_THREADS=1 $PY $ROOT/scripts/learning_curve.py --run continued --initial-tokens 883000 --threads 1 \
    --steps ${CURVE_B:-1200,$STEPS} --json $M/learning_curve_b.json > $M/learning_curve_b.log 2>&1 &
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
    OMP_NUM_THREADS=1 $DSPARK bench --draft $ROOT/src/dspark_hf/bundled/default_draft --draft continued/draft \
      --datasets mt-bench,gsm8k,humaneval --start $(( shard * half )) --limit $half --max-new-tokens 128 \
      --policies whole,hardware --baselines none --threads 1 --no-plots --out bench_shard$shard > bench_shard$shard.log 2>&1 &
  done
  wait
  $DSPARK bench --merge bench_shard0 bench_shard1 --out $M/bench > $M/bench.log 2>&1
}
"$@"
