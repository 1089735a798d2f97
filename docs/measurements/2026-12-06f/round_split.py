"""Where a default-policy round's time goes on mt-bench (run t, issue 14): the target's forward (timed with forward
hooks on the target), the drafting round (the round's `draft_seconds`), and the rest of the loop, over the first N
mt-bench prompts, 128 new tokens, greedy, default dtype and policy; then the target forward's median per round kind
and verified length.

    OMP_NUM_THREADS=1 python docs/measurements/2026-12-06f/round_split.py 4
"""
import statistics
import sys
import time

import torch
from transformers import GenerationConfig

import dspark_hf  # noqa: F401  (installs the generation hook)
from dspark_hf.eval_prompts import encode, load_prompts
from dspark_hf.loading import load_draft, load_target_with_precision

torch.set_num_threads(1)
target, tokenizer, precision = load_target_with_precision(None, "auto")
print(precision.describe())
draft = load_draft(None, target, dtype=precision.draft_dtype)
forwards = []
target.register_forward_pre_hook(lambda *_: forwards.append([time.perf_counter(), None]))
target.register_forward_hook(lambda *_: forwards[-1].__setitem__(1, time.perf_counter()))
config = GenerationConfig(max_new_tokens=128, dspark_policy="hardware", do_sample=False, **precision.generation_options())
warm = encode(tokenizer, load_prompts("mt-bench", 0, 1)[0])
target.generate(warm, assistant_model=draft, generation_config=GenerationConfig(max_new_tokens=8, dspark_policy="hardware",
                do_sample=False, **precision.generation_options()), attention_mask=torch.ones_like(warm))
by_kind, totals = {}, {"wall": 0.0, "forward": 0.0, "draft": 0.0, "tokens": 0, "rounds": 0}
for prompt in load_prompts("mt-bench", 0, int(sys.argv[1]) if len(sys.argv) > 1 else 4):
    ids = encode(tokenizer, prompt)
    forwards.clear()
    start = time.perf_counter()
    target.generate(ids, assistant_model=draft, generation_config=config, attention_mask=torch.ones_like(ids))
    prefill = forwards[0][1] - forwards[0][0]
    wall = time.perf_counter() - start - prefill
    telemetry = draft.last_telemetry
    forward = sum(b - a for a, b in forwards[1:])
    drafting = sum(s.draft_seconds for s in telemetry.steps)
    for step, (a, b) in zip(telemetry.steps, forwards[1:]):
        by_kind.setdefault((step.source, step.verified), []).append(b - a)
    totals["wall"] += wall
    totals["forward"] += forward
    totals["draft"] += drafting
    totals["tokens"] += telemetry.new_tokens - telemetry.prefill_tokens
    totals["rounds"] += len(telemetry.steps)
    print(f"{len(telemetry.steps)} rounds: {1000 * wall:.0f} ms after the prefill, target forwards {1000 * forward:.0f}, "
          f"drafting {1000 * drafting:.0f}, the rest {1000 * (wall - forward - drafting):.0f}")
n = totals["rounds"]
print(f"per round: {1000 * totals['wall'] / n:.2f} ms, target forward {1000 * totals['forward'] / n:.2f}, drafting "
      f"{1000 * totals['draft'] / n:.2f}, the rest {1000 * (totals['wall'] - totals['forward'] - totals['draft']) / n:.2f}; "
      f"tokens per round {totals['tokens'] / n:.2f}")
for (source, verified), seconds in sorted(by_kind.items()):
    print(f"{source} rounds verifying {verified}: {len(seconds)}, target forward median {1000 * statistics.median(seconds):.1f} ms")
