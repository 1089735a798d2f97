"""What a speculative batch cannot serve, each refused in one line before anything runs.

- DeepSeek-V4 drafters: their target's compressed-attention caches are made rewindable for
  transformers' ``DynamicCache`` at batch 1; the paged cache of continuous batching has no
  compressed-attention layers to hold them (use ``generate()`` one sequence at a time);
- ``num_return_sequences > 1`` (transformers forks requests' caches mid-prefill; not with drafts);
- a draft that does not fit the target (the same checks as ``generate()``).
"""

from __future__ import annotations

from dspark_hf.errors import UnsupportedUsageError
from dspark_hf.integration.fit_checks import check_draft_fits_target
from dspark_hf.models.deepseek_v4.modeling import DSparkV4Draft
from dspark_hf.models.dspark.modeling_dspark import DSparkDraft
from dspark_hf.models.eagle3.modeling_eagle3 import Eagle3Draft


def is_our_draft(model) -> bool:
    """One of this library's drafts (DSpark / DFlash, DeepSeek-V4 drafter, EAGLE-3)."""
    return isinstance(model, (DSparkDraft, DSparkV4Draft, Eagle3Draft))


def check_batch_draft(draft) -> None:
    """Raise :class:`UnsupportedUsageError` for a kind of draft that never drafts in a batch, whatever
    the transformers release (so that this reason, not a version one, is what the user reads)."""
    if isinstance(draft, DSparkV4Draft):
        raise UnsupportedUsageError(
            "The DeepSeek-V4 drafter cannot draft in a batch: transformers' paged cache has no DeepSeek-V4 "
            "compressed-attention layers to verify into; call generate() with one sequence at a time."
        )
    if not isinstance(draft, (DSparkDraft, Eagle3Draft)):
        raise UnsupportedUsageError(
            f"assistant_model must be a DSpark, DFlash or EAGLE-3 draft for batched speculative decoding, got {type(draft).__name__}."
        )


def check_batch_speculation(target, draft, generation_config) -> None:
    """Raise :class:`UnsupportedUsageError` (or ``CompatibilityError``) when ``draft`` cannot draft for
    ``target`` in a continuous batch with ``generation_config``."""
    check_batch_draft(draft)
    returns = getattr(generation_config, "num_return_sequences", None) or 1
    if returns > 1:
        raise UnsupportedUsageError(f"Batched DSpark returns one sequence per request; got num_return_sequences={returns}.")
    check_draft_fits_target(draft, target)
