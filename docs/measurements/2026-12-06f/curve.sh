#!/bin/bash
# Run t (2026-12-06, evening): the held-out learning curve of the fourth training round (run s did not measure it).
#   RUNS=/work/runs4 bash docs/measurements/2026-12-06f/curve.sh
# RUNS holds continued3/ (run s: scripts/continue_default_draft.sh train with RUN=continued3, checkpoints every 200
# steps). Prompts 40-49 of each set, 64 new tokens, greedy, whole block, default dtype: the protocol of run r's curve
# (docs/measurements/2026-12-06d/learning_curve.json), whose last point (step 1600, 4,818,102 answer tokens) is the
# draft this round started from. Step 0 is not rerun here: learning_curve.py would load `--init-from default`, which
# is now the fourth-round draft itself. Two processes, one thread each; tau does not depend on timing.
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$PWD
RUNS=${RUNS:?set RUNS}
M=$ROOT/docs/measurements/2026-12-06f
PY=$ROOT/.venv/bin/python
cd "$RUNS"
OMP_NUM_THREADS=1 $PY $ROOT/scripts/learning_curve.py --run continued3 --initial-tokens 4818102 --threads 1 \
  --num-prompts 10 --steps 400,800 --json $M/curve_a.json > $M/curve_a.log 2>&1 &
OMP_NUM_THREADS=1 $PY $ROOT/scripts/learning_curve.py --run continued3 --initial-tokens 4818102 --threads 1 \
  --num-prompts 10 --steps 1200 --json $M/curve_b.json > $M/curve_b.log 2>&1 &
wait
$PY - "$M" <<'PY'
import json, sys
from pathlib import Path
m = Path(sys.argv[1])
a, b = (json.loads((m / f"curve_{x}.json").read_text()) for x in "ab")
a["points"] = sorted(a["points"] + b["points"], key=lambda p: p["step"])
(m / "learning_curve.json").write_text(json.dumps(a, indent=1) + "\n")
for x in "ab":
    (m / f"curve_{x}.json").unlink()
for p in a["points"]:
    print(p["step"], p["answer_tokens_seen"], round(p["tau"], 3), {k: round(v, 3) for k, v in p["tau_per_set"].items()})
PY
