#!/bin/bash
# Run t (2026-12-06, evening): the held-out learning curve of the fourth training round (run s did not measure it).
#   RUNS=/work/runs4 bash docs/measurements/2026-12-06f/curve.sh
# RUNS holds continued3/ (run s: scripts/continue_default_draft.sh train with RUN=continued3, checkpoints every 200
# steps). Prompts 40-49 of each set, 64 new tokens, greedy, whole block, default dtype: the protocol of run r's curve
# (docs/measurements/2026-12-06d/learning_curve.json), whose last point (step 1600, 4,818,102 answer tokens) is the
# draft this round started from. Step 0 is not rerun here: learning_curve.py would load `--init-from default`, which
# is now the fourth-round draft itself. Two processes, one thread each (the shared script's `curve` stage); tau does
# not depend on timing. Writes learning_curve.json and learning_curve_{a,b}.log here.
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNS=${RUNS:?set RUNS} RUN=continued3 INITIAL_TOKENS=4818102 CURVE_PROMPTS=10 CURVE_A=400,800 CURVE_B=1200 \
  MEASUREMENTS=2026-12-06f bash scripts/continue_default_draft.sh curve
