"""Issue 15, one request: where a step's time goes on the batch-1 path and in the speculative batch engine, each
path with its own copy of the shipped draft, prompts alternating which path runs first. Run from the repository root:
    OMP_NUM_THREADS=1 .venv/bin/python docs/measurements/2026-12-07h/engine_step_split.py 3
(3 prompts per set from index 40, 64 new tokens, greedy, hardware-aware policy, float32 target; the first prompt is a
warm-up and not counted). Per path: tokens/s over the timed span (batch 1: the generate call; engine: from the
request's arrival to its last token, so the manager's start and stop are left out), seconds in the target's
forwards (count, ms each), in the draft's forwards, and the rest (everything else inside the span, per target
forward). For the engine also the seconds of its processor's methods (SpeculativeBatchProcessor and, prefixed
CB., transformers' ContinuousBatchProcessor methods it calls)."""
import collections
import sys
import time

import torch

torch.set_num_threads(1)
sys.path[:0] = ["tests"]
from transformers import GenerationConfig
from transformers.generation.continuous_batching.continuous_api import ContinuousBatchProcessor

from conftest import EVAL_DATASETS_DIR
from dspark_hf.batching.processor import SpeculativeBatchProcessor
from dspark_hf.benchmarks.concurrency import serve
from dspark_hf.benchmarks.prompt_sets import encode_prompts, load_prompt_set
from dspark_hf.loading import load_draft, load_target

n = int(sys.argv[1]) if len(sys.argv) > 1 else 3
target, tok = load_target(None)
drafts = {m: load_draft("src/dspark_hf/bundled/default_draft", target, dtype=torch.bfloat16) for m in ("b1", "eng")}
prompts = []
for name in ("mt-bench", "gsm8k", "humaneval"):
    _, texts = load_prompt_set(name, n, EVAL_DATASETS_DIR, start=40)
    prompts += [ids[0].tolist() for ids in encode_prompts(tok, texts)]
secs = collections.defaultdict(float)
calls = collections.defaultdict(int)
current = ["b1"]


def timed(cls, name, label):
    method = cls.__dict__[name]

    def wrapper(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            secs[("eng", label)] += time.perf_counter() - start
            calls[("eng", label)] += 1
    setattr(cls, name, wrapper)


for name in ("prepare_next_batch", "_generation_step", "update_batch", "_draft_decoding_requests", "_solo_round", "_draft_blocks"):
    timed(SpeculativeBatchProcessor, name, name)
for name in ("prepare_next_batch", "update_batch"):
    timed(ContinuousBatchProcessor, name, "CB." + name)


def hooks(module, label):
    def pre(m, args, kwargs):
        m._started = time.perf_counter()

    def post(m, args, kwargs, out):
        secs[(current[0], label)] += time.perf_counter() - m._started
        calls[(current[0], label)] += 1
    module.register_forward_pre_hook(pre, with_kwargs=True)
    module.register_forward_hook(post, with_kwargs=True)


hooks(target, "target forward")
for d in drafts.values():
    hooks(d, "draft forward")


def cfg():
    return GenerationConfig(max_new_tokens=64, do_sample=False, eos_token_id=target.generation_config.eos_token_id,
                            pad_token_id=0, dspark_policy="hardware")


for i, p in enumerate(prompts):
    for m in (["b1", "eng"] if i % 2 == 0 else ["eng", "b1"]):
        current[0] = m
        if m == "b1":
            ids = torch.tensor([p])
            start = time.perf_counter()
            out = target.generate(ids, assistant_model=drafts[m], generation_config=cfg(), attention_mask=torch.ones_like(ids))
            span, tokens = time.perf_counter() - start, out.shape[1] - len(p)
        else:
            outputs, arrivals, _ = serve(target, [p], cfg(), drafts[m])
            span, tokens = outputs[0].timestamps[-1] - arrivals[0], len(outputs[0].generated_tokens)
        secs[(m, "span")] += span
        secs[(m, "tokens")] += tokens
    if i == 0:
        secs.clear()
        calls.clear()
for m in ("b1", "eng"):
    g = {k[1]: v for k, v in secs.items() if k[0] == m}
    c = {k[1]: v for k, v in calls.items() if k[0] == m}
    rest = g["span"] - g["target forward"] - g.get("draft forward", 0.0)
    print("%-3s %.2f tokens/s: span %.2f s, target forwards %.2f s (%d, %.2f ms each), draft forwards %.2f s (%d), rest %.2f s "
          "(%.2f ms per target forward), %d tokens" % (
              m, g["tokens"] / g["span"], g["span"], g["target forward"], c["target forward"],
              1000 * g["target forward"] / c["target forward"], g.get("draft forward", 0.0), c.get("draft forward", 0), rest,
              1000 * rest / c["target forward"], g["tokens"]))
for k in sorted((k for k in secs if k[0] == "eng" and k[1] not in ("span", "tokens", "target forward", "draft forward")),
                key=lambda k: -secs[k]):
    print("    eng %-26s %7.3f s %5d calls %7.2f ms/call" % (k[1], secs[k], calls[k], 1000 * secs[k] / calls[k]))
