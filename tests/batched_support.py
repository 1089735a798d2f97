"""Helpers of the batched-DSpark tests (tests/test_batched_*.py): small paged-cache configs, plain
batch-1 references, left-padded batches, collecting a streaming manager's results, and a draft forced
partly right per request."""

from __future__ import annotations

import time

import torch
from transformers import GenerationConfig
from transformers.generation.configuration_utils import ContinuousBatchingConfig

from dspark_hf import DSparkDraft
from dspark_hf.batching import processor as processor_module
from dspark_hf.drafting.block import DraftBlock

from conftest import FIXTURES_DIR


def small_cache(**overrides) -> ContinuousBatchingConfig:
    """A paged cache sized for tiny tests (transformers' default sizes it from the machine's memory)."""
    settings = {"num_blocks": 128, "max_batch_tokens": 256, "page_size": 16, "max_requests_per_batch": 16}
    settings.update(overrides)
    return ContinuousBatchingConfig(**settings)


def fixture_draft(name: str = "qwen3_dspark_vanilla") -> DSparkDraft:
    return DSparkDraft.from_pretrained(FIXTURES_DIR / name, dtype=torch.float32).eval()


def prompts_of(lengths, seed: int = 0, low: int = 5, high: int = 300) -> list[list[int]]:
    return [torch.randint(low, high, (n,), generator=torch.Generator().manual_seed(seed * 100 + i)).tolist() for i, n in enumerate(lengths)]


def plain_greedy(target, prompts, new_tokens: int, eos_token_id=None) -> list[list[int]]:
    """Each prompt's new tokens from plain batch-1 greedy ``generate`` (float32)."""
    out = []
    for p in prompts:
        ids = target.generate(torch.tensor([p]), max_new_tokens=new_tokens, do_sample=False, eos_token_id=eos_token_id, pad_token_id=0)
        out.append(ids[0, len(p):].tolist())
    return out


def left_padded(prompts, pad: int = 0) -> tuple[torch.LongTensor, torch.LongTensor]:
    """``(ids, attention_mask)`` of ``prompts`` left-padded with ``pad`` to the longest, as ``generate`` takes a batch."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def collect(manager, ids, timeout=60.0) -> list[list[int]]:
    """The generated tokens of requests ``ids`` of a started streaming manager, in that order, once all
    have finished (asserted within ``timeout`` seconds, none with an error)."""
    results, deadline = {}, time.time() + timeout
    while len(results) < len(ids) and time.time() < deadline:
        out = manager.get_result(timeout=1)
        if out is not None and out.is_finished():
            results[out.request_id] = out
    assert set(results) == set(ids), "requests did not finish"
    assert all(r.error is None for r in results.values())
    return [results[i].generated_tokens for i in ids]


def greedy_config(new_tokens: int, policy="whole", eos_token_id=-1, **kwargs) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=new_tokens, do_sample=False, eos_token_id=eos_token_id, pad_token_id=0, dspark_policy=policy, **kwargs)


def force_partly_right(monkeypatch, prompts, continuations, wrong_every: int = 3) -> None:
    """Make every drafted block propose the request's plain continuation, except slot ``k`` of a block
    anchored at position ``n - 1`` whenever ``(n + k) % wrong_every == 0`` (a wrong token there).
    The real draft still runs, batched (its context caches, features and confidences are the real
    ones); only the drawn tokens and the reported logits (one-hot on the forced token) change. The request is found by
    its sequence: the prompt it starts with."""
    original = processor_module.draft_rounds
    full = [list(p) + list(c) for p, c in zip(prompts, continuations)]

    def force(block, prefix_ids):
        seq = prefix_ids[0].tolist()
        n = len(seq)
        match = [f for f in full if f[:n] == seq]
        if not match:
            return block
        tokens = block.tokens.clone()
        logits = torch.full_like(block.logits, -1e4)
        vocab = block.logits.shape[-1]
        for k in range(tokens.shape[1]):
            token = match[0][n + k] if n + k < len(match[0]) else int(tokens[0, k])
            if (n + k) % wrong_every == 0:
                token = (token + 1) % vocab
            tokens[0, k] = token
            logits[0, k, token] = 0.0
        return DraftBlock(tokens=tokens, logits=logits, confidences=block.confidences)

    def forced(draft, contexts, features, prefixes, logits_processor=None, do_sample=False):
        blocks = original(draft, contexts, features, prefixes, logits_processor, do_sample)
        return [force(block, prefix) for block, prefix in zip(blocks, prefixes)]

    monkeypatch.setattr(processor_module, "draft_rounds", forced)


def rounds(draft) -> list:
    """Every drafting round of the draft's last batch run, all requests together."""
    return [s for t in draft.last_batch_telemetry.requests.values() for s in t.steps]
