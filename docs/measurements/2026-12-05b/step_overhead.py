"""Issue 15, 2026-12-05 (run k): what a plain step costs in the plain continuous batch and in the speculative
one when nothing is drafted. Serves C copies of the load bench's prompts (prompts 40-45 of the three sets)
with plain continuous batching and with DSpark (policy as given), timing every step of transformers' loop
(prepare_next_batch to the next prepare_next_batch) and its packed forward (_generation_step), and prints the
medians over decoding-only steps with one token per request. Run from the repository root:
  OMP_NUM_THREADS=1 PYTHONPATH=docs/measurements/2026-12-04e/traces .venv/bin/python docs/measurements/2026-12-05b/step_overhead.py 16 hardware 2
"""
import statistics
import sys
import time

import torch
from transformers import GenerationConfig
from transformers.generation.continuous_batching.continuous_api import ContinuousBatchProcessor

import dspark_hf  # noqa: F401
from dspark_hf.batching.processor import SpeculativeBatchProcessor
from dspark_hf.benchmarks.concurrency import run_metrics, serve
from load_setup import load

C = int(sys.argv[1]); method = sys.argv[2]; passes = int(sys.argv[3]) if len(sys.argv) > 3 else 2
target, draft, prompts = load()
chosen = [prompts[i % len(prompts)] for i in range(C)]
log = []

def timed(cls, name, key):
    original = getattr(cls, name)
    def wrapper(self, *a, **k):
        io = self.inputs_and_outputs
        shape = (sum(f.query_length for f in io.requests_in_batch), len(io.requests_in_batch)) if key == "forward" else None
        t = time.perf_counter()
        out = original(self, *a, **k)
        log.append((key, t, time.perf_counter() - t, self, shape))
        return out
    setattr(cls, name, wrapper)

timed(ContinuousBatchProcessor, "prepare_next_batch", "prepare_base")
timed(SpeculativeBatchProcessor, "prepare_next_batch", "prepare")
timed(ContinuousBatchProcessor, "_generation_step", "forward")
timed(SpeculativeBatchProcessor, "_generation_step", "forward")
timed(ContinuousBatchProcessor, "update_batch", "update")
timed(SpeculativeBatchProcessor, "update_batch", "update")

model_times = []
_forward = target.forward
def _timed_forward(*a, **k):
    t = time.perf_counter()
    out = _forward(*a, **k)
    model_times.append((k["input_ids"].shape[-1], time.perf_counter() - t))
    return out
target.forward = _timed_forward

def summarise(entries):
    """Per step: (total, prepare, forward, update, tokens) for steps whose forward had one token per request."""
    steps, current = [], {}
    for key, t, d, proc, shape in entries:
        if key == "prepare_base" and isinstance(proc, SpeculativeBatchProcessor):
            current["prepare_base"] = d
            continue
        if key in ("prepare", "prepare_base"):
            if current:
                steps.append(current)
            current = {"t": t, "prepare": d, "n": None}
        elif key == "forward":
            current["forward"] = d
            current["tokens"], current["requests"] = shape
        elif key == "update":
            current["update"] = d
            current["end"] = t + d
    if current:
        steps.append(current)
    pure = [s for s in steps if "forward" in s and "update" in s and s["tokens"] == s["requests"] == C]
    return pure

for p in range(passes):
    for m in ["plain", method]:
        cfg = GenerationConfig(max_new_tokens=64, do_sample=False, eos_token_id=target.generation_config.eos_token_id,
                               pad_token_id=0, dspark_policy=None if m == "plain" else m)
        log.clear(); model_times.clear()
        out, arr, wall = serve(target, chosen, cfg, draft=None if m == "plain" else draft)
        r = run_metrics(out, arr, wall)
        pure = summarise(list(log))
        med = lambda k: 1000 * statistics.median(s[k] for s in pure)
        print(f"pass {p} {m:9s}: {r['aggregate_tokens_per_second']:.1f} tok/s wall {wall:.2f} s; {len(pure)} plain steps of {C} requests: "
              f"prepare {med('prepare'):.1f} forward {med('forward'):.1f} update {med('update'):.1f} ms, "
              f"sum {med('prepare') + med('forward') + med('update'):.1f}; model forward of {C} tokens "
              f"{1000 * statistics.median(d for n, d in model_times if n == C):.1f} ms", flush=True)
