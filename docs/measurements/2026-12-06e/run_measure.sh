#!/bin/bash
# Run s (2026-12-06, afternoon): the fourth round of the default draft (issue 14), measured on the session's 2-vCPU
# Intel Xeon.
#   RUNS=/work/runs4 PREVIOUS=/work/runs bash docs/measurements/2026-12-06e/run_measure.sh mix  # training data
#   RUNS=/work/runs4 bash docs/measurements/2026-12-06e/run_measure.sh bench   # one process, quiet machine
# (run s ran `bench` with SKIP_PROFILE=1 POLICIES=hardware; no held-out curve was measured this round)
# RUNS holds continued3/ (scripts/continue_default_draft.sh train with RUN=continued3) and shipped_r3/ (a copy of
# the draft shipped before this round, the third round).
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$PWD
RUNS=${RUNS:?set RUNS}
M=$ROOT/docs/measurements/2026-12-06e
PY=$ROOT/.venv/bin/python
DSPARK=$ROOT/.venv/bin/dspark
mix() {  # the training data: this round's answers, plus the previous round's non-chat ones (maths, code, software)
  # so that a chat-heavy round does not pull the draft away from the other sets. PREVIOUS: the previous round's
  # folder (its prompts.jsonl and sd/distilled.jsonl)
  PREVIOUS=${PREVIOUS:?set PREVIOUS} $PY - "$RUNS" <<'PY'
import json, os, sys
from pathlib import Path
runs, previous = Path(sys.argv[1]), Path(os.environ["PREVIOUS"])
sources = [json.loads(line)["source"] for line in (previous / "prompts.jsonl").open()]
kept = [line for line in (previous / "sd/distilled.jsonl").open() if sources[json.loads(line)["index"]] not in ("chat", "writing")]
new = (runs / "sd/distilled.jsonl").read_text().splitlines(keepends=True)
(runs / "sd_mix.jsonl").write_text("".join(new + kept))
print(f"sd_mix.jsonl: {len(new)} sequences of this round, {len(kept)} non-chat ones of the previous round")
PY
}
bench() {  # the previous and the new draft side by side with plain decoding, one process, one thread
  [ -n "${SKIP_PROFILE:-}" ] || OMP_NUM_THREADS=1 $DSPARK profile --threads 1 --dtype auto > $M/profile_auto.log 2>&1
  OMP_NUM_THREADS=1 $DSPARK bench --draft $RUNS/shipped_r3 --draft $RUNS/continued3/draft \
    --datasets mt-bench,gsm8k,humaneval --start 0 --limit ${LIMIT:-20} --max-new-tokens 128 \
    --policies ${POLICIES:-hardware,whole} --baselines none --threads 1 --no-plots --out $M/bench_ab > $M/bench_ab.log 2>&1
}
"$@"
