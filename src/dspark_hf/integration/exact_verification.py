"""Verification forwards whose rows round exactly as plain decoding's one-token steps.

Why: plain ``generate`` computes token ``t`` in a forward of one query row; a verification forward
computes ``L + 1`` rows at once. In float32 the two agree to ~1e-6 and greedy outputs match; in
bfloat16 the difference is rounded to bf16 and flips argmaxes (measured on the bundled SmolLM2: 4-6 of
10 prompts diverge within 64 tokens). Every per-row operation of a decoder layer (linear layers, norms,
rotary embeddings, activations) is a function of its own row only, but a bf16 GEMM may change its
reduction order with the number of rows, depending on the CPU, the weight's shape and the row count
(on this project's AMD EPYC: SmolLM2's 1536 -> 576 projection beyond 6 rows). And attention mixes rows
differently: SDPA's kernels split a multi-row query differently from a one-row one.

What: while :func:`single_step_rows` is active in a thread, the ``"sdpa"`` attention of transformers
(``AttentionInterface``) computes a multi-row query over a non-empty cache one row at a time, each row
over exactly the keys a one-token step would see, with the same call (no mask where every key is
visible, as plain decoding passes none); and the target's linear layers in such a forward run in
chunks of as many rows as this device rounds exactly as single rows (probed per weight shape:
:mod:`dspark_hf.integration.linear_rows`). Prefill (as many keys as queries) and every forward outside
the context run transformers' own functions unchanged, so plain ``generate`` is untouched.

Cost: ``L + 1`` small attention calls per layer instead of one, and one call per row chunk of each
linear layer that needs chunks (``down_proj`` row by row on this project's AMD EPYC: 134 ms for a 2-row
verification forward against 99 ms for one row, measured in ``docs/benchmarks.md``). On an Intel Xeon
(bundled SmolLM2 bf16, 256-token cache, one thread) what row by row adds to transformers' batched forward
went from about 2.2 / 5.2 / 9.6 ms at 2 / 4 / 8 rows to 0.0 / 2.6 / 6.4 once the mask was checked once per
forward and the pass-through wrappers skipped (``docs/measurements/2026-12-06c/``). Calling torch's SDPA
directly for each row instead of transformers' function was measured too and saved only about 0.5 ms at
8 rows, so rows still go through transformers' own function.
"""

from __future__ import annotations

import contextlib
import threading

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

from dspark_hf.integration.cpu_gqa_attention import is_wrapped_by, past_one_row_pass_throughs
from dspark_hf.integration.linear_rows import chunk_verification_linears, invariant_rows, prime_invariant_rows
from dspark_hf.verification.row_mode import row_by_row_scope, single_step_rows_active

_WRAPPED_FLAG = "_dspark_hf_single_step_rows"


@contextlib.contextmanager
def single_step_rows(target: torch.nn.Module | None = None):
    """Within this block (this thread only), multi-row attention over a cache runs row by row, and the
    linear layers of ``target``'s verification forwards run in row chunks this device rounds as single
    rows (:mod:`dspark_hf.integration.linear_rows`); cost profiles are those measured that way
    (:mod:`dspark_hf.verification.row_mode`)."""
    install_single_step_attention()
    if target is not None:
        chunk_verification_linears(target)
        prime_invariant_rows(target)
    with row_by_row_scope():
        yield


_LAST_MASK = threading.local()


