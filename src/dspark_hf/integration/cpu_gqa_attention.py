"""Grouped-query SDPA on CPU for masked multi-row queries, instead of copying keys and values per head.

Why: for a query of several rows with an attention mask (a verification forward ``[last, d_1 .. d_L]``
over a cache, or a packed continuous-batching forward), transformers' ``"sdpa"`` attention expands the
keys and values of a grouped-query model to every query head (``repeat_kv``: a copy of the whole cache
per layer and step) unless the device is known to run PyTorch's grouped-query SDPA with a mask; on CPU it
copies. PyTorch's CPU SDPA takes the mask and ``enable_gqa=True`` together and gives bit-identical results
(each query head reads its key/value head instead of a copy of it; tested against transformers' own
function in ``tests/test_cpu_gqa_attention.py``). The copy grows with the context: on the bundled SmolLM2
(9 query heads, 3 key/value heads), float32, one thread of this project's AMD EPYC, forwards of 4 / 8 / 16
rows over a 1,024-token cache took 0.84 / 0.88 / 0.94 of transformers' time, over a 256-token cache
0.93-1.02 (``scripts/ab_cpu_gqa.py``: both functions interleaved in one run, medians;
``docs/measurements/2026-12-04b/``). transformers 5.24 has the same switch process-wide for every
device (``TRANSFORMERS_SDPA_FORCE_GQA=1``); 5.20 has none.

What: :func:`install_cpu_gqa_attention` (run by ``import dspark_hf``; ``DSPARK_HF_CPU_GQA=0`` in the
environment turns it off) wraps transformers' ``"sdpa"`` attention function once: a call on CPU tensors
with a mask, more than one query row, grouped key/value heads of the query's head size and nothing else
(no position bias, soft-capping or attention weights asked for) runs PyTorch's SDPA with the mask and
``enable_gqa=True``; every other call goes to transformers' function unchanged. It applies to plain
decoding and DSpark alike in a process that imported dspark_hf, so speed comparisons made in one
process (``dspark bench``) compare the methods, not the attention. One-row steps (plain decoding) never
take this path.
"""

from __future__ import annotations

import os

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

ENV = "DSPARK_HF_CPU_GQA"
_WRAPPED_FLAG = "_dspark_hf_cpu_gqa"
_OTHER_KWARGS = ("position_bias", "softcap", "output_attentions", "s_aux", "sinks")
# Set on this package's attention wrappers that hand every one-row query to the function they wrap, unchanged
# (this one, and the block-diagonal one of ``cpu_block_attention``): row-by-row verification calls past them.
ONE_ROW_PASS_THROUGH = "_dspark_hf_one_row_pass_through"


def grouped_query_applies(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, dropout: float, kwargs: dict) -> bool:
    """Whether this attention call takes the CPU grouped-query path (see the module docstring)."""
    groups = getattr(module, "num_key_value_groups", 1)
    return (
        query.device.type == "cpu"
        and attention_mask is not None
        and query.shape[2] > 1
        and groups > 1
        and query.shape[1] == key.shape[1] * groups
        and key.shape[-1] == value.shape[-1] == query.shape[-1]
        and not dropout
        and not any(kwargs.get(name) is not None and kwargs.get(name) is not False for name in _OTHER_KWARGS)
    )


def grouped_query_sdpa(query, key, value, attention_mask, scaling) -> torch.Tensor:
    """PyTorch's SDPA over grouped key/value heads with ``attention_mask``, laid out as transformers'
    attention functions return it: ``(batch, rows, heads, head_dim)``."""
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=scaling, enable_gqa=True)
    return out.transpose(1, 2).contiguous()


def install_cpu_gqa_attention() -> bool:
    """Wrap transformers' ``"sdpa"`` attention once (idempotent). Returns whether the wrapper is in place
    (not when ``DSPARK_HF_CPU_GQA=0``)."""
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    current = ALL_ATTENTION_FUNCTIONS.get("sdpa", sdpa_attention_forward)
    if is_wrapped_by(current, _WRAPPED_FLAG):
        return True
    original = current

    def sdpa_cpu_gqa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None, **kwargs):
        if grouped_query_applies(module, query, key, value, attention_mask, dropout, kwargs):
            return grouped_query_sdpa(query, key, value, attention_mask, scaling), None
        return original(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)

    setattr(sdpa_cpu_gqa, _WRAPPED_FLAG, True)
    setattr(sdpa_cpu_gqa, ONE_ROW_PASS_THROUGH, True)  # grouped_query_applies needs more than one query row
    sdpa_cpu_gqa.__wrapped__ = original
    AttentionInterface.register("sdpa", sdpa_cpu_gqa)
    return True


def past_one_row_pass_throughs(function):
    """``function`` without the wrappers of this package on top of it that pass every one-row query on
    unchanged (:data:`ONE_ROW_PASS_THROUGH`): what a one-row query reaches through them anyway, one or two
    Python calls sooner. Stops at the first function that is not such a wrapper."""
    seen = 0
    while getattr(function, ONE_ROW_PASS_THROUGH, False) and getattr(function, "__wrapped__", None) is not None and seen < 8:
        function = function.__wrapped__
        seen += 1
    return function


def is_wrapped_by(function, flag: str) -> bool:
    """Whether ``function`` or a function it wraps (``__wrapped__``) carries ``flag``: the attention
    wrappers of this package find themselves under each other's."""
    seen = 0
    while function is not None and seen < 8:
        if getattr(function, flag, False):
            return True
        function = getattr(function, "__wrapped__", None)
        seen += 1
    return False
