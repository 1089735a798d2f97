"""A padded batch of per-request draft caches, and each request's rows cut back out of it.

Both batched drafting paths (DSpark blocks, :mod:`.batched_drafting`; EAGLE-3 chains,
:mod:`.batched_eagle3`) keep one ``DynamicCache`` per request, with ragged lengths, and run one draft
forward over all requests: :func:`right_aligned` copies every request's cached rows into one cache of
``width`` slots per layer, right-aligned (the slots before a request's rows are zero padding, which the
forward's mask hides); after the forward, which appends every request's new rows to it,
:func:`request_rows` cuts a request's own rows back out as its new cache.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache


def _layer_rows(cache: DynamicCache, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    if len(cache.layers) <= layer or cache.layers[layer].keys is None or cache.layers[layer].keys.numel() == 0:
        return None
    return cache.layers[layer].keys, cache.layers[layer].values


def right_aligned(caches: list[DynamicCache], lengths: list[int], layers: int) -> DynamicCache:
    """One cache of ``max(lengths)`` slots per layer holding request ``r``'s ``lengths[r]`` cached rows
    in its last slots (an empty cache when no request has any)."""
    width = max(lengths)
    padded = DynamicCache()
    if not width:
        return padded
    for layer in range(layers):
        rows = [_layer_rows(cache, layer) for cache in caches]
        like = next(kv for kv in rows if kv is not None)
        keys = like[0].new_zeros(len(caches), like[0].shape[1], width, like[0].shape[3])
        values = like[1].new_zeros(len(caches), like[1].shape[1], width, like[1].shape[3])
        for r, kv in enumerate(rows):
            if kv is not None:
                keys[r, :, width - lengths[r] :] = kv[0][0]
                values[r, :, width - lengths[r] :] = kv[1][0]
        padded.update(keys, values, layer)
    return padded


def request_rows(padded: DynamicCache, request: int, keep: torch.Tensor, layers: int) -> DynamicCache:
    """Request ``request``'s cache: the slots ``keep`` (in order) of its row of ``padded``, every layer."""
    own = DynamicCache()
    for layer in range(layers):
        keys, values = padded.layers[layer].keys, padded.layers[layer].values
        index = keep.to(keys.device)
        own.update(keys[request : request + 1, :, index].contiguous(), values[request : request + 1, :, index].contiguous(), layer)
    return own
