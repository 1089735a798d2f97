#!/usr/bin/env bash
# Row-by-row verification forwards of several checkouts (default: OLD and this tree), alternately, PASSES times each.
# Usage: SOURCES="/tmp/ab_old/src /tmp/ab_mid/src $PWD/src" PASSES=3 bash docs/measurements/2026-12-06c/run_ab.sh
#   (/tmp/ab_old: `git worktree add /tmp/ab_old 16691ec`; /tmp/ab_mid: `git worktree add /tmp/ab_mid 876702e`)
set -eu
cd "$(dirname "$0")/../../.."
for pass in $(seq 1 "${PASSES:-3}"); do
  for src in ${SOURCES:-$OLD/src $PWD/src}; do
    OMP_NUM_THREADS=1 PYTHONPATH="$src" .venv/bin/python docs/measurements/2026-12-06c/row_forward_ab.py 15 2>/dev/null | tail -1
  done
done
