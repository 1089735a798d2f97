"""Trace of the batched engine in cost mode on the tiny random target (CPU, bf16, decisive, scripted acceptance):
per policy the aggregate tokens/s and, per packed step, D<verify rows>:<ms> (some request drafted) or
p<rows>:<ms> (a plain step), plus the drafted / plain step medians.

    OMP_NUM_THREADS=1 python docs/measurements/2026-12-04f/traces/cost_mode_trace.py 4 hardware,fixed:7,fixed:3 64 [-v]

(arguments: concurrency, policies, new tokens). The profiles of the random target go to $DSPARK_HF_CACHE
(default /tmp/dcache_trace)."""
import os, sys, time, statistics, collections
os.environ.setdefault("DSPARK_HF_CACHE", "/tmp/dcache_trace")
import torch
import dspark_hf
from transformers import GenerationConfig
from dspark_hf.benchmarks.batched_cost_mode import ScriptedAcceptance, greedy_continuations, make_decisive
from dspark_hf.benchmarks.cost_mode import random_target, random_draft_for
from dspark_hf.batching.packed_profile import profile_packed, save_packed_profile
from dspark_hf.benchmarks.concurrency import serve
C = int(sys.argv[1]); policies = sys.argv[2].split(","); new = int(sys.argv[3]) if len(sys.argv) > 3 else 64
dtype = torch.bfloat16
target = make_decisive(random_target("tiny", dtype=dtype)); draft = random_draft_for(target)
g = torch.Generator().manual_seed(0)
prompts = [torch.randint(0, 384, (256,), generator=g).tolist() for _ in range(C)]
save_packed_profile(profile_packed(target, requests=sorted({1, C}), context_length=256, repeats=3))
cont = greedy_continuations(target, prompts, new + 8)
with ScriptedAcceptance(prompts, cont) as script:
    for pol in ["plain"] + policies:
        cfg = GenerationConfig(max_new_tokens=new, do_sample=False, eos_token_id=None, pad_token_id=0, dspark_policy=None if pol == "plain" else pol)
        outs, arr, wall = serve(target, prompts, cfg, draft=None if pol == "plain" else draft)
        line = f"{pol:>10}: {C*new/wall:7.1f} tok/s wall {wall:.2f}"
        if pol != "plain":
            st = [s for s in draft.last_batch_telemetry.steps if s.prefill_tokens <= C]
            drafted = [s for s in st if s.drafted_requests]
            plain = [s for s in st if not s.drafted_requests]
            line += (f" steps {len(st)} drafted {len(drafted)} plain {len(plain)}; drafted step {1000*statistics.median([s.step_seconds for s in drafted] or [0]):.1f} ms"
                     f" (draft {1000*statistics.median([s.draft_seconds for s in drafted] or [0]):.1f}), plain step {1000*statistics.median([s.step_seconds for s in plain] or [0]):.1f} ms;"
                     f" verify tokens/drafted step {statistics.mean([s.verify_tokens for s in drafted] or [0]):.1f}, tau {draft.last_batch_telemetry.tau:.2f}")
            if "-v" in sys.argv:
                print(" ".join(f"{'D' if s.drafted_requests else 'p'}{s.verify_tokens or s.prefill_tokens}:{1000*s.step_seconds:.0f}" for s in st))
        print(line, flush=True)
