"""`DSparkCandidateGenerator`: DSpark drafting inside transformers' assisted-generation loop.

transformers' ``_assisted_decoding`` calls :meth:`get_candidates` before each target forward and
:meth:`update_candidate_strategy` after verification. One round:

1. target features: the hooked target layers' outputs for the positions committed since the last
   round (the prompt, on the first round) are projected into the draft's context cache;
2. draft block: one parallel draft forward on ``[anchor, MASK x (gamma-1)]``, then left-to-right
   drawing with the sequential head and the target's logits processors (:mod:`.draft_block`);
3. verification length: the policy picks ``L`` from the confidences (:mod:`.verification_policy`);
4. verify: transformers runs the target on the anchor and the first ``L`` tokens and applies greedy
   matching or speculative sampling with the reported draft distributions;
5. telemetry: the round's counts go to ``draft.last_telemetry`` and the callback.

The first call returns no candidates, so that the target's prefill runs first and its features exist.

What it needs from a draft (:class:`DSparkDraft`, or the DeepSeek-V4 drafter ``dspark_hf.models.deepseek_v4.DSparkV4Draft``):
``config.{block_size, mask_token_id, target_layer_ids, embeddings_from_target}``,
``bind_target_embeddings(target)``, ``new_cache()``, a forward taking ``input_ids``,
``context_features``, ``position_ids``, ``past_key_values`` and returning ``last_hidden_state`` and
``logits``, ``markov_head`` and ``confidence_logits`` (see :mod:`.draft_block`), and optionally
``target_feature``: how one target layer's output becomes that layer's feature. The target's cache is
made rewindable first where transformers' is not (:func:`.compatibility.prepare_target_cache`).
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import torch
from transformers.generation.candidate_generator import CandidateGenerator

from dspark_hf.integration.fit_checks import prepare_target_cache
from dspark_hf.drafting.block import draw_block
from dspark_hf.errors import UnsupportedUsageError
from dspark_hf.models.dspark.modeling_dspark import DSparkDraft
from dspark_hf.integration.target_features import TargetFeatureTap
from dspark_hf.telemetry import GenerationTelemetry, StepRecord
from dspark_hf.verification.policies import resolve_policy


class DSparkCandidateGenerator(CandidateGenerator):
    """Drafts blocks from the target's own hidden states; see the module docstring for one round."""

    requires_model_outputs = True
    # Features come from forward hooks on the chosen layers, so the target's forward needs no extra
    # outputs: nothing else is captured.
    model_kwargs_overrides: dict[str, Any] = {}

    def __init__(self, target, draft: DSparkDraft, input_ids, generation_config, logits_processor, model_kwargs) -> None:
        if input_ids.shape[0] != 1:
            raise UnsupportedUsageError(
                f"DSpark drafting serves one sequence per generate() call; got a batch of {input_ids.shape[0]}."
            )
        mask = model_kwargs.get("attention_mask")
        if mask is not None and not bool(mask.all()):
            raise UnsupportedUsageError("DSpark drafting does not support padded inputs; pass the unpadded sequence.")
        prepare_target_cache(target, model_kwargs.get("past_key_values"))
        if draft.config.embeddings_from_target and not draft._bound_target:
            draft.bind_target_embeddings(target)
        self.draft = draft
        self.device = draft.device
        self.block_size = draft.config.block_size
        self.mask_token_id = draft.config.mask_token_id
        self.max_length = generation_config.max_length
        self.do_sample = bool(generation_config.do_sample)
        self.logits_processor = logits_processor
        self.policy = resolve_policy(getattr(generation_config, "dspark_policy", None) or draft.verification_policy)
        self.policy.setup(target, draft, generation_config)
        self.callback = getattr(generation_config, "dspark_callback", None)
        self.telemetry = GenerationTelemetry()
        draft.last_telemetry = self.telemetry
        # Drafts may say how a target layer's output becomes a feature (e.g. V4: mean over mHC streams).
        self.tap = TargetFeatureTap(target, draft.config.target_layer_ids, reduce=getattr(draft, "target_feature", None))
        weakref.finalize(self, self.tap.close)
        self.cache = draft.new_cache()
        self.committed = 0  # positions whose context rows are in self.cache
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
        start = cur_len - 1  # position of the anchor, the target's last token
        features = self.tap.features()[:, : start - self.committed].to(self.device)
        positions = torch.arange(self.committed, start + self.block_size, device=self.device)[None]
        block_ids = torch.full((1, self.block_size), self.mask_token_id, dtype=torch.long, device=self.device)
        block_ids[0, 0] = input_ids[0, -1]
        out = self.draft(input_ids=block_ids, context_features=features, position_ids=positions, past_key_values=self.cache)
        self.committed = start
        block = draw_block(
            self.draft, out.last_hidden_state, out.logits, input_ids.to(self.device), self.logits_processor, self.do_sample
        )
        length = self.policy.verify_length(block.confidences, self.block_size)
        length = max(0, min(length, self.max_length - cur_len - 1))
        self._pending = {
            "cur_len": cur_len,
            "verified": length,
            "confidences": block.confidences.tolist() if block.confidences is not None else None,
            "t0": t0,
            "draft_seconds": time.perf_counter() - t0,
        }
        if length == 0:
            return input_ids, None
        candidates = torch.cat([input_ids, block.tokens[:, :length].to(input_ids.device)], dim=-1)
        return candidates, block.logits[:, :length]

    def update_candidate_strategy(self, input_ids, scores, num_matches):
        """Record the round's outcome (telemetry, callback, online policies)."""
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        record = StepRecord(
            step=len(self.telemetry.steps),
            proposed=self.block_size,
            verified=pending["verified"],
            accepted=min(int(num_matches), pending["verified"]),
            emitted=input_ids.shape[1] - pending["cur_len"],
            confidences=pending["confidences"],
            draft_seconds=pending["draft_seconds"],
            step_seconds=time.perf_counter() - pending["t0"],
        )
        self.telemetry.steps.append(record)
        self.policy.observe(record)
        if self.callback is not None:
            self.callback(record)
