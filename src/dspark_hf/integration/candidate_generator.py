"""Candidate generators: drafting from the target's own layer outputs inside transformers' assisted-generation loop.

Structured as transformers' ``generation/candidate_generator.py``: one interface
(:class:`FeatureDraftCandidateGenerator`, a ``CandidateGenerator``), one class per drafting strategy.
transformers' ``_assisted_decoding`` calls :meth:`~FeatureDraftCandidateGenerator.get_candidates`
before each target forward and :meth:`~FeatureDraftCandidateGenerator.update_candidate_strategy` after
verification. One round, whatever the strategy:

1. target features: the hooked target layers' outputs (:class:`.target_features.TargetFeatureTap`) for
   the positions committed since the last round (the prompt, on the first round), exactly
   ``n - 1 - committed`` rows for a sequence of ``n`` tokens;
2. draft: the strategy's round turns them into ``proposed`` tokens, each with the processed
   distribution it was drawn from and, where the draft has a confidence head, its confidence;
3. verification length: the policy picks ``L`` from the confidences (:mod:`dspark_hf.verification.policies`;
   ``None`` without a confidence head), clipped to ``max_length`` and to the first drafted token that
   would stop generation (:mod:`.stopping`). Before drafting, the policy may make the round plain (no
   draft, one token) or a lookup round: the sequence's prompt-lookup guess verified instead of drafted
   tokens (:mod:`dspark_hf.drafting.ngram_lookup`, clipped the same way); either way the features wait
   for the next drafting round;
4. verify: transformers runs the target on the anchor and the first ``L`` tokens and applies its own
   greedy matching or speculative sampling with the reported draft distributions;
5. telemetry: the round's counts go to ``draft.last_telemetry``, the policy (online estimates) and the
   ``dspark_callback``.

The base class holds everything the strategies share: the batch-1, padding and continued-cache
refusals, the feature tap, the policy, stops inside accepted blocks, ``max_length`` clipping,
telemetry and callback, and the first call, which returns no candidates so that the target's prefill
runs first and its features exist. A generator serves one sequence from its first token: a cache that
already holds positions (a continued generation) is refused, since the draft needs the target's
features of every position. A strategy implements :meth:`~FeatureDraftCandidateGenerator.draft_round`.

- :class:`DSparkCandidateGenerator`: DSpark / DFlash / DeepSeek-V4 drafts. One parallel block forward
  on ``[anchor, MASK x (gamma-1)]`` over the draft's context cache, then the block drawn left to right
  with the sequential head (:func:`dspark_hf.drafting.round.draft_round`). It needs from a draft
  (:class:`DSparkDraft`, or ``dspark_hf.models.deepseek_v4.DSparkV4Draft``):
  ``config.{block_size, mask_token_id, target_layer_ids, embeddings_from_target}``,
  ``bind_target_embeddings(target)``, ``new_cache()``, a forward taking ``input_ids``,
  ``context_features``, ``position_ids``, ``past_key_values`` and returning ``last_hidden_state`` and
  ``logits``, ``markov_head`` and ``confidence_logits`` (see :mod:`dspark_hf.drafting.block`), and
  optionally ``target_feature``: how one target layer's output becomes that layer's feature.
- :class:`Eagle3CandidateGenerator`: EAGLE-3 drafts (:class:`~dspark_hf.models.eagle3.Eagle3Draft`),
  DeepSpec's protocol per round: crop the draft cache back to the committed positions, extend it with
  the verified features and committed tokens, chain ``ttt_length`` tokens
  (:func:`dspark_hf.drafting.eagle3_round.eagle3_round`). No confidence head: confidence policies
  verify the whole chain, as for DFlash drafts.

The target's cache is made rewindable first where transformers' is not (:func:`.fit_checks.prepare_target_cache`).
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import torch
from transformers.generation.candidate_generator import CandidateGenerator

from dspark_hf.drafting.block import DraftBlock
from dspark_hf.drafting.eagle3_round import Eagle3Context, eagle3_round
from dspark_hf.drafting.ngram_lookup import ngram_continuation
from dspark_hf.drafting.round import DraftContext, draft_round
from dspark_hf.errors import UnsupportedUsageError
from dspark_hf.integration.fit_checks import prepare_target_cache
from dspark_hf.integration.stopping import ACTIVE_STOPS
from dspark_hf.integration.target_features import TargetFeatureTap
from dspark_hf.telemetry import GenerationTelemetry, StepRecord
from dspark_hf.transformers_compat import generation_cache
from dspark_hf.verification.policies import resolve_policy


class FeatureDraftCandidateGenerator(CandidateGenerator):
    """The interface: drafts from the target's own layer outputs; see the module docstring for one round.

    Contract of a subclass: set ``self.context`` (per-sequence drafting state with a ``committed``
    attribute: the number of positions whose features the draft has consumed) in ``__init__`` after
    calling this ``__init__``, and implement :meth:`draft_round`. ``proposed`` is the number of tokens a
    round drafts (the block size / chain length)."""

    requires_model_outputs = True
    # Features come from forward hooks on the chosen layers, so the target's forward needs no extra
    # outputs: nothing else is captured.
    model_kwargs_overrides: dict[str, Any] = {}
    # How the strategy is named in its refusals.
    strategy = "Speculative"

    def __init__(self, target, draft, input_ids, generation_config, logits_processor, model_kwargs, proposed: int) -> None:
        if input_ids.shape[0] != 1:
            raise UnsupportedUsageError(
                f"{self.strategy} drafting serves one sequence per generate() call; got a batch of {input_ids.shape[0]}."
            )
        mask = model_kwargs.get("attention_mask")
        if mask is not None and not bool(mask.all()):
            raise UnsupportedUsageError(f"{self.strategy} drafting does not support padded inputs; pass the unpadded sequence.")
        target_cache = generation_cache(model_kwargs)
        cached = target_cache.get_seq_length() if target_cache is not None else 0
        if cached:
            raise UnsupportedUsageError(
                f"{self.strategy} drafting cannot continue from a cache that already holds {int(cached)} positions: the draft "
                "needs the target's features of every position; pass the whole sequence without a cache."
            )
        prepare_target_cache(target, target_cache)
        self.draft = draft
        self.proposed = proposed
        self.max_length = generation_config.max_length
        self.do_sample = bool(generation_config.do_sample)
        # transformers reads the candidates' logits only to sample (speculative sampling) or to mix them into a
        # greedy choice (assistant_ensemble_weight); plain greedy verification compares tokens alone.
        self.report_logits = self.do_sample or getattr(generation_config, "assistant_ensemble_weight", None) is not None
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
        self.context: Any = None
        self._pending: dict[str, Any] | None = None
        # Features of positions after context.committed, held over from rounds that skipped drafting
        # (the tap keeps only the latest forward's), and the first position not yet held.
        self._carried: list[torch.Tensor] = []
        self._carried_end: int | None = None

    def draft_round(self, features: torch.Tensor, input_ids: torch.LongTensor) -> DraftBlock:
        """Draft ``proposed`` tokens after ``input_ids`` ``[1, n]`` from ``features``
        ``[1, n - 1 - context.committed, F]``; the block's ``logits`` are the processed distributions
        the tokens were drawn from (what speculative sampling compares with the target's)."""
        raise NotImplementedError

    @torch.no_grad()
    def get_candidates(self, input_ids, model_kwargs=None, model_outputs=None, is_first_iteration=False, n_last_matches=0, **kwargs):
        """Return ``input_ids`` extended by the ``L`` tokens to verify, and their ``[1, L, V]`` processed
        draft logits (``None`` when ``L == 0``)."""
        if is_first_iteration:
            self.telemetry.prefill_tokens = 1
            return input_ids, None
        t0 = time.perf_counter()
        cur_len = input_ids.shape[1]
        first = self._carried_end if self._carried else self.context.committed
        self._carried.append(self.tap.features()[:, : cur_len - 1 - first])
        self._carried_end = cur_len - 1
        drafting = self.policy.should_draft()
        if self.policy.lookup_tokens:
            guess = self._lookup_round(input_ids, drafting)
            if guess is not None:  # the features wait for the next drafting round, as after a plain step
                self._pending = {"cur_len": cur_len, "verified": guess.shape[1], "confidences": None, "t0": t0,
                                 "draft_seconds": time.perf_counter() - t0, "proposed": guess.shape[1], "source": "lookup"}
                return torch.cat([input_ids, guess], dim=-1), None
        if not drafting:  # a plain one-token step; the features wait for the next round
            self._pending = {"cur_len": cur_len, "verified": 0, "confidences": None, "t0": t0, "draft_seconds": 0.0,
                             "proposed": 0, "source": "plain"}
            return input_ids, None
        features = torch.cat(self._carried, dim=1) if len(self._carried) > 1 else self._carried[0]
        self._carried = []
        block = self.draft_round(features, input_ids)
        length = self.policy.verify_length(block.confidences, self.proposed)
        tokens = self._clipped(input_ids, block.tokens[:, :length].to(input_ids.device))
        length = tokens.shape[1]
        self._pending = {
            "cur_len": cur_len,
            "verified": length,
            "confidences": block.confidences.tolist() if block.confidences is not None else None,
            "t0": t0,
            "draft_seconds": time.perf_counter() - t0,
            "proposed": self.proposed,
            "source": "draft",
        }
        if length == 0:
            return input_ids, None
        return torch.cat([input_ids, tokens], dim=-1), block.logits[:, :length] if self.report_logits else None

    def _clipped(self, input_ids, tokens):
        """``tokens`` (``[1, L]``, to follow ``input_ids``) cut to ``max_length`` and to the first token
        that would stop generation (that token verified, nothing after it)."""
        cur_len = input_ids.shape[1]
        tokens = tokens[:, : max(0, self.max_length - cur_len - 1)]
        if tokens.shape[1] and self.stops is not None and self.stops.active:
            stop = self.stops.first_stop(torch.cat([input_ids, tokens], dim=-1), cur_len)
            if stop is not None:
                tokens = tokens[:, : stop - cur_len]
        return tokens

    def _lookup_round(self, input_ids, drafting: bool):
        """The prompt-lookup guess ``[1, L]`` this round verifies instead of drafting (or of a plain step),
        or ``None``: the policy's :meth:`~dspark_hf.verification.policies.VerificationPolicy.lookup_length`
        for the sequence's guess (:func:`dspark_hf.drafting.ngram_lookup.ngram_continuation`). No logits
        are reported for a guess: transformers then draws every verified position from the target and
        accepts the guessed tokens it drew, which is exact for a proposal fixed by the committed tokens."""
        guess, ngram = ngram_continuation(input_ids[0], self.policy.lookup_tokens)
        if not guess.numel():
            return None
        length = self.policy.lookup_length(ngram, guess.shape[0], drafting)
        tokens = self._clipped(input_ids, guess[None, :length]) if length > 0 else guess[None, :0]
        return tokens if tokens.shape[1] else None

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
            proposed=pending["proposed"],
            verified=pending["verified"],
            accepted=min(int(num_matches), pending["verified"], emitted),
            emitted=emitted,
            confidences=pending["confidences"],
            draft_seconds=pending["draft_seconds"],
            step_seconds=time.perf_counter() - pending["t0"],
            source=pending["source"],
        )
        self.telemetry.steps.append(record)
        self.policy.observe(record)
        if self.callback is not None:
            self.callback(record)


