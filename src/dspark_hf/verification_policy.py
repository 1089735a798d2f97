"""Verification policies: how many drafted tokens of a block the target verifies this round.

Contract of :meth:`VerificationPolicy.verify_length`: given the per-slot confidences ``c_k`` of the
drafted block (``None`` for drafts without a confidence head) and the block size, return ``L`` in
``[0, block_size]``; the target then verifies the first ``L`` drafted tokens. A policy may look at
``c_k`` (which depends only on the tokens before slot ``k``) but never at the drafted tokens
themselves, and it must decide slot by slot from the left, stopping at its first "no": that is what
keeps speculative sampling lossless. :meth:`observe` receives every finished round's telemetry, for
policies that learn online.

Choose a policy per call with ``generation_config.dspark_policy`` (an instance, or a spec string such
as ``"whole"`` or ``"threshold:0.6"``), or per draft with ``draft.verification_policy``.
"""

from __future__ import annotations

import torch

from .errors import UnsupportedUsageError
from .telemetry import StepRecord


class VerificationPolicy:
    """Base class; subclasses implement :meth:`verify_length`."""

    name = "policy"

    def setup(self, target, draft, generation_config) -> None:
        """Called once per generate() call before the first round (e.g. to find a cost profile for
        this target and device); the default does nothing."""

    def verify_length(self, confidences: torch.Tensor | None, block_size: int) -> int:
        raise NotImplementedError

    def observe(self, record: StepRecord) -> None:
        """Called after each round with its outcome; the default ignores it."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class WholeBlock(VerificationPolicy):
    """Verify every drafted token (the paper's Table 1 setting; the reference's threshold 0).
    Best when verification is almost free, e.g. a memory-bound GPU target at batch 1."""

    name = "whole"

    def verify_length(self, confidences, block_size):
        return block_size


class ConfidenceThreshold(VerificationPolicy):
    """The reference evaluator's rule: verify up to, not including, the first slot whose confidence is
    below ``threshold``. Drafts without a confidence head verify the whole block. Use it when each
    verified token costs real target compute (CPU, large batches) and the draft's confidences are
    calibrated."""

    name = "threshold"

    def __init__(self, threshold: float = 0.5) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise UnsupportedUsageError(f"confidence threshold must lie in [0, 1], got {threshold}.")
        self.threshold = float(threshold)

    def verify_length(self, confidences, block_size):
        if confidences is None or self.threshold <= 0.0:
            return block_size
        below = (confidences < self.threshold).nonzero()
        return int(below[0, 0]) if below.numel() else block_size

    def __repr__(self) -> str:
        return f"ConfidenceThreshold({self.threshold})"


POLICIES: dict[str, type[VerificationPolicy]] = {"whole": WholeBlock, "threshold": ConfidenceThreshold}


def resolve_policy(spec: VerificationPolicy | str | float | None) -> VerificationPolicy:
    """A policy from an instance, ``None`` (whole block), a threshold number, or a spec string
    ``"name"`` / ``"name:arg"`` (e.g. ``"threshold:0.6"``)."""
    if spec is None:
        return WholeBlock()
    if isinstance(spec, VerificationPolicy):
        return spec
    if isinstance(spec, (int, float)):
        return ConfidenceThreshold(float(spec))
    name, _, arg = str(spec).partition(":")
    if name not in POLICIES:
        raise UnsupportedUsageError(f"Unknown verification policy {name!r}; choose one of {sorted(POLICIES)}.")
    return POLICIES[name](float(arg)) if arg else POLICIES[name]()
