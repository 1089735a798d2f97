"""`DSparkCandidateGenerator`: DSpark drafting inside transformers' assisted-generation loop.

transformers' ``_assisted_decoding`` calls :meth:`get_candidates` before each target forward and
:meth:`update_candidate_strategy` after verification. One round:

1. target features: the hooked target layers' outputs for the positions committed since the last
   round (the prompt, on the first round) are projected into the draft's context cache;
2. draft block: one parallel draft forward on ``[anchor, MASK x (gamma-1)]``, then left-to-right
   drawing with the sequential head and the target's logits processors (:mod:`dspark_hf.drafting`);
3. verification length: the policy picks ``L`` from the confidences (:mod:`dspark_hf.verification.policies`);
4. verify: transformers runs the target on the anchor and the first ``L`` tokens and applies greedy
   matching or speculative sampling with the reported draft distributions;
5. telemetry: the round's counts go to ``draft.last_telemetry`` and the callback.

The first call returns no candidates, so that the target's prefill runs first and its features exist.
A generator serves one sequence from its first token: a cache that already holds positions (a
continued generation) is refused, since the draft needs the target's features of every position.
When the call has stopping criteria beyond EOS and length (``stop_strings``, custom criteria), no
draft token past the first that would stop generation is verified (:mod:`.stopping`).

What it needs from a draft (:class:`DSparkDraft`, or the DeepSeek-V4 drafter ``dspark_hf.models.deepseek_v4.DSparkV4Draft``):
``config.{block_size, mask_token_id, target_layer_ids, embeddings_from_target}``,
``bind_target_embeddings(target)``, ``new_cache()``, a forward taking ``input_ids``,
``context_features``, ``position_ids``, ``past_key_values`` and returning ``last_hidden_state`` and
``logits``, ``markov_head`` and ``confidence_logits`` (see :mod:`dspark_hf.drafting.block`), and optionally
``target_feature``: how one target layer's output becomes that layer's feature. The target's cache is
made rewindable first where transformers' is not (:func:`.fit_checks.prepare_target_cache`).
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import torch
from transformers.generation.candidate_generator import CandidateGenerator

from dspark_hf.drafting.round import DraftContext, draft_round
from dspark_hf.errors import UnsupportedUsageError
from dspark_hf.integration.fit_checks import prepare_target_cache
from dspark_hf.integration.stopping import ACTIVE_STOPS
from dspark_hf.integration.target_features import TargetFeatureTap
from dspark_hf.telemetry import GenerationTelemetry, StepRecord
from dspark_hf.transformers_compat import generation_cache
from dspark_hf.verification.policies import resolve_policy


class DSparkCandidateGenerator(CandidateGenerator):
    """Drafts blocks from the target's own hidden states; see the module docstring for one round."""

    requires_model_outputs = True
    # Features come from forward hooks on the chosen layers, so the target's forward needs no extra
    # outputs: nothing else is captured.
    model_kwargs_overrides: dict[str, Any] = {}

    def __init__(self, target, draft, input_ids, generation_config, logits_processor, model_kwargs) -> None:
        if input_ids.shape[0] != 1:
            raise UnsupportedUsageError(
                f"DSpark drafting serves one sequence per generate() call; got a batch of {input_ids.shape[0]}."
            )
        mask = model_kwargs.get("attention_mask")
        if mask is not None and not bool(mask.all()):
            raise UnsupportedUsageError("DSpark drafting does not support padded inputs; pass the unpadded sequence.")
        target_cache = generation_cache(model_kwargs)
        cached = target_cache.get_seq_length() if target_cache is not None else 0
        if cached:
            raise UnsupportedUsageError(
                f"DSpark drafting cannot continue from a cache that already holds {int(cached)} positions: the draft "
                "needs the target's features of every position; pass the whole sequence without a cache."
            )
        prepare_target_cache(target, target_cache)
        if draft.config.embeddings_from_target and not draft._bound_target:
            draft.bind_target_embeddings(target)
        self.draft = draft
        self.block_size = draft.config.block_size
        self.max_length = generation_config.max_length
        self.do_sample = bool(generation_config.do_sample)
        self.logits_processor = logits_processor
        self.stops = ACTIVE_STOPS.get()
        self.policy = resolve_policy(getattr(generation_config, "dspark_policy", None) or draft.verification_policy)
        self.policy.setup(target, draft, generation_config)
        self.callback = getattr(generation_config, "dspark_callback", None)
        self.telemetry = GenerationTelemetry()
        draft.last_telemetry = self.telemetry
        # Drafts may say how a target layer's output becomes a feature (e.g. V4: mean over mHC streams).
        self.tap = TargetFeatureTap(target, draft.config.target_layer_ids, reduce=getattr(draft, "target_feature", None))
        weakref.finalize(self, self.tap.close)
        self.context = DraftContext(draft)
        self._pending: dict[str, Any] | None = None

    @torch.no_grad()
    def get_candidates(self, input_ids, model_kwargs=None, model_outputs=None, is_first_iteration=False, n_last_matches=0, **kwargs):
        """Return ``input_ids`` extended by the ``L`` tokens to verify, and their ``[1, L, V]`` processed
        draft logits (``None`` when ``L == 0``)."""
        if is_first_iteration:
            self.telemetry.prefill_tokens = 1
            return input_ids, None
        t0 = time.perf_counter()
        cur_len = input_ids.shape[1]
        features = self.tap.features()[:, : cur_len - 1 - self.context.committed]
        block = draft_round(self.draft, self.context, features, input_ids, self.logits_processor, self.do_sample)
        length = self.policy.verify_length(block.confidences, self.block_size)
        length = max(0, min(length, self.max_length - cur_len - 1))
        tokens = block.tokens[:, :length].to(input_ids.device)
        if length and self.stops is not None and self.stops.active:
            stop = self.stops.first_stop(torch.cat([input_ids, tokens], dim=-1), cur_len)
            if stop is not None:
                length = stop - cur_len  # verify the stopping token, nothing after it
                tokens = tokens[:, :length]
        self._pending = {
            "cur_len": cur_len,
            "verified": length,
            "confidences": block.confidences.tolist() if block.confidences is not None else None,
            "t0": t0,
            "draft_seconds": time.perf_counter() - t0,
        }
        if length == 0:
            return input_ids, None
        return torch.cat([input_ids, tokens], dim=-1), block.logits[:, :length]

    def update_candidate_strategy(self, input_ids, scores, num_matches):
        """Record the round's outcome (telemetry, callback, online policies)."""
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        end = input_ids.shape[1]
        if self.stops is not None and self.stops.active:
            stop = self.stops.observe(input_ids)  # a stop inside this round cuts the output there
            if stop is not None:
                end = min(end, max(stop, pending["cur_len"]))
        emitted = end - pending["cur_len"]
        record = StepRecord(
            step=len(self.telemetry.steps),
            proposed=self.block_size,
            verified=pending["verified"],
            accepted=min(int(num_matches), pending["verified"], emitted),
            emitted=emitted,
            confidences=pending["confidences"],
            draft_seconds=pending["draft_seconds"],
            step_seconds=time.perf_counter() - pending["t0"],
        )
        self.telemetry.steps.append(record)
        self.policy.observe(record)
        if self.callback is not None:
            self.callback(record)
