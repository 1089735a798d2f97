"""The speculative batch engine's own cost on plain steps: plain continuous batching against the speculative
engine with its drafting choice replaced by "never draft" (every step a plain step, with the engine's
feature capture, per-request bookkeeping and acceptance code still running), three interleaved passes
(order alternating), the same C prompts (mt-bench, gsm8k, humaneval from index 40), greedy, float32 target.

    OMP_NUM_THREADS=1 python scripts/engine_never_drafts.py C MAX_NEW_TOKENS   # e.g. 8 128
"""
import sys, time, torch
import dspark_hf
from transformers import GenerationConfig
from dspark_hf.loading import load_draft, load_target
from dspark_hf.benchmarks.concurrency import serve, run_metrics
from dspark_hf.benchmarks.prompt_sets import encode_prompts, load_prompt_set
from dspark_hf.cli.bench_concurrency import serving_dtypes
import dspark_hf.batching.processor as proc
torch.set_num_threads(1)
proc.SpeculativeBatchProcessor._choose_drafting = lambda self, decoding, fresh: (setattr(self, "_skipped", bool(fresh) and len(fresh) == len(decoding)) or [])
C = int(sys.argv[1]); N = int(sys.argv[2])
dtype, ddt = serving_dtypes(None, torch.device("cpu"))
target, tok = load_target(None); target = target.to(dtype=dtype).eval()
draft = load_draft("src/dspark_hf/bundled/default_draft", target).to(dtype=ddt).eval()
prompts = []
for n in ["mt-bench", "gsm8k", "humaneval"]:
    _, texts = load_prompt_set(n, 6, None, start=40)
    prompts += [i[0].tolist() for i in encode_prompts(tok, texts)]
chosen = [prompts[i % len(prompts)] for i in range(C)]
res = {"plain": [], "spec-never-drafts": []}
for p in range(3):
    for m in (["plain", "spec-never-drafts"] if p % 2 == 0 else ["spec-never-drafts", "plain"]):
        cfg = GenerationConfig(max_new_tokens=N, do_sample=False, eos_token_id=target.generation_config.eos_token_id, pad_token_id=0,
                               dspark_policy=None if m == "plain" else "fixed:1")
        out, arr, wall = serve(target, chosen, cfg, draft=None if m == "plain" else draft)
        res[m].append(run_metrics(out, arr, wall)["aggregate_tokens_per_second"])
        print(p, m, f"{res[m][-1]:.1f}", flush=True)
print({k: [round(x, 1) for x in v] for k, v in res.items()})
