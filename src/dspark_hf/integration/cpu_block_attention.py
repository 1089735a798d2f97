"""Block-diagonal SDPA on CPU for packed (continuous-batching) forwards: each request's queries attend to
its own keys only, instead of to every request's keys through a mask that hides all but its own.

Why: transformers' continuous batching packs the query tokens of all ``R`` scheduled requests into one
row of ``Q`` tokens, reads every request's cached keys into one row of ``K`` keys, and, for the
``"sdpa"`` / ``"eager"`` attentions, builds a dense ``Q x K`` additive mask that is block-diagonal
(request ``r``'s rows see columns ``cu_seq_lens_k[r]:cu_seq_lens_k[r + 1]`` only, causally). The
attention then computes all ``Q x K`` scores and throws ``(R - 1) / R`` of them away: its cost grows with
``R^2``, where each request's own attention grows with ``R``. On GPUs transformers runs the packed forward
through varlen flash attention, which never forms the other requests' scores; on CPU there is no such
kernel. On the bundled SmolLM2 (30 layers, 9 query heads over 3 key/value heads, 256-token contexts),
float32, one thread of this project's AMD EPYC, one layer's attention over 16 requests of 1 / 2 / 4
query rows took 2.27 / 4.05 / 8.18 ms dense and 0.75 / 1.13 / 1.25 ms per block (the whole forward of
16 one-row requests is about 255 ms; measured 2026-12-05, ``docs/batching.md``).

What: :func:`install_cpu_block_attention` (run by ``import dspark_hf``; ``DSPARK_HF_CPU_BLOCK_ATTENTION=0``
turns it off) wraps transformers' ``"sdpa"`` attention function once. A call on CPU tensors carrying the
packed forward's ``cu_seq_lens_q`` / ``cu_seq_lens_k`` (tensors, as transformers' paged cache hands them to
the attention after its update) for more than one sequence, a mask, a batch of one, query and key
lengths equal to the last cumulative lengths and nothing else (no position bias, soft-capping, sinks or
attention weights asked for) runs one SDPA per request on its slice of the queries, keys, values and
mask (PyTorch's grouped-query SDPA for grouped key/value heads, as
:mod:`dspark_hf.integration.cpu_gqa_attention` does); every other call goes to the wrapped function.
It relies on transformers' contract for those arguments: the mask is zero (hidden) outside the diagonal
blocks (``generation/continuous_batching/utils.py::build_attention_mask``). The result equals the dense
computation up to float rounding (the softmax sums over the same visible keys in another order; 1e-7
relative in float32, ``tests/test_cpu_block_attention.py``): not bit-identical. It applies to plain
continuous batching and to the speculative engine alike, so the load benchmark compares the methods,
not the attention; a packed cost profile records which attention it timed
(:func:`packed_attention`, ``dspark profile --packed``). Installed only on the transformers releases it was
tested on (:data:`TESTED_TRANSFORMERS`, the batch engine's pin): the packed forward's keyword arguments are
internals of continuous batching; on other releases transformers' attention runs unchanged.
"""

from __future__ import annotations

import os

import torch
import transformers
from packaging.version import Version
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

from dspark_hf.integration.cpu_gqa_attention import ONE_ROW_PASS_THROUGH, is_wrapped_by

ENV = "DSPARK_HF_CPU_BLOCK_ATTENTION"
_WRAPPED_FLAG = "_dspark_hf_cpu_block_attention"
_OTHER_KWARGS = ("position_bias", "softcap", "output_attentions", "s_aux", "sinks")
TESTED_TRANSFORMERS = ">=5.24,<5.25"  # the batch engine's pin (dspark_hf.batching.versions; a test keeps them equal)
_MIN, _MAX = Version("5.24"), Version("5.25")


def tested_release(version: str | None = None) -> bool:
    """Whether ``version`` (default: the installed transformers) is one this module was tested on."""
    release = Version(Version(version or transformers.__version__).base_version)
    return _MIN <= release < _MAX


def _switched_off() -> bool:
    return os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off")