def fully_visible_rows(attention_mask: torch.Tensor | None, rows: int, keys: int) -> list[bool]:
    """For each query row ``i`` of a verification forward (``rows`` new rows, the last ones of ``keys``), whether
    the mask lets it see every key a one-token step at its position would see (``keys - rows + i + 1`` of them):
    such a row is computed without a mask, as plain decoding computes it. The mask is the same tensor in every
    layer of a forward, so the answer for the last mask seen in this thread is kept (one check per forward,
    not one per row and layer), except for inference-mode tensors (no version counter)."""
    if attention_mask is None:
        return [True] * rows
    # An in-place change of the same tensor is a new mask; an inference-mode tensor has no version counter to
    # tell, so its answer is not kept.
    key = None if attention_mask.is_inference() else (rows, keys, attention_mask._version)
    last = getattr(_LAST_MASK, "entry", None)
    if key is not None and last is not None and last[0] is attention_mask and last[1] == key:
        return last[2]
    allowed = attention_mask if attention_mask.dtype == torch.bool else attention_mask == 0
    seen = torch.arange(keys, device=attention_mask.device)[None, :] < torch.arange(keys - rows + 1, keys + 1, device=attention_mask.device)[:, None]
    answer = (allowed[..., :rows, :keys] | ~seen).flatten(0, -3).all(dim=-1).all(dim=0).tolist()
    _LAST_MASK.entry = None if key is None else (attention_mask, key, answer)
    return answer


def _row_by_row(original, module, query, key, value, attention_mask, **kwargs):
    rows, keys = query.shape[2], key.shape[2]
    visible_rows = fully_visible_rows(attention_mask, rows, keys)
    outputs = []
    for i in range(rows):
        visible = keys - rows + i + 1
        mask = None if visible_rows[i] else attention_mask[..., i : i + 1, :visible]
        out, _ = original(module, query[:, :, i : i + 1], key[:, :, :visible], value[:, :, :visible], mask, **kwargs)
        outputs.append(out)
    return torch.cat(outputs, dim=1), None


def install_single_step_attention() -> None:
    """Wrap transformers' ``"sdpa"`` attention once (idempotent); a pass-through outside the context."""
    current = ALL_ATTENTION_FUNCTIONS.get("sdpa", sdpa_attention_forward)
    if is_wrapped_by(current, _WRAPPED_FLAG):
        return
    original = current
    one_row = past_one_row_pass_throughs(original)  # what a one-row query reaches through ``original`` anyway

    def sdpa_single_step_rows(module, query, key, value, attention_mask, *args, **kwargs):
        rows, keys = query.shape[2], key.shape[2]
        if not single_step_rows_active() or rows == 1 or keys == rows or query.shape[0] != 1:
            return original(module, query, key, value, attention_mask, *args, **kwargs)
        kwargs.pop("is_causal", None)  # a one-row query is never causal-masked, as in plain decoding
        return _row_by_row(one_row, module, query, key, value, attention_mask, **kwargs)

    setattr(sdpa_single_step_rows, _WRAPPED_FLAG, True)
    sdpa_single_step_rows.__wrapped__ = original
    AttentionInterface.register("sdpa", sdpa_single_step_rows)


def target_attention(target) -> str:
    return str(getattr(target.config, "_attn_implementation", None) or "eager")


def wants_single_step_rows(target, generation_config) -> bool:
    """Whether a DSpark call on ``target`` verifies row by row: ``dspark_single_step_rows`` of the
    generation config (True / False), or by default whenever the target computes in reduced precision
    with SDPA attention (float32 targets keep the batched forward: their rounding differences are below
    what flips a token in practice, and the row-wise path would only cost time)."""
    asked = getattr(generation_config, "dspark_single_step_rows", None)
    if asked is not None:
        return bool(asked)
    dtype = next(target.parameters()).dtype
    return dtype in (torch.bfloat16, torch.float16) and target_attention(target) == "sdpa"


def bf16_linear_rows_invariant(in_features: int = 576, out_features: int = 1536, rows: int = 9,
                               device: str | torch.device = "cpu", dtype: torch.dtype = torch.bfloat16) -> bool:
    """Whether ``F.linear`` on this device gives each row of an ``n``-row input bit-identical to the same
    row alone, for every ``n <= rows``, for one weight of this shape (:func:`~dspark_hf.integration.linear_rows.invariant_rows`,
    order-revealing inputs). Where it holds, verification forwards need few row chunks; exactness does not
    rest on it (each weight shape is probed again when used)."""
    weight = torch.empty(out_features, in_features, device=device, dtype=dtype)
    return invariant_rows(weight) >= rows
