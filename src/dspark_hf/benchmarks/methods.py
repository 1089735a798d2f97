"""What ``dspark bench`` measures: one class per decoding method, each running one timed ``generate``.

Every method runs on a target with a shared :class:`~transformers.GenerationConfig` (same token budget,
temperature and stopping rules), so outputs and timings are comparable:

- :class:`Plain`: ``target.generate`` with no assistant (the reference for speed and identity);
- :class:`PlainOnDSparkKernels`: the same, inside the verification context a DSpark call runs in, so its
  one-token steps use the kernels a DSpark call's own one-token steps use (what those kernels give alone);
- :class:`PromptLookup`: transformers' prompt lookup decoding (``prompt_lookup_num_tokens``);
- :class:`AssistantModel`: transformers' assisted generation with a separate small model that shares
  the target's tokenizer;
- :class:`DSpark`: a DSpark draft under one verification policy (``dspark_policy``); the policy
  instance is resolved once and reused across prompts, so online policies keep learning as they would;
  ``options`` (generation options such as ``dspark_weight_major=False``) make a variant of it.
"""

from __future__ import annotations

import copy

from dspark_hf.benchmarks.rounds import recording_rounds
from dspark_hf.benchmarks.timing import TimedRun, timed_generate
from dspark_hf.integration.verification_forwards import verification_context


class Method:
    """Base: ``id`` (unique key in the report), ``kind``, ``label`` (table text), :meth:`prepare`, :meth:`run`."""

    kind = "method"

    def __init__(self, id: str, label: str | None = None) -> None:
        self.id = id
        self.label = label or id

    def prepare(self, target, generation_config) -> None:
        """Called once before any warm-up or timed :meth:`run`: the one-off measurements a first call would make
        (which row counts run weight-major or compiled, a cost profile) are made here, so that no timed call,
        and no count of its target forwards, includes them whatever ``--warmup`` says. The default does nothing."""

    def run(self, target, input_ids, generation_config) -> TimedRun:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"id": self.id, "kind": self.kind, "label": self.label}


class Plain(Method):
    kind = "plain"

    def __init__(self, id: str = "plain") -> None:
        super().__init__(id, "plain generate")

    def run(self, target, input_ids, generation_config) -> TimedRun:
        return timed_generate(target, input_ids, generation_config)


class PlainOnDSparkKernels(Method):
    """``target.generate`` with no assistant, run inside
    :func:`~dspark_hf.integration.verification_forwards.verification_context` for the call's generation config:
    the one-token steps over the cache then run as a DSpark call's steps run (a bf16 target on a CPU: layers
    weight-major where bit-identical to ``F.linear`` and measured faster; a float32 one: weight-major where
    one row is measured faster). The prefill is unchanged. Its speed against :class:`Plain` is what those
    kernels give without any drafting; a DSpark method's speed against it is what speculation adds. Its
    output is checked against plain's like every method's."""

    kind = "plain_kernels"

    def __init__(self, id: str = "plain-kernels") -> None:
        super().__init__(id, "plain generate on DSpark's kernels")

    def prepare(self, target, generation_config) -> None:
        with verification_context(target, generation_config):  # measures its row counts here, where not held
            pass

    def run(self, target, input_ids, generation_config) -> TimedRun:
        with verification_context(target, generation_config):
            return timed_generate(target, input_ids, generation_config)


class PromptLookup(Method):
    kind = "prompt_lookup"

    def __init__(self, num_tokens: int = 10, id: str | None = None) -> None:
        super().__init__(id or f"prompt-lookup:{num_tokens}", f"prompt lookup ({num_tokens})")
        self.num_tokens = int(num_tokens)

    def run(self, target, input_ids, generation_config) -> TimedRun:
        config = copy.deepcopy(generation_config)
        config.prompt_lookup_num_tokens = self.num_tokens
        with recording_rounds(target) as records:
            result = timed_generate(target, input_ids, config)
        result.steps = list(records)
        return result

    def describe(self) -> dict:
        return {**super().describe(), "prompt_lookup_num_tokens": self.num_tokens}


class AssistantModel(Method):
    kind = "assisted"

    def __init__(self, assistant, name: str, id: str | None = None) -> None:
        super().__init__(id or f"assisted:{name}", f"assisted ({name})")
        self.assistant = assistant
        self.name = name

    def run(self, target, input_ids, generation_config) -> TimedRun:
        with recording_rounds(target) as records:
            result = timed_generate(target, input_ids, generation_config, assistant_model=self.assistant)
        result.steps = list(records)
        return result

    def describe(self) -> dict:
        return {**super().describe(), "assistant": self.name}


def draft_variant(draft) -> str:
    """``"eagle3"`` (an EAGLE-3 draft: ``ttt_length`` in its config), ``"dflash"`` (a DSpark-family draft
    with ``markov_rank`` 0) or ``"dspark"``."""
    config = draft.config
    if getattr(config, "ttt_length", None) is not None and getattr(config, "markov_rank", None) is None:
        return "eagle3"
    return "dflash" if config.markov_rank == 0 else "dspark"


def draft_block_size(draft) -> int:
    """Tokens a draft proposes per round: the block size, or an EAGLE-3 draft's chain length."""
    return draft.config.ttt_length if draft_variant(draft) == "eagle3" else draft.config.block_size


def has_confidence_head(draft) -> bool:
    """Whether the draft reports per-slot confidences (DSpark drafts with a head; never DFlash or EAGLE-3)."""
    return getattr(draft, "confidence_head", None) is not None


class DSpark(Method):
    """A speculative method driven by a draft through ``generate(assistant_model=draft)``: DSpark, DFlash
    and EAGLE-3 drafts (``variant``), under one verification policy."""

    kind = "dspark"

    def __init__(self, draft, draft_name: str, policy: str, id: str | None = None, options: dict | None = None, suffix: str = "") -> None:
        from dspark_hf.verification.policies import resolve_policy

        variant = draft_variant(draft)
        super().__init__(id or f"{variant}[{draft_name}]:{policy}{suffix}", f"{variant} {draft_name} / {policy}{suffix}")
        self.options = dict(options or {})
        self.draft = draft
        self.draft_name = draft_name
        self.policy_spec = policy
        self.policy = resolve_policy(policy)
        self.variant = variant

    def _config(self, generation_config):
        config = copy.deepcopy(generation_config)
        config.dspark_policy = self.policy
        for key, value in self.options.items():
            setattr(config, key, value)
        return config

    def prepare(self, target, generation_config) -> None:
        """What a call's first round would measure, measured now: the verification context's row counts, then,
        inside it as a call runs it, the policy's setup (a hardware-aware policy finds or makes its cost profile)."""
        config = self._config(generation_config)
        with verification_context(target, config):
            self.policy.setup(target, self.draft, config)

    def run(self, target, input_ids, generation_config) -> TimedRun:
        config = self._config(generation_config)
        result = timed_generate(target, input_ids, config, assistant_model=self.draft)
        result.steps = list(self.draft.last_telemetry.steps)
        return result

    @property
    def has_confidence_head(self) -> bool:
        return has_confidence_head(self.draft)

    def temperatures(self):
        from dspark_hf.verification.calibration.temperatures import draft_temperatures

        return draft_temperatures(self.draft)

    def describe(self) -> dict:
        return {**super().describe(), "kind": self.kind, "variant": self.variant, "draft": self.draft_name,
                "policy": self.policy_spec, "options": self.options or None, "block_size": draft_block_size(self.draft),
                "markov_rank": getattr(self.draft.config, "markov_rank", 0), "confidence_head": self.has_confidence_head,
                "temperatures": list(self.temperatures() or []) or None}
