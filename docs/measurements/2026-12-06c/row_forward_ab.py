"""Seconds of the bundled target's bf16 verification forwards in row-by-row mode (the default `auto` configuration on
CPUs with AVX512-BF16) and in transformers' batched forward, for 1, 2, 4 and 8 new rows over a 256-token cache:
medians of `REPEATS` interleaved repeats, one thread. Prints one JSON line tagged with the dspark_hf source folder, so
that two checkouts can be compared by running this file alternately under each (run_ab.sh).
Usage: OMP_NUM_THREADS=1 PYTHONPATH=<checkout>/src .venv/bin/python docs/measurements/2026-12-06c/row_forward_ab.py [REPEATS]"""
import json, statistics, sys
import torch
torch.set_num_threads(1)
import dspark_hf
from dspark_hf.loading import load_target_with_precision
from dspark_hf.verification.scheduling.profiler import PrefilledSequence
from dspark_hf.integration.exact_verification import single_step_rows

repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 15
target, _, precision = load_target_with_precision(None, "auto")
counts = (1, 2, 4, 8)
seq = PrefilledSequence(target, counts, context_length=256)
rows, batched = {}, {}
with single_step_rows(target):
    for n in counts:
        seq.timed(n)
for _ in range(repeats):
    for n in counts:
        with single_step_rows(target):
            rows.setdefault(n, []).append(seq.timed(n))
        batched.setdefault(n, []).append(seq.timed(n))
ms = lambda d: {n: round(1000 * statistics.median(v), 2) for n, v in d.items()}
print(json.dumps({"source": dspark_hf.__file__.rsplit("/dspark_hf/", 1)[0], "dtype": str(next(target.parameters()).dtype),
                  "rows_ms": ms(rows), "batched_ms": ms(batched), "repeats": repeats}))
