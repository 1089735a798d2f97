#!/bin/bash
# The measurements of docs/benchmarks.md (2026-12-02 section), one after the other on a quiet machine.
# DFLASH_TWIN=runs/dflash/draft bash scripts/bench_default_draft.sh   (LIMIT=20 for the full set)
cd "$(dirname "$0")/.."
out=${OUT:-docs/measurements/2026-12-02}
mkdir -p $out
D=src/dspark_hf/bundled/default_draft
F=${DFLASH_TWIN:?set DFLASH_TWIN to the DFlash twin draft folder}
# cost profiles for the hardware policy, on the quiet machine (bf16 row-by-row, as generate runs; float32)
${DSPARK:-.venv/bin/dspark} profile --threads 1 --dtype auto > $out/profile_auto.log 2>&1
${DSPARK:-.venv/bin/dspark} profile --threads 1 --dtype float32 > $out/profile_float32.log 2>&1
# 1. default dtype (auto), shipped draft under whole + hardware, the DFlash variant, prompt lookup
${DSPARK:-.venv/bin/dspark} bench --draft $D --draft $F --datasets mt-bench,gsm8k,humaneval --limit ${LIMIT:-5} --max-new-tokens 128 \
  --policies whole,hardware --dflash-policies whole --threads 1 --out $out/bench_auto > $out/bench_auto.log 2>&1
# 2. the opt-in batched bf16 target, and 3. the float32 target: plain and DSpark (hardware) side by side
for dt in bfloat16-batched float32; do
${DSPARK:-.venv/bin/dspark} bench --draft $D --datasets mt-bench,gsm8k,humaneval --limit ${LIMIT:-5} --max-new-tokens 128 \
  --policies hardware --baselines none --dtype $dt --threads 1 --out $out/bench_$dt > $out/bench_$dt.log 2>&1
done
