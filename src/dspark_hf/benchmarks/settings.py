"""Process settings a benchmark may touch, put back as they were when it ends (even on error).

:func:`preserved_settings` keeps torch's CPU thread count, torch's random state and, for each draft
given, its ``verification_policy``, its online acceptance estimates and its ``last_telemetry``; the
benchmark sets its own thread count (``--threads``, default 1) inside.
"""

from __future__ import annotations

import contextlib

import torch

_DRAFT_ATTRIBUTES = ("verification_policy", "_dspark_acceptance_estimator", "last_telemetry")
_MISSING = object()


@contextlib.contextmanager
def preserved_settings(drafts=(), threads: int | None = None):
    """Run the block with ``torch.set_num_threads(threads)`` (when given); restore everything after."""
    saved_threads = torch.get_num_threads()
    saved_rng = torch.get_rng_state()
    saved_cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    saved = [(d, {a: d.__dict__.get(a, _MISSING) for a in _DRAFT_ATTRIBUTES}) for d in drafts]
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(saved_threads)
        torch.set_rng_state(saved_rng)
        if saved_cuda_rng is not None:
            torch.cuda.set_rng_state_all(saved_cuda_rng)
        for draft, values in saved:
            for name, value in values.items():
                if value is _MISSING:
                    draft.__dict__.pop(name, None)
                else:
                    draft.__dict__[name] = value
