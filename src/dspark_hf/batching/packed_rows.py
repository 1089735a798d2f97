"""Which rows of a packed forward belong to which request, and which of their logits are needed.

transformers' packed forward concatenates every scheduled request's query tokens into one sequence
``[1, T]`` (``cu_seq_lens_q``). A request that verifies a drafted block needs the logits of all its
``L + 1`` rows; a request whose prefill ends in this forward needs its last row; a prefill chunk
that does not end the prompt needs none. Features (forward hooks, ``[1, T, F]``) are split by the
same offsets.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequestRows:
    """``request_id``'s query rows ``start .. start + length - 1`` in the packed forward and, when its
    logits are needed, their rows ``logits_start ..`` in the kept logits (``logits_count`` of them)."""

    request_id: str
    start: int
    length: int
    logits_start: int
    logits_count: int


def layout(requests: list[tuple[str, int, str]]) -> tuple[list[RequestRows], list[int]]:
    """``requests``: ``(request_id, query_length, kind)`` in packed order, ``kind`` one of
    ``"verify"`` (all rows' logits), ``"last"`` (the last row's), ``"none"``. Returns each request's
    rows and the packed-row indices whose logits to keep (``logits_to_keep``)."""
    rows, keep, start = [], [], 0
    for request_id, length, kind in requests:
        picked = list(range(start, start + length)) if kind == "verify" else [start + length - 1] if kind == "last" else []
        rows.append(RequestRows(request_id, start, length, len(keep), len(picked)))
        keep.extend(picked)
        start += length
    return rows, keep
