"""The batch processor of a speculative continuous batch: transformers' ``ContinuousBatchProcessor``
with its three per-step methods overridden.

transformers' loop calls, per step, ``prepare_next_batch`` (admit requests, schedule, build the packed
inputs), ``_generation_step`` (the packed forward, sampling one token per request) and
``update_batch`` (append the token, finish requests, deliver outputs). Here:

1. ``prepare_next_batch``: every decoding request without a pending block drafts one, all of
   them in one batched draft forward over their own draft contexts (:mod:`.batched_drafting`), each
   from the features it has not consumed yet; the verification lengths of all decoding requests are chosen together
   (:mod:`.planning`); each request's tokens to process become ``[last, d_1 .. d_L]``; then
   transformers' own scheduler admits them (decoding requests first, FIFO) with whatever prefill
   fits the token budget, allocates their pages and builds the packed inputs.
2. ``_generation_step``: one packed forward over all of it, keeping the logits of every verification
   row and of each row that ends a prefill (:mod:`.packed_rows`); the target's features come from
   forward hooks on the same forward.
3. ``update_batch``: per request, acceptance (:mod:`.acceptance`), the accepted tokens and the
   target's own appended through transformers' ``update_and_check_completion`` (EOS and
   ``max_new_tokens`` per request), the cache rewound to the accepted length with the pages of
   rejected positions released (:mod:`.paged_rewind`), the features of committed positions kept
   for the next round, telemetry; finished requests free their pages and their draft state.

With the hardware-aware policy each request drafts only when its drafting is expected to pay
(:func:`.planning.requests_to_draft`, decided on each request's previous block's confidences mixed with
the mean of the draft's recent blocks, on that mean alone for a request that has not drafted yet,
:meth:`.Speculation.next_block_confidences`; a request drafts at least once in ``explore_every`` steps
so that its confidences stay fresh, an interval that doubles from 8 to 64 steps while those forced
drafts are the only ones it makes): the others take one plain token in the same packed forward, and a step where none drafts is a plain step.
Above that, a measured gate per number of decoding requests (:meth:`.Speculation.step_gate`, the
batch-1 :class:`~dspark_hf.verification.scheduling.drafting_gate.DraftingGate`) compares the tokens per
second of steps that drafted with those of plain steps it chose, both timed end to end on steps without
prefill, and makes the whole step a plain one while drafting steps are behind (exploring as at batch 1, but
with one request: an exploring step drafts only the one with the most expected tokens);
``hardware:always-draft`` turns it off.
With lookup rounds on (the hardware-aware policies' default; not ``no-lookup`` or ``always-draft``), a
decoding request that does not draft may verify a prompt-lookup guess instead of taking a plain token
(:meth:`SpeculativeBatchProcessor._lookup_guesses`): its guess's rows enter Algorithm 1 beside the drafted
blocks, priced on the same packed curve, with the policy's per n-gram size acceptance estimates of earlier
guesses (:func:`.planning.plan_lengths`); the choice to draft weighs a request's block against its guess
(:func:`.planning.requests_to_draft`). A guess has no draft distribution: it is verified by drawing each row
from the target (:mod:`.acceptance`), so greedy and sampled output stay the target's. Its round
(``source == "lookup"``) teaches the lookup estimates only, and the gate sees each step's tokens less the
accepted guessed ones.
A request running alone (the engine's only request, none waiting; a batch-scheduled policy) has its rounds
decided as ``generate(assistant_model=...)`` decides them for one sequence (:meth:`SpeculativeBatchProcessor._solo_round`):
the policy's batch-1 gate, lookup choice and Algorithm 1 on its batch-1 cost curve, learning from each round as
there, so that one request served by the engine drafts, looks up and steps plainly where the batch-1 path would
(measured before, 2026-12-07 run aa: over 8 prompts the engine's own one-request decisions verified 166 lookup
guesses where the batch-1 path verified 107, at 0.88 of its speed).
A request drafted but not scheduled (token, request or cache budget) keeps its block for the next
step; a guess not scheduled is chosen afresh. A request prefilled from position 0 again (transformers re-prefills offloaded requests) starts
its drafting state afresh. The processor is transformers' own, built by transformers and then given
this class (:meth:`SpeculativeBatchProcessor.adopt`), so the cache, scheduler and packed-input code
are transformers', unchanged, except that the rings of sliding-window layers are one draft block longer
than the window (:mod:`.sliding_ring`), so that rejected draft tokens never overwrite keys still read.
"""

