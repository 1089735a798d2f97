#!/bin/bash
# The three-way drafter comparison of issue 16 (docs/benchmarks.md, "DSpark vs DFlash vs EAGLE-3"):
# DSpark, DFlash and EAGLE-3 drafts for the bundled SmolLM2 target, trained on the same distilled data,
# the same steps, the same seed and the same sampled positions, then benchmarked side by side.
#   RUNS=/work/runs bash scripts/three_way.sh train     # three trainings at once, one thread each (resumable)
#   RUNS=/work/runs bash scripts/three_way.sh bench     # dspark bench, two prompt shards at once, then merged
# RUNS must hold sd/distilled.jsonl and the feature cache `cache` (dspark train --self-distill --prepare-only,
# the command of hub_cards/dspark_smollm2_135m.md).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:?set RUNS to the folder holding sd/distilled.jsonl and cache/}
DSPARK=${DSPARK:-$PWD/.venv/bin/dspark}
STEPS=${STEPS:-200}
LIMIT=${LIMIT:-20}
OUT=${OUT:-docs/measurements/three_way}
common=(--data "$RUNS/sd/distilled.jsonl" --feature-cache "$RUNS/cache" --num-anchors 32 --batch-size 8 --lr 1e-3
        --warmup-ratio 0.04 --seed 0 --target-layer-ids 1,8,14,20,27 --max-steps "$STEPS" --save-every 50
        --save-dtype bfloat16 --threads 1 --no-progress)
case "${1:-}" in
train)
  "$DSPARK" train "${common[@]}" --output-dir "$RUNS/three_way/dspark" --method dspark --markov-head vanilla \
      --markov-rank 64 --num-layers 2 --block-size 7 > "$RUNS/three_way_dspark.log" 2>&1 &
  "$DSPARK" train "${common[@]}" --output-dir "$RUNS/three_way/dflash" --method dflash --num-layers 2 --block-size 7 \
      > "$RUNS/three_way_dflash.log" 2>&1 &
  "$DSPARK" train "${common[@]}" --output-dir "$RUNS/three_way/eagle3" --method eagle3 --eagle3-positions anchors \
      --ttt-length 7 > "$RUNS/three_way_eagle3.log" 2>&1 &
  wait
  ;;
bench)
  mkdir -p "$OUT"
  drafts=(--draft "$RUNS/three_way/dspark/draft" --draft "$RUNS/three_way/dflash/draft" --draft "$RUNS/three_way/eagle3/draft")
  half=$(( LIMIT / 2 ))
  for shard in 0 1; do
    "$DSPARK" bench "${drafts[@]}" --datasets mt-bench,gsm8k,humaneval --start $(( shard * half )) --limit $half \
        --max-new-tokens 128 --policies whole --dflash-policies whole --baselines none --threads 1 --no-plots \
        --out "$RUNS/three_way/bench_shard$shard" > "$RUNS/three_way/bench_shard$shard.log" 2>&1 &
  done
  wait
  "$DSPARK" bench --merge "$RUNS/three_way/bench_shard0" "$RUNS/three_way/bench_shard1" --out "$OUT" > "$OUT/bench.log" 2>&1
  ;;
*) echo "usage: RUNS=DIR bash scripts/three_way.sh train|bench" >&2; exit 2 ;;
esac
