#!/bin/bash
# What limits the default draft besides data (issue 14): draft layers and block size, at equal data,
# steps, seed and recipe. Every variant is trained from scratch on the same self-distilled set, and
# its held-out tau measured at every kept checkpoint (scripts/learning_curve.py). Each stage resumes
# where it stopped when rerun (dspark train continues from its last checkpoint; finished runs are skipped).
#   RUNS=/work/runs/abl bash scripts/draft_shape_ablation.sh data      # prompts + self-distillation (2 shards)
#   RUNS=/work/runs/abl bash scripts/draft_shape_ablation.sh train     # the variants, two at a time
#   RUNS=/work/runs/abl bash scripts/draft_shape_ablation.sh curve     # held-out tau, two at a time
# VARIANTS (name:layers:block[:method], method dspark by default), STEPS and CURVE_STEPS (e.g. 200,400;
# default every kept checkpoint) may be overridden; outputs: $RUNS/<name>/, curves in
# docs/measurements/${MEASUREMENTS:-draft_shape_ablation}/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:?set RUNS to a work folder}
DSPARK=${DSPARK:-$ROOT/.venv/bin/dspark}
PY=${PY:-$ROOT/.venv/bin/python}
STEPS=${STEPS:-400}
VARIANTS=${VARIANTS:-"l2b7:2:7 l3b7:3:7 l2b4:2:4 dflash_l2b7:2:7:dflash"}
M=$ROOT/docs/measurements/${MEASUREMENTS:-draft_shape_ablation}
mkdir -p "$RUNS"
cd "$RUNS"
distill_args="--data prompts.jsonl --output-dir sd --self-distill --prepare-only --distill-dtype bfloat16
  --distill-batch-size 64 --max-new-tokens 224 --max-prompt-tokens 256 --feature-cache cache"
data() {  # a quarter of the default draft's prompt mix (seed 0); one-thread shards, then the merge
  [ -d wheels ] || $PY -m pip download --no-deps -d wheels chitchat-dataset==0.9.0 mathgenerator==1.5.0 \
      more-itertools==11.2.1 toolz==1.2.0 boltons==26.2.0
  $PY -c "import scipy, sympy" 2>/dev/null || $PY -m pip install scipy sympy  # mathgenerator's generators import them
  [ -f prompts.jsonl ] || $PY $ROOT/scripts/prepare_training_prompts.py --wheels wheels --chat 800 --maths 800 \
      --code 400 --stdlib-code 800 --python-topics 40 --software 200 --out prompts.jsonl
  for i in 0 1; do
    OMP_NUM_THREADS=1 $DSPARK train $distill_args --threads 1 --distill-shard $i/2 > sd_shard$i.log 2>&1 &
  done
  wait
  OMP_NUM_THREADS=2 $DSPARK train $distill_args --threads 2 > sd_merge.log 2>&1
}
train_one() {  # name layers block [method]
  [ -f "$1/draft/model.safetensors" ] && return 0
  OMP_NUM_THREADS=1 $DSPARK train --data sd/distilled.jsonl --output-dir "$1" --feature-cache cache --method "${4:-dspark}" \
    --markov-head vanilla --markov-rank 64 --num-layers "$2" --block-size "$3" --target-layer-ids 1,8,14,20,27 \
    --num-anchors 32 --max-steps $STEPS --batch-size 8 --lr 1e-3 --warmup-ratio 0.04 --seed 0 --draft-vocab 8192 \
    --save-every $((STEPS / 4)) --keep-checkpoints 8 --save-dtype bfloat16 --threads 1 --no-progress > "$1.log" 2>&1
}
each_two() {  # run "$1 name layers block method" for every variant, two at a time
  local n=0
  for v in $VARIANTS; do
    IFS=: read -r name layers block method <<< "$v"
    $1 "$name" "$layers" "$block" "${method:-dspark}" &
    n=$((n + 1))
    if [ $((n % 2)) -eq 0 ]; then wait; fi
  done
  wait
}
curve_one() {
  mkdir -p "$M"
  [ -f "$M/$1.json" ] && return 0
  OMP_NUM_THREADS=1 $PY $ROOT/scripts/learning_curve.py --run "$1" --start 40 --num-prompts 5 --max-new-tokens 64 \
    --threads 1 ${CURVE_STEPS:+--steps $CURVE_STEPS} --json "$M/$1.json" > "$M/$1.log" 2>&1
}
case "${1:?data|train|curve}" in
  data) data ;;
  train) each_two train_one ;;
  curve) each_two curve_one ;;
  *) echo "unknown stage $1 (data, train or curve)" >&2; exit 2 ;;
esac