from __future__ import annotations

import contextlib
import time

import torch
from transformers.generation.continuous_batching.continuous_api import ContinuousBatchProcessor
from transformers.generation.continuous_batching.requests import RequestStatus

from dspark_hf.batching.acceptance import greedy_tokens, verify_request
from dspark_hf.batching.batched_drafting import draft_rounds
from dspark_hf.batching.packed_rows import layout
from dspark_hf.batching.paged_rewind import rewind_request
from dspark_hf.batching.planning import (
    expected_gains, guess_row, is_batch_scheduled, observe_round, plan_lengths, requests_to_draft, uses_lookup,
)
from dspark_hf.batching.sliding_ring import widen_sliding_rings
from dspark_hf.batching.speculation import Speculation
from dspark_hf.batching.telemetry import BatchStep
from dspark_hf.drafting.ngram_lookup import ngram_continuation
from dspark_hf.integration.weight_major import weight_major_forward
from dspark_hf.telemetry import StepRecord

class SpeculativeBatchProcessor(ContinuousBatchProcessor):
    """``ContinuousBatchProcessor`` that drafts, verifies in the packed forward and accepts per request."""

    speculation: Speculation

    @classmethod
    def adopt(cls, processor: ContinuousBatchProcessor, speculation: Speculation) -> "SpeculativeBatchProcessor":
        """Turn a processor transformers built into this class (same state, these step methods); its
        cache's sliding-window rings are widened by a draft block (:mod:`.sliding_ring`)."""
        widen_sliding_rings(processor.cache, speculation.block_size)
        processor.__class__ = cls
        processor.speculation = speculation
        processor._step = None
        processor._solo_id = None  # the request last decided alone (_solo_round)
        return processor

    def reset(self) -> None:
        super().reset()
        self.speculation.requests.clear()

    # -- 1. draft and plan, then transformers schedules --------------------------------------------

    def prepare_next_batch(self) -> bool:
        started = time.perf_counter()
        self._forget_departed()
        self._skipped, self._drafted, self._guessed = False, 0, 0
        self._gate, self._gate_skipped, self._capped, self._solo = None, False, False, None
        draft_seconds = self._draft_decoding_requests()
        available = super().prepare_next_batch()
        self._step = {"started": started, "draft_seconds": draft_seconds, "skipped": self._skipped, "drafted": self._drafted,
                      "guessed": self._guessed, "gate": self._gate, "gate_skipped": self._gate_skipped, "capped": self._capped,
                      "solo": self._solo}
        return available

    def _forget_departed(self) -> None:
        spec = self.speculation
        live = self.scheduler.active_requests.keys() | self.scheduler.waiting_requests.keys()
        for request_id in [r for r in spec.requests if r not in live]:
            spec.forget(request_id)

    def _draft_decoding_requests(self) -> float:
        """Draft for every decoding request that has no pending block; choose all lengths; set each
        request's tokens to process. Returns the drafting seconds."""
        spec = self.speculation
        decoding = [
            s for s in self.scheduler.active_requests.values()
            if s.status == RequestStatus.DECODING and s.generated_len() > 0 and s.request_id in spec.requests
        ]
        if not decoding:
            return 0.0
        started = time.perf_counter()
        for state in decoding:  # a guess planned last step but not scheduled is chosen afresh
            request = spec.requests[state.request_id]
            if request.guess_ngram:
                request.set_guess([], 0)
                state.tokens_to_process = [state.generated_tokens[-1]]
        fresh = [s for s in decoding if spec.requests[s.request_id].block is None]
        if len(fresh) == 1 and self._alone(decoding):
            return self._solo_round(fresh[0], started)
        guesses = self._lookup_guesses(fresh)
        chosen = self._choose_drafting(decoding, fresh, guesses)
        if chosen:
            self._draft_blocks(chosen, started)
        self._drafted = len(chosen)
        seconds = time.perf_counter() - started if chosen else 0.0
        verifying = [s for s in decoding if spec.requests[s.request_id].block is not None]
        drafting_ids = {s.request_id for s in chosen}
        guessing = [s for s in fresh if s.request_id in guesses and s.request_id not in drafting_ids]
        if not verifying and not guessing:
            return seconds
        pending = [spec.requests[s.request_id] for s in verifying]
        caps = [s._new_tokens_limit - s.generated_len() - 1 for s in verifying]
        self._capped = any(cap < spec.block_size for cap in caps)  # max_new_tokens, not the draft, limits this step
        guessed = [guesses[s.request_id] for s in guessing]
        lengths = plan_lengths(
            spec.policy, [r.block_confidences for r in pending], spec.block_size, caps, self.max_batch_tokens,
            steps_per_second=spec.steps_per_second_for(len(decoding)),
            draft_seconds=spec.drafting_seconds(len(verifying)),
            plain_requests=len(decoding) - len(verifying) - len(guessing),
            overhead_seconds=spec.step_overhead(len(decoding), drafted=bool(verifying)), greedy=not spec.do_sample,
            guesses=[row for _, _, row in guessed], guess_caps=[len(tokens) for tokens, _, _ in guessed],
        )
        for state, request, length in zip(verifying, pending, lengths):
            _schedule_block(state, request, length)
        for state, (tokens, ngram, _), length in zip(guessing, guessed, lengths[len(verifying):]):
            if length > 0:
                _schedule_guess(state, spec.requests[state.request_id], tokens[:length], ngram)
                self._guessed += 1
        return seconds

    def _draft_blocks(self, chosen, started: float) -> float:
        """Draft a block for each request of ``chosen`` (decoding states) in one batched draft call, each from the
        features it has not consumed yet; keep each block (tokens and confidences on the host) on its request and
        the drafting time on the speculation. Returns the seconds since ``started``."""
        spec = self.speculation
        draft = spec.draft
        width = len(draft.config.target_layer_ids) * draft.config.target_hidden_size
        requests = [spec.requests[s.request_id] for s in chosen]
        blocks = draft_rounds(
            draft, [r.context for r in requests], [r.take_features(width, draft.device, draft.dtype) for r in requests],
            [r.sequence(s, "cpu") for r, s in zip(requests, chosen)], spec.logits_processor, spec.do_sample,
        )
        tokens, confidences = _on_host(blocks)
        elapsed = time.perf_counter() - started
        spec.observe_drafting(len(chosen), elapsed)
        for request, block, block_tokens, block_confidences in zip(requests, blocks, tokens, confidences):
            request.set_block(block, block_tokens, block_confidences)
            spec.observe_block_confidences(block_confidences)
            request.draft_seconds = elapsed / len(chosen)
        return elapsed

    def _alone(self, decoding) -> bool:
        """Whether this step's one decoding request is the engine's only request (nothing else active or
        waiting), under a batch-scheduled policy: its round is then decided as at batch 1 (:meth:`_solo_round`)."""
        return (len(decoding) == 1 and is_batch_scheduled(self.speculation.policy)
                and len(self.scheduler.active_requests) == 1 and not self.scheduler.waiting_requests)

    def _solo_round(self, state, started: float) -> float:
        """The round of a request running alone, decided by the policy as ``generate(assistant_model=...)``
        decides each round of one sequence (:class:`~dspark_hf.integration.candidate_generator.FeatureDraftCandidateGenerator`):
        the gate's :meth:`should_draft`, then a prompt-lookup guess when :meth:`lookup_length` takes it, else a
        drafted block verified to :meth:`verify_length` of its confidences, else a plain step; each length cut to
        the request's tokens left. The policy learns from the round as at batch 1 (``update_batch``), and a
        request that starts running alone starts the policy's per-text state (:meth:`start_sequence`), as a new
        call does. Returns the drafting seconds."""
        spec = self.speculation
        policy, request = spec.policy, spec.requests[state.request_id]
        if self._solo_id != state.request_id:
            self._solo_id = state.request_id
            policy.start_sequence()
        left = max(0, state._new_tokens_limit - state.generated_len() - 1)
        drafting = policy.should_draft()
        if policy.lookup_tokens:
            guess, ngram = ngram_continuation(request.sequence(state, "cpu")[0], policy.lookup_tokens)
            length = policy.lookup_length(ngram, guess.shape[0], drafting) if guess.numel() else 0
            if min(length, left) > 0:  # the features wait for the next drafting round, as after a plain step
                _schedule_guess(state, request, guess[: min(length, left)].tolist(), ngram)
                self._guessed, self._skipped, self._solo = 1, True, "lookup"  # no request drafted (as in a batch)
                request.drafting_decided(False, False)
                return 0.0
        request.drafting_decided(drafting, True)
        if not drafting:
            self._skipped, self._solo = True, "plain"
            return 0.0
        seconds = self._draft_blocks([state], started)
        _schedule_block(state, request, min(int(policy.verify_length(request.block_confidences, spec.block_size)), left))
        self._drafted, self._solo = 1, "draft"
        return seconds

    def _lookup_guesses(self, fresh) -> dict[str, tuple[list[int], int, list[float]]]:
        """For each request of ``fresh`` whose sequence has a prompt-lookup guess
        (:func:`~dspark_hf.drafting.ngram_lookup.ngram_continuation`), ``(tokens, ngram, row)``: the guess, cut to
        the policy's longest and the request's tokens left, the n-gram size it matched on, and its slots'
        acceptance estimates (:func:`.planning.guess_row`, Algorithm 1's row for it this step). Empty unless
        the policy verifies guesses (:func:`.planning.uses_lookup`). The guesses depend on committed tokens
        only."""
        spec = self.speculation
        if not fresh or not uses_lookup(spec.policy):
            return {}
        out = {}
        for state in fresh:
            cap = min(spec.policy.lookup_tokens, state._new_tokens_limit - state.generated_len() - 1)
            if cap <= 0:
                continue
            tokens, ngram = ngram_continuation(spec.requests[state.request_id].sequence(state, "cpu")[0], cap)
            if tokens.numel():
                out[state.request_id] = (tokens.tolist(), ngram, guess_row(spec.policy, ngram, tokens.numel()))
        return out

    def _choose_drafting(self, decoding, fresh, guesses=None) -> list:
        """The requests of ``fresh`` (decoding, no pending block) that draft this step: with the
        hardware-aware policy, those whose drafting is expected to pay (:func:`.planning.requests_to_draft`,
        on each request's previous block's confidences mixed with the recent blocks' mean, token-blind for this step) or whose exploration
        interval is up (:meth:`.SpeculativeRequest.must_draft`; a forced draft doubles the interval, a
        draft on merit resets it), except on the gate's exploring steps, which draft one request
        (:meth:`_explorer`); every one otherwise. A request with a prompt-lookup guess (``guesses``,
        :meth:`_lookup_guesses`) weighs drafting against verifying that guess rather than a plain token. Marks
        the step skipped when no decoding request drafts."""
        spec = self.speculation
        if not fresh:
            return []
        requests = [spec.requests[s.request_id] for s in fresh]
        exploring = False
        if len(fresh) == len(decoding):
            self._gate = spec.step_gate(len(decoding))
            if self._gate is not None and not self._gate.should_draft():  # drafting steps measured behind plain ones
                for request in requests:
                    request.drafting_decided(False, False)
                self._skipped = self._gate_skipped = True
                return []
            exploring = self._gate is not None and self._gate.exploring
        confidences = [spec.next_block_confidences(r.last_confidences) for r in requests]
        if exploring:
            choice = self._explorer(requests, confidences, spec.step_curve(len(decoding)),
                                    spec.step_overhead(len(decoding), drafted=True))
            for request, drafts in zip(requests, choice):
                request.drafting_decided(drafts, False)
            return [s for s, drafts in zip(fresh, choice) if drafts]
        sps = spec.steps_per_second_for(len(decoding))
        overheads = {"overhead_seconds": spec.step_overhead(len(decoding), drafted=True),
                     "plain_overhead_seconds": spec.step_overhead(len(decoding), drafted=False)}
        forced = [r.must_draft() for r in requests]
        base = [guesses[s.request_id][2] if s.request_id in guesses else [] for s in fresh] if guesses else None
        choice = requests_to_draft(spec.policy, confidences, spec.block_size, sps, spec.drafting_seconds, must_draft=forced,
                                   base=base, **overheads)
        merit = choice
        if any(forced):
            merit = requests_to_draft(spec.policy, confidences, spec.block_size, sps, spec.drafting_seconds, base=base, **overheads)
        for request, drafts, on_merit in zip(requests, choice, merit):
            request.drafting_decided(drafts, on_merit)
        chosen = [s for s, drafts in zip(fresh, choice) if drafts]
        self._skipped = not chosen and len(fresh) == len(decoding)
        return chosen

    def _explorer(self, requests, confidences, steps_per_second, overhead_seconds) -> list[bool]:
        """The one request that drafts on an exploring step of the gate (drafting measured behind plain steps,
        its interval up): the one with the most expected accepted tokens on its expected confidences
        (:func:`.planning.expected_gains`), ties to the one longest without drafting. One request, not every
        request whose own exploration interval ran out while the gate skipped: at 8 requests on this CPU those
        were all 8, and such a step took 156-288 ms, their draft contexts caught up over every skipped
        token, against ~110 ms for a plain step (docs/measurements/2026-12-05c/c8_trace.log and
        2026-12-05d/c8_trace_before.log; with one request 128-134 ms, 2026-12-05d/c8_trace_explore_one.log). A step of one
        drafted block measures less than a whole batch's drafting would deliver where drafting pays (it pays
        for the plain rows' time with one block's tokens), so the gate comes back later there; on this CPU
        drafting pays at one request only, where the one is the whole batch."""
        spec = self.speculation
        _, gains = expected_gains(spec.policy, confidences, spec.block_size, steps_per_second, overhead_seconds)
        best = max(range(len(requests)), key=lambda r: (gains[r], requests[r].steps_since_draft, -r))
        return [r == best for r in range(len(requests))]

    # -- 2. one packed forward ---------------------------------------------------------------------

    @torch.no_grad()
    def _generation_step(self, model) -> None:
        spec = self.speculation
        io = self.inputs_and_outputs
        batch = io.get_model_kwargs(use_padding=False)
        entries = []
        for future in io.requests_in_batch:
            state = future.state
            request = spec.request(state.request_id)
            if state.position_offset == future.query_length:  # prefilled from position 0 (again)
                request.restart(spec.draft)
            if request.verifying:
                if not (future.has_new_token and future.query_length == request.verify_length + 1):
                    raise RuntimeError(f"speculative batch: request {state.request_id} was scheduled with {future.query_length} tokens, not {request.verify_length + 1}")
                kind = "verify"
            else:
                kind = "last" if future.has_new_token else "none"
            entries.append((state.request_id, future.query_length, kind))
        # Only steps of decoding requests alone (no prefill rows) inform the drafting gate.
        self._step["pure"] = all(kind == "verify" or (kind == "last" and length == 1) for _, length, kind in entries)
        rows, keep = layout(entries)
        index = torch.tensor(keep, dtype=torch.long, device=self.model_device)
        batch["logits_indices"] = index
        tap = spec.feature_tap()
        # A step of decoding requests only, verifying or plain: the verification forward's kernels (weight-major
        # float32 linears at the row counts measured faster here), as at batch 1; prefill rows never. Plain
        # steps too since 2026-12-05 (run l): at 2-4 requests a plain step's rows cost as much with F.linear as
        # a verifying step's twice as many rows weight-major (the packed profile of run k: 2 requests, 2 rows
        # 92 ms, 4 rows 66 ms).
        with weight_major_forward(model) if self._step["pure"] else contextlib.nullcontext():
            if self.model_runner.supports_logits_to_keep(model):
                batch["logits_to_keep"] = index
                logits = model(**batch).logits[0]
            else:
                logits = model(**batch).logits[0, index]
        self._step.update(rows=rows, logits=logits.float(), features=tap.features()[0])

    # -- 3. accept, rewind, finish -----------------------------------------------------------------

    def update_batch(self) -> None:
        spec = self.speculation
        step, self._step = self._step, None
        logits, features = step["logits"], step["features"]
        record = BatchStep(
            step=len(spec.telemetry.steps), batch_tokens=int(features.shape[0]), verify_tokens=0, prefill_tokens=0,
            decoding=0, draft_seconds=step["draft_seconds"], step_seconds=0.0, drafting_skipped=step["skipped"],
            drafted_requests=step["drafted"], lookup_requests=step["guessed"],
        )
        verified_blocks = False  # whether some request verified a drafted block (the step's overhead kind)
        guessed_tokens = 0  # guessed tokens accepted this step (left out of what the drafting gate sees)
        finished_rounds = []
        outputs = []
        emitted_tokens = 0
        device = logits.device
        # Greedy without logits processors: every row's argmax in one call and one transfer, then each
        # request's acceptance on host lists (per request, the general path costs a dozen small device
        # calls and three synchronisations; on a GPU whose launches dominate a step, that is most of it).
        picks = logits.argmax(dim=-1).tolist() if not spec.do_sample and not spec.logits_processor else None
        for future, rows in zip(self.inputs_and_outputs.requests_in_batch, step["rows"]):
            state = future.state
            request = spec.request(state.request_id)
            own = features[rows.start : rows.start + rows.length]
            row_logits = logits[rows.logits_start : rows.logits_start + rows.logits_count]
            if request.verifying:
                length = request.verify_length
                block, ngram = request.block, request.guess_ngram
                if picks is not None:
                    tokens, accepted = greedy_tokens(picks[rows.logits_start : rows.logits_start + rows.logits_count], request.verify_tokens)
                elif block is None:  # a prompt-lookup guess: no draft distribution (acceptance module docstring)
                    guess = torch.tensor([request.verify_tokens], dtype=torch.long, device=device)
                    tokens, accepted = verify_request(row_logits, request.sequence(state, device), guess, None,
                                                      spec.logits_processor, spec.do_sample)
                else:
                    tokens, accepted = verify_request(
                        row_logits, request.sequence(state, device), block.tokens[:, :length], block.logits[:, :length],
                        spec.logits_processor, spec.do_sample,
                    )
                request.add_features(own[: accepted + 1])
                past = state.position_offset - rows.length
                finished, emitted = self._commit(state, tokens)
                emitted_tokens += emitted
                if block is None:
                    guessed_tokens += min(accepted, emitted)
                    round_ = StepRecord(step=len(request.telemetry.steps), proposed=length, verified=length,
                                        accepted=min(accepted, emitted), emitted=emitted, confidences=None,
                                        draft_seconds=0.0, step_seconds=0.0, source="lookup")
                else:
                    verified_blocks = True
                    round_ = StepRecord(
                        step=len(request.telemetry.steps), proposed=spec.block_size, verified=length,
                        accepted=min(accepted, emitted), emitted=emitted,
                        confidences=request.block_confidences.tolist() if request.block_confidences is not None else None,
                        draft_seconds=request.draft_seconds, step_seconds=0.0,
                    )
                request.set_block(None)
                request.set_guess([], 0)
                request.telemetry.steps.append(round_)
                record.rounds[state.request_id] = round_
                record.verify_tokens += rows.length
                record.decoding += 1
                finished_rounds.append((round_, ngram))
                if not finished:
                    rewind_request(self.cache, state, past + accepted + 1)
            elif future.has_new_token:
                request.add_features(own)
                if state.generated_len() == 0:  # the prompt's last chunk: its first token
                    record.prefill_tokens += rows.length
                else:  # a decoding request's plain token (it neither drafted nor verified a guess)
                    record.plain_tokens += rows.length
                if picks is not None:
                    tokens = [picks[rows.logits_start + rows.logits_count - 1]]
                else:
                    tokens, _ = verify_request(row_logits, request.sequence(state, device), torch.empty(1, 0, dtype=torch.long), None,
                                               spec.logits_processor, spec.do_sample)
                if state.generated_len() == 0:
                    request.telemetry.prefill_tokens = 1
                state.status = RequestStatus.DECODING
                finished, emitted = self._commit(state, tokens)
                emitted_tokens += emitted
            else:
                request.add_features(own)
                record.prefill_tokens += rows.length
                continue
            if finished:
                self.scheduler.finish_request(state.request_id)
                self.scheduler.block_new_requests = False
                spec.forget(state.request_id)
            if state.streaming or finished:
                outputs.append(state.to_generation_output())
        record.step_seconds = time.perf_counter() - step["started"]
        if step.get("pure") and is_batch_scheduled(spec.policy):
            self._observe_overhead(record, step["draft_seconds"], verified_blocks)
        gate = step.get("gate")
        # The gate compares drafting with plain steps; accepted guesses are neither (as at batch 1, where
        # lookup rounds never reach it), so it sees each step's tokens less them.
        gate_tokens = emitted_tokens - guessed_tokens
        if gate is not None and step.get("pure") and gate_tokens > 0:
            if step["gate_skipped"]:
                gate.observe(False, gate_tokens, record.step_seconds)
            elif step["skipped"]:  # plain because no request chose to draft: the same step, priced alike
                gate.measure_plain(gate_tokens, record.step_seconds)
            elif record.drafted_requests:
                gate.observe(True, gate_tokens, record.step_seconds, counted=not step["capped"])
        solo = step.get("solo")
        if solo is not None and step.get("pure"):  # a round decided as at batch 1 teaches the policy as there
            if solo == "plain" and emitted_tokens > 0:
                finished_rounds = [(StepRecord(step=0, proposed=0, verified=0, accepted=0, emitted=emitted_tokens, confidences=None,
                                               draft_seconds=0.0, step_seconds=0.0, source="plain"), None)]
            for round_, _ in finished_rounds:
                round_.step_seconds = record.step_seconds
                spec.policy.observe(round_)
            finished_rounds = []
        for round_, ngram in finished_rounds:
            round_.step_seconds = record.step_seconds
            observe_round(spec.policy, round_, ngram)
        spec.telemetry.add_step(record)
        if spec.callback is not None:
            spec.callback(record)
        if outputs:
            self.output_router.deliver_batch(outputs)

    def _observe_overhead(self, record: BatchStep, draft_seconds: float, verified_blocks: bool) -> None:
        """Give the speculation what this pure decoding step (every row a request's last token or its
        ``[last, d_1 .. d_L]``) cost beyond its forward on the cost curve and its drafting;
        ``verified_blocks``: whether some request verified a drafted block (a step that verified only
        prompt-lookup guesses does no per-request drafting work and counts as plain)."""
        spec = self.speculation
        requests = len(self.inputs_and_outputs.requests_in_batch)
        forward = 1.0 / max(spec.step_curve(requests)(record.batch_tokens), 1e-12)
        spec.observe_step_overhead(requests, record.step_seconds - draft_seconds - forward, drafted=verified_blocks)

    @staticmethod
    def _commit(state, tokens: list[int]) -> tuple[bool, int]:
        """Append ``tokens`` one by one through transformers' own per-token update, which stops at EOS
        and ``max_new_tokens``. Returns ``(finished, tokens appended)``."""
        for count, token in enumerate(tokens, start=1):
            if state.update_and_check_completion(token, None):
                return True, count
        return False, len(tokens)


