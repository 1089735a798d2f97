"""Why a drafting round costs more inside generation than in the cost profile (run t, issue 14).

`dspark profile` times drafting rounds back to back (`measure_draft`), so the draft's weights stay in the CPU's
caches; in generation every round follows a target forward that has streamed the target's ~270 MB of bf16 weights
through them. This times the same round (bundled target and draft, bf16, a 160-position context, 3 new context
rows) both ways: 30 rounds back to back, then 30 rounds each right after a 3-row target forward over a 160-token
cache; medians of the last 25.

    OMP_NUM_THREADS=1 python docs/measurements/2026-12-06f/draft_round_cold.py
"""
import statistics
import time

import torch

from dspark_hf.bundled.draft import load_default_draft
from dspark_hf.bundled.target import load_default_target
from dspark_hf.drafting.round import DraftContext, draft_round
from dspark_hf.verification.scheduling.profiler import PrefilledSequence

torch.set_num_threads(1)
target, _ = load_default_target(dtype=torch.bfloat16)
draft = load_default_draft(dtype=torch.bfloat16)
cfg = draft.config
width = len(cfg.target_layer_ids) * cfg.target_hidden_size
generator = torch.Generator().manual_seed(0)
prefilled = DraftContext(draft)
prefix = torch.randint(0, cfg.vocab_size, (1, 164), generator=generator)
draft_round(draft, prefilled, torch.randn(1, 160, width, generator=generator).bfloat16(), prefix[:, :161])
features = torch.randn(1, 3, width, generator=generator).bfloat16()
sequence = PrefilledSequence(target, [3], context_length=160)


def timed_round() -> float:
    context = prefilled.copy()
    start = time.perf_counter()
    draft_round(draft, context, features, prefix)
    return time.perf_counter() - start


warm = [timed_round() for _ in range(30)]
cold = []
for _ in range(30):
    sequence.forward(3, sequence.fresh_cache())
    cold.append(timed_round())
print(f"drafting round, back to back: {1000 * statistics.median(warm[5:]):.2f} ms; "
      f"right after a target forward: {1000 * statistics.median(cold[5:]):.2f} ms")
