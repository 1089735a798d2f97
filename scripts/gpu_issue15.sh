#!/usr/bin/env bash
# Issue 15's GPU measurements in one run (docs/batching.md, "Cost mode over a batch"):
#   1. the throughput / per-user-speed frontier in cost mode: a Qwen3-8B-shaped random-weight target in bf16,
#      R = 1..64, acceptance scripted from calibrated confidences (scripts/gpu_frontier.py);
#   2. the engine's identity check on the GPU in float32 (a Qwen3-0.6B-shaped random target, R = 1, 4, 16),
#      where rounding cannot explain a mismatch the way bf16's can.
# On the device machine, from the repository root ($OUT: where results go; .whl carried, holding
# transformers 5.24.0 and regex wheels, used when the image's transformers is another release):
#   bash scripts/gpu_issue15.sh 2>&1 | tee $OUT/run.log
# CPU dry run of the same steps: DEVICE=cpu SHAPE=tiny CHECK_SHAPE=tiny NEW_TOKENS=16 CONCURRENCY=1,2 bash scripts/gpu_issue15.sh
set -u
OUT=${OUT:-/tmp/gpu_issue15}
DEVICE=${DEVICE:-cuda}
SHAPE=${SHAPE:-qwen3-8b}
CHECK_SHAPE=${CHECK_SHAPE:-qwen3-0.6b}
NEW_TOKENS=${NEW_TOKENS:-128}
CONCURRENCY=${CONCURRENCY:-1,2,4,8,16,32,64}
PROFILE_REPEATS=${PROFILE_REPEATS:-5}
CHECK=${CHECK:-1}   # 0: leave out step 2
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
PY=${PY:-python3}

if ! $PY -c "import sys, transformers; sys.exit(0 if transformers.__version__.startswith('5.24.') else 1)"; then
  echo "installing the carried wheels (the batch engine is tested on transformers 5.24 only)"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=src:/tmp/site
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
$PY -c "import platform, torch, transformers; print('python', platform.python_version(), 'torch', torch.__version__, 'transformers', transformers.__version__, 'cpus', __import__('os').cpu_count())"

echo "== 1. frontier: $SHAPE, bfloat16, $DEVICE, C = $CONCURRENCY"
timeout "${FRONTIER_SECONDS:-420}" $PY scripts/gpu_frontier.py --shape "$SHAPE" --device "$DEVICE" --dtype bfloat16 \
  --concurrency "$CONCURRENCY" --new-tokens "$NEW_TOKENS" --profile-repeats "$PROFILE_REPEATS" --out "$OUT/frontier"
echo "frontier exit status $?"
[ "$CHECK" = 0 ] && exit 0

echo "== 2. identity check in float32: $CHECK_SHAPE, $DEVICE"
timeout "${CHECK_SECONDS:-100}" $PY scripts/gpu_frontier.py --shape "$CHECK_SHAPE" --device "$DEVICE" --dtype float32 \
  --concurrency 1,4,16 --new-tokens 64 --policies fixed:3,hardware --profile-repeats 2 --out "$OUT/f32check"
echo "identity check exit status $?"
rm -f "$OUT/f32check/frontier.png"
