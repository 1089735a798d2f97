"""One input row through every linear layer of the bundled SmolLM2 target (the 211 ``nn.Linear`` of its
30 layers and LM head, in model order, weights as loaded: far larger than the CPU's caches), four ways:
``F.linear`` (what plain decoding runs), ``weight @ x.T`` with one column, the same padded with a zero
row (``dspark_hf.integration.linear_kernels.weight_major_linear``'s one-row case), and two rows
weight-major for comparison. Seven interleaved passes, medians.

Usage: ``OMP_NUM_THREADS=1 python scripts/ab_one_row_linears.py`` (the figures in
``dspark_hf/integration/linear_kernels.py`` are its run on this project's 2-core AMD EPYC, one thread,
2026-12-05: 43.4 / 43.9 / 33.4 / 32.3 ms, ``docs/measurements/2026-12-05c/one_row_linears.log``).
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from dspark_hf.bundled.target import load_default_target
from dspark_hf.integration.linear_kernels import weight_major_linear

torch.set_num_threads(1)
model, _ = load_default_target()
weights = [m.weight.detach() for m in model.modules() if isinstance(m, torch.nn.Linear)]
inputs = {w.shape[1]: (torch.randn(1, 1, w.shape[1]), torch.randn(1, 2, w.shape[1])) for w in weights}
WAYS = {
    "F.linear, 1 row": lambda w: F.linear(inputs[w.shape[1]][0], w),
    "W @ x.T, 1 column": lambda w: torch.mm(w, inputs[w.shape[1]][0][0].t()).t().contiguous(),
    "weight_major_linear, 1 row (padded)": lambda w: weight_major_linear(inputs[w.shape[1]][0], w),
    "weight_major_linear, 2 rows": lambda w: weight_major_linear(inputs[w.shape[1]][1], w),
}


def one_pass(way) -> float:
    start = time.perf_counter()
    for w in weights:
        way(w)
    return 1000 * (time.perf_counter() - start)


with torch.no_grad():
    for way in WAYS.values():
        one_pass(way)
    times = {name: [] for name in WAYS}
    for p in range(7):
        for name in (list(WAYS) if p % 2 == 0 else reversed(list(WAYS))):
            times[name].append(one_pass(WAYS[name]))
print(f"{len(weights)} linear layers, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
for name, values in times.items():
    print(f"{name:38s} median {statistics.median(values):6.1f} ms  (passes {' '.join(f'{v:.1f}' for v in values)})")
