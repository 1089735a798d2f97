"""The workload shared by scripts/engine_overhead.py and scripts/engine_never_drafts.py: the bundled target
(float32) and shipped draft as `dspark bench --concurrency` loads them, the first C of prompts 40-45 of
mt-bench, gsm8k and humaneval, and one greedy continuous-batching run of them (plain, or DSpark with a policy)."""

from __future__ import annotations

import torch
from transformers import GenerationConfig

import dspark_hf  # noqa: F401  (installs the hooks)
from dspark_hf.benchmarks.concurrency import run_metrics, serve
from dspark_hf.benchmarks.prompt_sets import encode_prompts, load_prompt_set
from dspark_hf.cli.bench_concurrency import serving_dtypes
from dspark_hf.loading import load_draft, load_target

PLAIN = "plain"


def load_workload(concurrency: int):
    """(target, draft, the first ``concurrency`` prompts as token-id lists), one torch thread."""
    torch.set_num_threads(1)
    dtype, draft_dtype = serving_dtypes(None, torch.device("cpu"))
    target, tokenizer = load_target(None)
    target = target.to(dtype=dtype).eval()
    draft = load_draft("src/dspark_hf/bundled/default_draft", target).to(dtype=draft_dtype).eval()
    prompts = []
    for name in ["mt-bench", "gsm8k", "humaneval"]:
        _, texts = load_prompt_set(name, 6, None, start=40)
        prompts += [ids[0].tolist() for ids in encode_prompts(tokenizer, texts)]
    return target, draft, [prompts[i % len(prompts)] for i in range(concurrency)]


def serve_once(target, draft, prompts, policy: str, max_new_tokens: int) -> tuple[dict, float]:
    """One run of ``prompts`` (``policy`` ``"plain"``: plain continuous batching): its metrics and wall seconds."""
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=target.generation_config.eos_token_id,
                              pad_token_id=0, dspark_policy=None if policy == PLAIN else policy)
    outputs, arrivals, wall = serve(target, prompts, config, draft=None if policy == PLAIN else draft)
    return run_metrics(outputs, arrivals, wall), wall
