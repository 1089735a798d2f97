#!/usr/bin/env bash
# Issue 15, 2026-12-05: the packed forward and the load benchmark with transformers' dense masked attention
# (DSPARK_HF_CPU_BLOCK_ATTENTION=0) and with dspark_hf's CPU block-diagonal attention (the default), one
# after the other on a quiet machine, one thread. Run from the repository root:
#   bash docs/measurements/2026-12-05/run_block_attention.sh
set -euo pipefail
OUT=docs/measurements/2026-12-05
export OMP_NUM_THREADS=1
DSPARK=.venv/bin/dspark
PROFILE="--packed --requests 1,2,4,8,16 --context 256 --repeats 3 --warmup 1 --dtype float32 --threads 1"
BENCH="--draft src/dspark_hf/bundled/default_draft --concurrency 1,2,4,8,16 --datasets mt-bench,gsm8k,humaneval --start 40 --limit 6 --max-new-tokens 64 --policies fixed:1,fixed:3,hardware --repeats 3 --threads 1"
store=$(.venv/bin/python -c "from dspark_hf.verification.scheduling.cost_profile import profile_path; print(profile_path('x').parent)")
date -u
DSPARK_HF_CPU_BLOCK_ATTENTION=0 $DSPARK profile $PROFILE 2>&1 | tee $OUT/profile_packed_dense.log
$DSPARK profile $PROFILE 2>&1 | tee $OUT/profile_packed_block.log
cp "$store"/smollm2-135m-instruct-f32-llama-L30-H576__cpu--AMD-EPYC-1threads__float32__wm__packed.json $OUT/packed_dense.json
cp "$store"/smollm2-135m-instruct-f32-llama-L30-H576__cpu--AMD-EPYC-1threads__float32__wm__packed-bd.json $OUT/packed_block.json
date -u
$DSPARK bench $BENCH --out $OUT/load_block 2>&1 | tee $OUT/load_block.log
date -u
DSPARK_HF_CPU_BLOCK_ATTENTION=0 $DSPARK bench $BENCH --out $OUT/load_dense 2>&1 | tee $OUT/load_dense.log
date -u
