"""``generate(ids, attention_mask=mask, assistant_model=draft)`` with a left-padded batch of ``R > 1``.

The padding is stripped into ``R`` requests (row ``r``'s tokens where its mask is 1, which must be a
suffix of the row: left padding, as decoder-only ``generate`` expects), the requests run on the
speculative continuous-batching engine (``generate_batch`` with the draft), and the result is
returned the way ``generate`` returns a batch: each input row as given, then its new tokens, rows
that stopped early filled with ``pad_token_id`` up to the longest. ``max_length`` counts the padded
input width, as in ``generate``.

Refused in one line: options that have no meaning per request in the engine (custom logits
processors or stopping criteria, ``stop_strings``, streamers, ``return_dict_in_generate``,
``prefix_allowed_tokens_fn``, negative prompts, ``synced_gpus``, ``custom_generate``, extra model
inputs) and a mask that is not left padding.
"""

from __future__ import annotations

import torch

from transformers.generation.configuration_utils import ContinuousBatchingConfig

from dspark_hf.errors import UnsupportedUsageError

_REFUSED = ("logits_processor", "stopping_criteria", "prefix_allowed_tokens_fn", "synced_gpus", "streamer",
            "negative_prompt_ids", "negative_prompt_attention_mask", "custom_generate")


def strip_left_padding(ids: torch.LongTensor, mask: torch.Tensor | None) -> list[list[int]]:
    """Each row's tokens where ``mask`` is 1; the ones must be the row's suffix (left padding)."""
    if mask is None:
        return ids.tolist()
    if mask.shape != ids.shape:
        raise UnsupportedUsageError(f"attention_mask has shape {tuple(mask.shape)}, input_ids {tuple(ids.shape)}; pass one mask value per token.")
    prompts = []
    for row, row_mask in zip(ids.tolist(), mask.bool().tolist()):
        start = row_mask.index(True) if True in row_mask else len(row_mask)
        if not all(row_mask[start:]) or start == len(row_mask):
            raise UnsupportedUsageError("Batched DSpark needs left-padded rows (zeros then ones in attention_mask, at least one token each); pad on the left.")
        prompts.append(row[start:])
    return prompts


PAGE = 16


def workload_sized_config(prompts: list[list[int]], max_new: int, block_size: int) -> ContinuousBatchingConfig:
    """A paged cache for exactly this batch: pages of :data:`PAGE` tokens for every request's prompt,
    new tokens and one drafted block, all requests in one step. (transformers' default sizes the cache
    and the packed attention mask from the machine's free memory, which on a CPU host costs seconds
    of set-up for a few requests.)"""
    tokens = sum(len(p) + max_new + block_size + 1 for p in prompts)
    pages = -(-tokens // PAGE) + len(prompts)
    batch_tokens = max(sum(len(p) for p in prompts), len(prompts) * (block_size + 1)) + block_size + 1
    return ContinuousBatchingConfig(page_size=PAGE, num_blocks=pages, max_batch_tokens=batch_tokens, max_requests_per_batch=len(prompts))


def generate_padded(target, input_ids: torch.LongTensor, generation_config=None, assistant_model=None, **kwargs) -> torch.LongTensor:
    """Run a left-padded batch on the speculative engine; return ``[R, width + new]`` like ``generate``.
    ``continuous_batching_config`` may be passed through ``kwargs``; the default is sized to the batch
    (:func:`workload_sized_config`)."""
    cb_config = kwargs.pop("continuous_batching_config", None)
    given = sorted(k for k in _REFUSED if kwargs.pop(k, None) not in (None, False))
    if given:
        raise UnsupportedUsageError(f"generate() with a batch and a DSpark draft does not take {', '.join(given)}; run one sequence per call for these.")
    attention_mask = kwargs.pop("attention_mask", None)
    config, model_kwargs = target._prepare_generation_config(generation_config, **kwargs)
    model_kwargs = {k: v for k, v in model_kwargs.items() if v is not None and k != "use_cache"}
    if model_kwargs:
        raise UnsupportedUsageError(f"generate() with a batch and a DSpark draft takes no extra model inputs; got {', '.join(sorted(model_kwargs))}.")
    if config.return_dict_in_generate or config.stop_strings:
        raise UnsupportedUsageError("generate() with a batch and a DSpark draft returns token ids only, without stop_strings; run one sequence per call for these.")
    width = input_ids.shape[1]
    max_new = config.max_new_tokens if config.max_new_tokens is not None else config.max_length - width
    prompts = strip_left_padding(input_ids, attention_mask)
    eos = config.eos_token_id
    eos_list = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    pad = config.pad_token_id if config.pad_token_id is not None else (eos_list[0] if eos_list else None)
    if cb_config is None:
        cb_config = workload_sized_config(prompts, max(0, max_new), getattr(assistant_model.config, "block_size", 8))
    results = target.generate_batch(inputs=prompts, generation_config=config, continuous_batching_config=cb_config,
                                    max_new_tokens=max(0, max_new), assistant_model=assistant_model)
    outputs = list(results.values())
    failed = [o for o in outputs if o.error is not None]
    if len(outputs) != len(prompts) or failed:
        reason = failed[0].error.splitlines()[0] if failed else f"{len(prompts) - len(outputs)} requests returned no result"
        raise RuntimeError(f"Batched DSpark generation failed: {reason}")
    longest = max(len(o.generated_tokens) for o in outputs)
    if pad is None and any(len(o.generated_tokens) < longest for o in outputs):
        raise UnsupportedUsageError("Rows stopped at different lengths and there is no pad_token_id (nor eos_token_id) to fill them; set generation_config.pad_token_id.")
    rows = [o.generated_tokens + [pad] * (longest - len(o.generated_tokens)) for o in outputs]
    new = torch.tensor(rows, dtype=input_ids.dtype, device=input_ids.device).reshape(len(rows), longest)
    return torch.cat([input_ids, new], dim=1)
