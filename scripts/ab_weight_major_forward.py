"""A/B of weight-major float32 linears (dspark_hf.integration.linear_kernels) on the bundled SmolLM2 target:
forwards of B new rows over a 256-token cache with every linear layer as ``F.linear`` and as
``weight @ x.T``, two medians of five each per B, and the largest logit difference of an 8-row forward
from eight one-token steps for both.

Usage: ``OMP_NUM_THREADS=1 python scripts/ab_weight_major_forward.py`` (the figures in
``dspark_hf/integration/weight_major.py`` and docs/benchmarks.md came from this script's first form, on this
project's 2-core AMD EPYC, one thread). It patches ``nn.Linear.forward`` in this process only.
"""

from __future__ import annotations

import copy
import time

import torch

from dspark_hf.bundled.target import load_default_target
from dspark_hf.integration.cpu_gqa_attention import install_cpu_gqa_attention
from dspark_hf.integration.linear_kernels import weight_major_linear

torch.set_num_threads(1)
install_cpu_gqa_attention()
model, _ = load_default_target()
CONTEXT = 256
with torch.no_grad():
    base = model(torch.randint(100, 20000, (1, CONTEXT)), use_cache=True).past_key_values
original = torch.nn.Linear.forward
MODE = {"kernel": "F.linear"}


def forward(self, x):
    if MODE["kernel"] == "weight-major" and x.dim() == 3 and x.shape[0] == 1 and x.shape[1] > 1:
        return weight_major_linear(x, self.weight, self.bias)
    return original(self, x)


torch.nn.Linear.forward = forward


def median_ms(rows: int) -> float:
    times = []
    for _ in range(5):
        cache = copy.deepcopy(base)
        x = torch.randint(100, 20000, (1, rows))
        pos = torch.arange(CONTEXT, CONTEXT + rows)[None]
        start = time.perf_counter()
        with torch.no_grad():
            model(x, past_key_values=cache, position_ids=pos, cache_position=pos[0], use_cache=True)
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[2]


for rows in (1, 2, 3, 4, 5, 6, 7, 8, 12, 16):
    got = []
    for kernel in ("F.linear", "weight-major", "F.linear", "weight-major"):
        MODE["kernel"] = kernel
        got.append(median_ms(rows))
    print(f"B={rows:2d}  F.linear {got[0]:.1f}/{got[2]:.1f} ms  weight-major {got[1]:.1f}/{got[3]:.1f} ms", flush=True)

x = torch.randint(100, 20000, (1, 8))
pos = torch.arange(CONTEXT, CONTEXT + 8)[None]
MODE["kernel"] = "F.linear"
steps, cache = [], copy.deepcopy(base)
with torch.no_grad():
    for i in range(8):
        steps.append(model(x[:, i : i + 1], past_key_values=cache, position_ids=pos[:, i : i + 1], cache_position=pos[0, i : i + 1]).logits)
steps = torch.cat(steps, 1)
for kernel in ("F.linear", "weight-major"):
    MODE["kernel"] = kernel
    with torch.no_grad():
        logits = model(x, past_key_values=copy.deepcopy(base), position_ids=pos, cache_position=pos[0]).logits
    same = bool((logits.argmax(-1) == steps.argmax(-1)).all())
    print(f"{kernel}: 8-row forward vs one-token steps: max |logit diff| {(logits - steps).abs().max().item():.2e}, argmax equal {same}")