class DSparkCandidateGenerator(FeatureDraftCandidateGenerator):
    """DSpark, DFlash and DeepSeek-V4 drafts: one block of ``block_size`` tokens per round, drafted in
    one parallel forward over the draft's context cache (:func:`dspark_hf.drafting.round.draft_round`)."""

    strategy = "DSpark"

    def __init__(self, target, draft, input_ids, generation_config, logits_processor, model_kwargs) -> None:
        super().__init__(target, draft, input_ids, generation_config, logits_processor, model_kwargs, draft.config.block_size)
        if draft.config.embeddings_from_target and not draft._bound_target:
            draft.bind_target_embeddings(target)
        self.context = DraftContext(draft)

    def draft_round(self, features, input_ids):
        return draft_round(self.draft, self.context, features, input_ids, self.logits_processor, self.do_sample)


class Eagle3CandidateGenerator(FeatureDraftCandidateGenerator):
    """EAGLE-3 drafts: a test-time-training chain of ``ttt_length`` tokens per round, after the draft
    cache is cropped to the committed positions and extended with the verified features
    (:func:`dspark_hf.drafting.eagle3_round.eagle3_round`, DeepSpec's protocol)."""

    strategy = "EAGLE-3"

    def __init__(self, target, draft, input_ids, generation_config, logits_processor, model_kwargs) -> None:
        super().__init__(target, draft, input_ids, generation_config, logits_processor, model_kwargs, draft.config.ttt_length)
        self.context = Eagle3Context(draft)

    def draft_round(self, features, input_ids):
        return eagle3_round(self.draft, self.context, features, input_ids, self.logits_processor, self.do_sample)