def block_bounds(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask, dropout: float,
                 kwargs: dict) -> list[tuple[int, int, int, int]] | None:
    """The requests' ``(q_start, q_end, k_start, k_end)`` when this attention call takes the block path (see
    the module docstring), else ``None``. Requests without query rows are left out."""
    cu_q, cu_k = kwargs.get("cu_seq_lens_q"), kwargs.get("cu_seq_lens_k")
    if not (isinstance(cu_q, torch.Tensor) and isinstance(cu_k, torch.Tensor)):
        return None
    if (query.device.type != "cpu" or attention_mask is None or query.shape[0] != 1 or dropout
            or cu_q.dim() != 1 or cu_q.shape != cu_k.shape or cu_q.numel() < 3):
        return None
    if any(kwargs.get(name) is not None and kwargs.get(name) is not False for name in _OTHER_KWARGS):
        return None
    if key.shape[-1] != query.shape[-1] or value.shape[-1] != query.shape[-1] or query.shape[1] % key.shape[1]:
        return None
    qs, ks = cu_q.tolist(), cu_k.tolist()
    if qs[0] != 0 or ks[0] != 0 or qs[-1] != query.shape[2] or ks[-1] != key.shape[2]:
        return None
    bounds = [(qs[i], qs[i + 1], ks[i], ks[i + 1]) for i in range(len(qs) - 1) if qs[i + 1] > qs[i]]
    return bounds if len(bounds) > 1 else None


def block_sdpa(query, key, value, attention_mask, scaling, bounds) -> torch.Tensor:
    """One SDPA per request block, laid out as transformers' attention functions return it:
    ``(1, rows, heads, head_dim)``."""
    gqa = query.shape[1] != key.shape[1]
    sdpa = torch.nn.functional.scaled_dot_product_attention
    out = query.new_empty(1, query.shape[2], query.shape[1], query.shape[3])
    for q0, q1, k0, k1 in bounds:
        block = sdpa(query[:, :, q0:q1], key[:, :, k0:k1], value[:, :, k0:k1],
                     attn_mask=attention_mask[..., q0:q1, k0:k1], scale=scaling, enable_gqa=gqa)
        out[:, q0:q1] = block.transpose(1, 2)
    return out


def install_cpu_block_attention() -> bool:
    """Wrap transformers' ``"sdpa"`` attention once (idempotent). Returns whether the wrapper is in place
    (not when ``DSPARK_HF_CPU_BLOCK_ATTENTION=0``, nor on an untested transformers release)."""
    if _switched_off() or not tested_release():
        return False
    current = ALL_ATTENTION_FUNCTIONS.get("sdpa", sdpa_attention_forward)
    if is_wrapped_by(current, _WRAPPED_FLAG):
        return True
    original = current

    def sdpa_cpu_blocks(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None, **kwargs):
        bounds = block_bounds(query, key, value, attention_mask, dropout, kwargs)
        if bounds is not None:
            return block_sdpa(query, key, value, attention_mask, scaling, bounds), None
        return original(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)

    setattr(sdpa_cpu_blocks, _WRAPPED_FLAG, True)
    setattr(sdpa_cpu_blocks, ONE_ROW_PASS_THROUGH, True)  # a one-row query holds rows of one request at most
    sdpa_cpu_blocks.__wrapped__ = original
    AttentionInterface.register("sdpa", sdpa_cpu_blocks)
    return True


def block_attention_installed() -> bool:
    """Whether transformers' ``"sdpa"`` attention currently runs through this module's wrapper."""
    return is_wrapped_by(ALL_ATTENTION_FUNCTIONS.get("sdpa"), _WRAPPED_FLAG)


def packed_attention(device: torch.device | str) -> str:
    """The attention a packed ``"sdpa"`` forward runs on ``device``: ``"block-diagonal"`` (this module's, on
    CPU while installed) or ``"dense"`` (transformers' masked SDPA)."""
    kind = torch.device(device).type
    return "block-diagonal" if kind == "cpu" and block_attention_installed() else "dense"
