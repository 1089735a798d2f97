"""What one continuous-batching manager costs around its requests: a 4-token request served through a new manager,
plain and speculative (hardware-aware, the shipped draft), three times each, then a profile of one speculative call.
Run from the repository root:
    OMP_NUM_THREADS=1 .venv/bin/python docs/measurements/2026-12-07h/manager_setup_cost.py
Prints each call's outer seconds (init_continuous_batching, start, the request, stop) and its serve wall (first
arrival to last token), then cProfile's cumulative listing of the speculative call."""
import sys, time, cProfile, pstats
import torch
torch.set_num_threads(1)
from transformers import GenerationConfig
from dspark_hf.benchmarks.concurrency import serve
from dspark_hf.loading import load_draft, load_target
target, tok = load_target(None)
draft = load_draft("src/dspark_hf/bundled/default_draft", target, dtype=torch.bfloat16)
p = tok("Hello, how are you today? Tell me a story about a cat.")["input_ids"]
def cfg(policy):
    return GenerationConfig(max_new_tokens=4, do_sample=False, eos_token_id=None, pad_token_id=0, dspark_policy=policy)
for rep in range(3):
    for d in (None, draft):
        t = time.perf_counter(); outs, arr, w = serve(target, [p], cfg("hardware" if d else None), d)
        print("draft" if d else "plain", "outer %.3f serve wall %.3f" % (time.perf_counter() - t, w))
pr = cProfile.Profile(); pr.enable()
serve(target, [p], cfg("hardware"), draft)
pr.disable()
pstats.Stats(pr).sort_stats("cumulative").print_stats(35)
