"""Where a continuous-batching run spends its time, plain against the speculative engine: seconds in each
of the batch processor's three per-step methods (prepare_next_batch, _generation_step, update_batch),
summed over a run, for plain continuous batching and DSpark with one policy, two interleaved passes, the
same C prompts (mt-bench, gsm8k, humaneval from index 40), greedy, the shipped draft, float32 target.

    OMP_NUM_THREADS=1 python scripts/engine_overhead.py C POLICY [MAX_NEW_TOKENS]   # e.g. 8 hardware 256

"Spec.prepare_next_batch" includes transformers' own ("Cont.prepare_next_batch", which it calls).
"""
import sys, time, collections, torch
import dspark_hf
from transformers import GenerationConfig
from transformers.generation.continuous_batching.continuous_api import ContinuousBatchProcessor
from dspark_hf.batching.processor import SpeculativeBatchProcessor
from dspark_hf.loading import load_draft, load_target
from dspark_hf.benchmarks.concurrency import serve, run_metrics
from dspark_hf.benchmarks.prompt_sets import encode_prompts, load_prompt_set
from dspark_hf.cli.bench_concurrency import serving_dtypes
torch.set_num_threads(1)
acc = collections.defaultdict(float); cnt = collections.defaultdict(int)
def wrap(cls, name):
    f = cls.__dict__[name]
    def g(self, *a, **k):
        t = time.perf_counter(); r = f(self, *a, **k); acc[(cls.__name__, name)] += time.perf_counter() - t; cnt[(cls.__name__, name)] += 1; return r
    setattr(cls, name, g)
for cls in (ContinuousBatchProcessor, SpeculativeBatchProcessor):
    for n in ("prepare_next_batch", "_generation_step", "update_batch"):
        if n in cls.__dict__: wrap(cls, n)
C = int(sys.argv[1]); method = sys.argv[2]
dtype, ddt = serving_dtypes(None, torch.device("cpu"))
target, tok = load_target(None); target = target.to(dtype=dtype).eval()
draft = load_draft("src/dspark_hf/bundled/default_draft", target).to(dtype=ddt).eval()
prompts = []
for n in ["mt-bench", "gsm8k", "humaneval"]:
    _, texts = load_prompt_set(n, 6, None, start=40)
    prompts += [i[0].tolist() for i in encode_prompts(tok, texts)]
chosen = [prompts[i % len(prompts)] for i in range(C)]
for p in range(2):
  for m in ["plain", method]:
    acc.clear(); cnt.clear()
    cfg = GenerationConfig(max_new_tokens=int(sys.argv[3]) if len(sys.argv) > 3 else 64, do_sample=False, eos_token_id=target.generation_config.eos_token_id, pad_token_id=0,
                           dspark_policy=None if m == "plain" else m)
    out, arr, wall = serve(target, chosen, cfg, draft=None if m == "plain" else draft)
    r = run_metrics(out, arr, wall)
    print(f"pass {p} {m}: {r['aggregate_tokens_per_second']:.1f} tok/s wall {wall:.2f}", {f"{k[0][:4]}.{k[1]}": f"{v:.2f}s/{cnt[k]}" for k, v in acc.items()}, flush=True)
