"""Whether this thread's verification forwards run row by row.

A reduced-precision target keeps its output identical to plain decoding only when each row of a
multi-token verification forward is rounded as a one-token step would round it
(:mod:`dspark_hf.integration.exact_verification` does that to transformers' attention). That costs time,
so what the hardware-aware scheduler knows about the target's cost depends on it: cost profiles measured
with and without it are stored under different keys. This module only holds the flag, so that the
scheduling code can read it without importing the transformers integration.
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
