"""Per-round trace of the default policy (hardware) at batch 1 on two mt-bench prompts (from 40), 128 new tokens, default
dtype, one fresh draft: each round as <source><tokens>:<ms>[/d<drafting ms>] (d draft, l lookup, p plain), then the
drafting gate kept on the draft. Usage: OMP_NUM_THREADS=1 .venv/bin/python docs/measurements/2026-12-06b/gate_trace_mtbench.py"""
import torch, time
torch.set_num_threads(1)
from transformers import GenerationConfig
import dspark_hf
from dspark_hf.loading import load_draft, load_target_with_precision
from dspark_hf.benchmarks.prompt_sets import load_prompt_set, encode_prompts
target, tok, precision = load_target_with_precision(None, "auto")
draft = load_draft("src/dspark_hf/bundled/default_draft", target, dtype=precision.draft_dtype, draft_vocab=None, token_counts=None)
ids = encode_prompts(tok, load_prompt_set("mt-bench", 2, start=40)[1])
gen = dict(max_new_tokens=128, do_sample=False, **precision.generation_options())
for x in ids:
    cfg = GenerationConfig(dspark_policy="hardware", **gen)
    target.generate(x, attention_mask=torch.ones_like(x), generation_config=cfg, assistant_model=draft)
    st = draft.last_telemetry.steps
    print("prompt", x.shape[1], "rounds", len(st))
    print(" ".join(f"{s.source[0]}{s.emitted}:{1000*s.step_seconds:.0f}" + (f"/d{1000*s.draft_seconds:.0f}" if s.source=="draft" else "") for s in st))
from dspark_hf.verification.scheduling.drafting_gate import kept_gates
for k, g in kept_gates(draft).items():
    print(k, "draft tokens", round(g.draft_tokens,2), "draft s", round(g.draft_seconds,4), "plain s", round(g.plain_seconds,4), "rounds", g.drafting_rounds)
