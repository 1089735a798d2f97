"""Routes transformers' batch entry points to the speculative engine when the assistant is a DSpark draft.

``import dspark_hf`` wraps three methods, each passing straight through unless ``assistant_model`` is
one of this library's drafts:

- ``init_continuous_batching(..., assistant_model=draft)``: returns a
  :class:`~dspark_hf.batching.manager.SpeculativeBatchingManager` (a persistent manager cached on the
  target is reused only when it drafts with the same draft);
- ``generate_batch(inputs, ..., assistant_model=draft)``: transformers' own ``generate_batch`` (request
  ids, ordering, progress bar, results), whose manager is the speculative one;
- ``generate(ids, attention_mask=mask, assistant_model=draft)`` with ``R > 1`` rows:
  :func:`dspark_hf.batching.padded.generate_padded`; batch-1 calls go on to the batch-1 path.

Without these wrappers transformers' ``generate_batch`` silently ignores ``assistant_model``.
"""

from __future__ import annotations

import contextvars
import functools
import inspect

from transformers.generation.continuous_batching.continuous_api import ContinuousMixin
from transformers.generation.utils import GenerationMixin

from dspark_hf.batching.manager import SpeculativeBatchingManager
from dspark_hf.batching.padded import generate_padded
from dspark_hf.batching.refusals import check_batch_draft, check_batch_speculation, is_our_draft
from dspark_hf.batching.versions import check_batching_transformers

_PATCHED_FLAG = "_dspark_hf_batching_original"
# The draft of the generate_batch call in progress on this thread (generate_batch reaches
# init_continuous_batching through transformers' context manager, which does not pass it on).
_ASSISTANT: contextvars.ContextVar = contextvars.ContextVar("dspark_batch_assistant", default=None)


def speculative_manager(target, draft, generation_config=None, continuous_batching_config=None, workload_hints=None):
    """A :class:`SpeculativeBatchingManager` for ``target`` drafting with ``draft`` (checks first: the
    kinds of draft that never batch, then the transformers release, then the target and options)."""
    check_batch_draft(draft)
    check_batching_transformers()
    config = generation_config if generation_config is not None else target.generation_config
    check_batch_speculation(target, draft, config)
    if config.eos_token_id is None:
        config.eos_token_id = -1  # transformers' own convention for "no EOS" in continuous batching
    return SpeculativeBatchingManager(target, config, continuous_batching_config, workload_hints, draft=draft)


def install_batching_hook() -> None:
    """Wrap ``init_continuous_batching``, ``generate_batch`` and ``generate`` once; idempotent."""
    if hasattr(ContinuousMixin.init_continuous_batching, _PATCHED_FLAG):
        return
    original_init = ContinuousMixin.init_continuous_batching
    original_batch = ContinuousMixin.generate_batch
    original_generate = GenerationMixin.generate
    generate_signature = inspect.signature(original_generate)

    @functools.wraps(original_init)
    def init_continuous_batching(self, generation_config=None, continuous_batching_config=None, workload_hints=None, assistant_model=None):
        draft = assistant_model if assistant_model is not None else _ASSISTANT.get()
        if not is_our_draft(draft):
            return original_init(self, generation_config, continuous_batching_config, workload_hints)
        cached = getattr(self, "_cached_continuous_batching_manager", None)
        if isinstance(cached, SpeculativeBatchingManager) and cached.speculation.draft is draft:
            cached.switch_to_cb_friendly_attn(self, cached.continuous_batching_config.auto_switch_to_flash)
            return cached
        return speculative_manager(self, draft, generation_config, continuous_batching_config, workload_hints)

    @functools.wraps(original_batch)
    def generate_batch(self, inputs, *args, **kwargs):
        draft = kwargs.pop("assistant_model", None)
        if not is_our_draft(draft):
            if draft is not None:
                kwargs["assistant_model"] = draft  # not ours: transformers' behaviour, unchanged
            return original_batch(self, inputs, *args, **kwargs)
        token = _ASSISTANT.set(draft)
        try:
            return original_batch(self, inputs, *args, **kwargs)
        finally:
            _ASSISTANT.reset(token)

    @functools.wraps(original_generate)
    def generate(self, *args, **kwargs):
        if is_our_draft(kwargs.get("assistant_model")):
            arguments = generate_signature.bind(self, *args, **kwargs).arguments
            extra = dict(arguments.get("kwargs", {}))
            ids = arguments.get("inputs")
            if ids is None:
                ids = extra.get("input_ids")
            if ids is not None and getattr(ids, "dim", lambda: 0)() == 2 and ids.shape[0] > 1:
                named = {k: v for k, v in arguments.items() if k not in ("self", "kwargs", "inputs")}
                extra.pop("input_ids", None)
                return generate_padded(self, ids, **named, **extra)
        return original_generate(self, *args, **kwargs)

    for wrapper, original in ((init_continuous_batching, original_init), (generate_batch, original_batch), (generate, original_generate)):
        setattr(wrapper, _PATCHED_FLAG, original)
    ContinuousMixin.init_continuous_batching = init_continuous_batching
    ContinuousMixin.generate_batch = generate_batch
    GenerationMixin.generate = generate