def _schedule_block(state, request, length: int) -> None:
    """The request verifies the first ``length`` tokens of its drafted block this step: ``[last, d_1 .. d_L]``."""
    request.verify_length = length
    request.last_confidences = request.block_confidences
    request.verify_tokens = request.block_tokens[:length]
    state.tokens_to_process = [state.generated_tokens[-1]] + request.verify_tokens


def _schedule_guess(state, request, tokens: list[int], ngram: int) -> None:
    """The request verifies ``tokens`` of a prompt-lookup guess matched on ``ngram`` tokens this step."""
    request.set_guess(tokens, ngram)
    state.tokens_to_process = [state.generated_tokens[-1]] + request.verify_tokens


def _on_host(blocks) -> tuple[list[list[int]], list]:
    """Every block's tokens as host lists and confidences as host tensors (``None`` without a confidence
    head), in one transfer each for the whole step: planning (:mod:`.planning`), the scheduled tokens and
    the telemetry read them there, instead of a device synchronisation per request (or per slot) each."""
    if not blocks:
        return [], []
    tokens = torch.cat([b.tokens for b in blocks]).tolist()
    found = [b.confidences for b in blocks]
    if all(c is not None for c in found):
        confidences = list(torch.stack(found).cpu().unbind(0))
    else:
        confidences = [None if c is None else c.cpu() for c in found]
    return tokens, confidences
