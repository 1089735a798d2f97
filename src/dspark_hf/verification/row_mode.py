"""Whether this thread's verification forwards run row by row.

A reduced-precision target keeps its output identical to plain decoding only when each row of a
multi-token verification forward is rounded as a one-token step would round it
(:mod:`dspark_hf.integration.exact_verification` does that to transformers' attention). That costs time,
so what the hardware-aware scheduler knows about the target's cost depends on it: cost profiles measured
with and without it are stored under different keys. A float32 target's verification forwards may
instead compute some row counts' linear layers weight-major, where that is faster on the machine
(:mod:`dspark_hf.integration.weight_major`); that too changes their cost. This module only holds the
flags, so that the scheduling code can read them without importing the transformers integration.
"""

from __future__ import annotations

import contextlib
import threading

_STATE = threading.local()


def single_step_rows_active() -> bool:
    """Whether the calling thread is inside :func:`row_by_row_scope`."""
    return getattr(_STATE, "depth", 0) > 0


@contextlib.contextmanager
def row_by_row_scope():
    """Mark this thread's forwards as row by row until the block ends (nests)."""
    _STATE.depth = getattr(_STATE, "depth", 0) + 1
    try:
        yield
    finally:
        _STATE.depth -= 1


def weight_major_rows() -> frozenset[int]:
    """The row counts whose verification forwards run their linear layers weight-major in the calling
    thread (empty outside :func:`weight_major_scope`)."""
    return getattr(_STATE, "weight_major", frozenset())


def compiled_rows() -> frozenset[int]:
    """The row counts (a subset of :func:`weight_major_rows`) whose float32 verification forwards run their
    linear layers with the compiled few-row kernel (:mod:`dspark_hf.integration.few_row_kernel`) instead of
    the weight-major product, in the calling thread (empty outside :func:`weight_major_scope`)."""
    return getattr(_STATE, "compiled", frozenset())


@contextlib.contextmanager
def weight_major_scope(rows, compiled=()):
    """Verification forwards of any of ``rows`` new rows run their linear layers weight-major in this
    thread until the block ends, those of the ``compiled`` counts among them (float32 only) with the compiled
    few-row kernel (the previous sets are restored after)."""
    previous = weight_major_rows(), compiled_rows()
    _STATE.weight_major = frozenset(int(r) for r in rows)
    _STATE.compiled = frozenset(int(r) for r in compiled) & _STATE.weight_major
    try:
        yield
    finally:
        _STATE.weight_major, _STATE.compiled = previous


def verification_mode() -> str:
    """How this thread's verification forwards compute: ``"rows"`` (row by row), ``"rows-weight-major"`` (row
    by row, some row counts' layers weight-major where bit-identical), ``"weight-major"`` (float32, some row
    counts' linear layers weight-major), ``"weight-major-compiled"`` (the same, some of those counts with the
    compiled few-row kernel) or ``"batched"`` (transformers' forward)."""
    if single_step_rows_active():
        return "rows-weight-major" if weight_major_rows() else "rows"
    if not weight_major_rows():
        return "batched"
    return "weight-major-compiled" if compiled_rows() else "weight-major"
