"""The drafting set-up of one speculative batch engine, shared by all its requests.

:class:`Speculation` binds the draft to the target (embeddings), resolves the verification policy
(``generation_config.dspark_policy``, else ``draft.verification_policy``) and sets it up once, builds
the target's logits processors for ``generation_config`` (used for the draft's blocks and for every
verification row), keeps the per-request states and the telemetry, and owns the forward hooks that
capture the target's features, and finds the cost curve of the packed forward for the hardware-aware policy
(a stored ``dspark profile --packed``; without one, a one-line notice and the policy's batch-1 curve).
The hooks belong to the engine's generation thread (transformers runs
the loop in a background thread; :meth:`feature_tap` makes them there), so forwards of the same target
in other threads are not recorded.
"""

from __future__ import annotations

import collections
import contextlib
import statistics
import sys
import threading

import torch

from dspark_hf.batching.packed_profile import find_packed_profile, packed_profile_path
from dspark_hf.batching.planning import is_batch_scheduled
from dspark_hf.batching.request_state import SpeculativeRequest
from dspark_hf.batching.telemetry import BatchTelemetry
from dspark_hf.integration.target_features import TargetFeatureTap
from dspark_hf.integration.weight_major import wants_weight_major, weight_major_verification
from dspark_hf.verification.policies import resolve_policy
from dspark_hf.verification.scheduling.drafting_gate import DraftingGate, kept_gate, kept_gates



OVERHEAD_WINDOW = 15  # pure steps per request count in the overhead median (Speculation.step_overhead)
# Whether a request drafts is decided on its previous block's confidences (Speculation.next_block_confidences):
# those predict the next block's acceptance only about half as well as they predict their own block's
# (measured, docs/measurements/2026-12-04g/traces/stale_confidence.log: previous slot-1 confidence 0.07 ->
# next block's slot-1 acceptance 0.20, 0.83 -> 0.49, overall 0.33), so they are mixed half and half with
# the mean of the recent blocks. A request that has not drafted yet is expected to draft like the recent
# blocks (since run l; before, it had to draft on its first step, which at 16 new requests made the first
# step catch 16 draft contexts up over their prompts: 500-550 ms against a 155 ms plain step,
# docs/measurements/2026-12-05b/c16_trace.log). The recent blocks are kept on the draft, as the step gates
# are, so a later engine or call starts from them.
PREVIOUS_BLOCK_WEIGHT = 0.5
RECENT_BLOCKS = 64  # blocks in that mean
# Profile paths of targets already told (once per process) that no packed profile is stored: a program that
# serves through many managers (one per generate_batch call) gets the notice once, not once per call.
_TOLD_NO_PACKED_PROFILE: set[str] = set()


class Speculation:
    """Draft, policy, logits processors, per-request states, telemetry and feature hooks of one engine."""

    def __init__(self, target, draft, generation_config, steps_per_second=None) -> None:
        self.target = target
        self.draft = draft
        if getattr(draft.config, "embeddings_from_target", False) and not draft._bound_target:
            draft.bind_target_embeddings(target)
        self.block_size = draft.config.block_size
        self.do_sample = bool(generation_config.do_sample)
        self.logits_processor = target._get_logits_processor(generation_config)
        self.policy = resolve_policy(getattr(generation_config, "dspark_policy", None) or draft.verification_policy)
        # Set up in the verification mode of the engine's own verification forwards (the processor's
        # weight_major_forward), so that a hardware-aware policy reads the cost profile of those forwards, as a
        # batch-1 call does inside its verification context, and keys its batch-1 gate alike. Before run ab it read
        # the profile of transformers' plain forward (F.linear at every row count: on the Xeon without AMX 4-8
        # rows cost 1.3-2x what they cost weight-major / compiled): the engine's curve wherever no packed profile is
        # stored, and the one a request running alone is decided on, which then verified shorter blocks and guesses
        # than the batch-1 path (docs/measurements/2026-12-07g/c1_step_costs.log).
        with weight_major_verification(target) if wants_weight_major(target, None) else contextlib.nullcontext():
            self.policy.setup(target, draft, generation_config)
        self.steps_per_second = steps_per_second
        self.packed_profile = None
        if steps_per_second is None and is_batch_scheduled(self.policy) and getattr(self.policy, "_given_profile", None) is None:
            self.packed_profile = find_packed_profile(target)
            if self.packed_profile is None:
                _tell_no_packed_profile(target)
        self.callback = getattr(generation_config, "dspark_callback", None)
        self.requests: dict[str, SpeculativeRequest] = {}
        self.telemetry = BatchTelemetry()
        draft.last_batch_telemetry = self.telemetry
        self._tap: TargetFeatureTap | None = None
        self._tap_thread: int | None = None
        self.step_gates: dict[int, DraftingGate] = {}  # per number of decoding requests (step_gate)
        self._overheads: dict[tuple[bool, int], collections.deque] = {}  # per (drafted, decoding requests) (step_overhead)
        self._drafting: dict[int, collections.deque] = {}  # per number of drafted requests (drafting_seconds)
        self._recent_confidences = kept_recent_blocks(draft)  # host tensors [gamma], kept on the draft
        self._recent_mean = None  # their per-slot mean, made on first use after a new block

    def observe_block_confidences(self, confidences) -> None:
        """Record a drafted block's confidences (a host tensor ``[gamma]``; ``None`` is ignored)."""
        if confidences is not None:
            self._recent_confidences.append(confidences.double())
            self._recent_mean = None

    def next_block_confidences(self, previous):
        """The expected confidences of a request's next block, from its ``previous`` block's (a host tensor, or
        ``None`` for a request that has not drafted yet): :data:`PREVIOUS_BLOCK_WEIGHT` of them and the rest
        the mean of the last :data:`RECENT_BLOCKS` blocks drafted with this draft, per slot (the previous
        block's alone before any); for a request that has not drafted, that mean alone (``None`` before any
        block: such a request then drafts, :func:`.planning.requests_to_draft`). Token-blind: only finished
        blocks."""
        if not self._recent_confidences:
            return previous
        if self._recent_mean is None:  # once per new block, not once per request of a step
            self._recent_mean = torch.stack(list(self._recent_confidences)).mean(dim=0)
        mean = self._recent_mean
        if previous is None:
            return mean.clone()
        return (PREVIOUS_BLOCK_WEIGHT * previous.double() + (1.0 - PREVIOUS_BLOCK_WEIGHT) * mean).to(previous.dtype)

    def observe_drafting(self, requests: int, seconds: float) -> None:
        """Record one batched drafting call for ``requests`` requests that took ``seconds``."""
        self._drafting.setdefault(int(requests), collections.deque(maxlen=OVERHEAD_WINDOW)).append(float(seconds))

    def drafting_seconds(self, requests: int) -> float:
        """The expected seconds of one batched drafting call for ``requests`` requests: the median of the
        last :data:`OVERHEAD_WINDOW` calls of that count; for a count not measured, the affine cost
        ``a + b k`` through the medians of the measured counts (:func:`affine_cost`); 0 before any call.
        A batched draft forward costs far less than ``k`` single ones (one call, one weight read; on this
        project's CPU a 4-row step of two requests took 82 ms with both drafting against 81 ms with one,
        docs/measurements/2026-12-04g/traces/bench_trace_before.log), so a per-request price times ``k`` made
        the planner draft for one request of two where both paid."""
        count = int(requests)
        if count <= 0 or not self._drafting:
            return 0.0
        if count in self._drafting:
            return statistics.median(self._drafting[count])
        return affine_cost({k: statistics.median(v) for k, v in self._drafting.items()})(count)

    def observe_step_overhead(self, requests: int, seconds: float, drafted: bool = True) -> None:
        """Record one pure decoding step of ``requests`` requests whose measured time exceeded its packed
        forward on the cost curve plus its drafting by ``seconds`` (the engine's own work: planning,
        acceptance, cache rewinds, the draft's inputs; can be negative when the curve overprices).
        ``drafted``: whether some request verified a drafted block in it (else a plain step); the two
        kinds are kept apart, since a plain step does none of the per-request drafting work."""
        key = (bool(drafted), int(requests))
        self._overheads.setdefault(key, collections.deque(maxlen=OVERHEAD_WINDOW)).append(float(seconds))

    def step_overhead(self, requests: int, drafted: bool = True) -> float:
        """The engine's own seconds per step of ``requests`` decoding requests beyond the packed forward
        and the drafting, for a step that verifies drafted blocks (``drafted``) or a plain one: the median
        of the last :data:`OVERHEAD_WINDOW` pure steps of that kind and count (of the nearest count of
        that kind measured, before any of its own; of the other kind while this kind has none), never
        below 0; 0 before any step. Planning adds it to every candidate step's time
        (:func:`.planning.plan_lengths`; :func:`.planning.requests_to_draft` prices its plain option with
        the plain kind's). Where the engine's work is a large part of a step (a small model, or a GPU
        whose eager forward is launch-bound: in the H200 cost-mode run a 64-token drafted step of the
        Qwen3-8B shape took 250-440 ms around a 60 ms forward), leaving it out prices each verified slot
        as a share of the forward alone, and Algorithm 1 admits too few; mixing the kinds would price a
        drafted step at a plain step's lighter work wherever most steps are plain."""
        kind = bool(drafted)
        if not any(k == kind for k, _ in self._overheads):
            kind = not kind
        counts = [c for k, c in self._overheads if k == kind]
        if not counts:
            return 0.0
        count = int(requests)
        nearest = count if count in counts else min(counts, key=lambda c: (abs(c - count), c))
        return max(0.0, statistics.median(self._overheads[(kind, nearest)]))

    def step_gate(self, requests: int) -> DraftingGate | None:
        """The measured drafting gate for steps of ``requests`` decoding requests: batch-scheduled
        hardware-aware policies with their gate on (not ``always-draft``), else ``None``. A gate per
        request count, because a plain step's tokens per second grows with it; its first estimate of a
        plain step is the packed (else batch-1) cost curve at ``B = requests``. A count met for the first
        time starts seeded (:meth:`_seed_from_neighbour`) from the nearest measured count's tokens per
        request and its own curve. Kept on the draft, so a later engine or ``generate_batch`` call starts
        from what this one measured."""
        if not (is_batch_scheduled(self.policy) and getattr(self.policy, "use_gate", False)):
            return None
        gate = self.step_gates.get(requests)
        if gate is None:
            sps = self.step_curve(requests)
            profile = self.policy.profile
            key = ("packed", requests, profile.model, profile.device, profile.dtype)

            def make() -> DraftingGate:
                made = DraftingGate(1.0 / (requests * max(sps(requests), 1e-12)), explore_per_call=requests < 2)
                self._seed_from_neighbour(made, key, sps)
                return made

            gate = kept_gate(self.draft, key, make)
            self.step_gates[requests] = gate
        return gate

    def _seed_from_neighbour(self, gate: DraftingGate, key, sps) -> bool:
        """Seed a new count's ``gate`` from the nearest count of the same profile whose drafting is
        measured: its tokens per drafting step per request, times this count, in a drafting step priced on
        this count's own curve (verifying one slot per request, ``B = 2 R``, plus ``R`` requests' drafting).
        The neighbour's acceptance carries over; its costs do not: on this project's CPU, until plain steps
        ran weight-major too (2026-12-05, run l), a plain step of 2 requests (2 rows, ``F.linear``) cost more
        than one verifying a slot each (4 rows, weight-major), while for one request verifying cost about a
        plain step, so a drafting/plain ratio measured at one request (below 1 on a prompt the draft misses)
        would have switched drafting off at two, where it paid; each count's own curve prices its steps.
        The policy's batch-1 gate counts as a measured count of one (after a packed gate of one request, where
        both exist): since 2026-12-07 (run ab) a request running alone drafts on it rather than on a packed gate.
        Returns whether a neighbour was found."""
        requests = key[1]
        same = [(abs(k[1] - requests), k[1], 0, g) for k, g in kept_gates(self.draft).items()
                if isinstance(k, tuple) and len(k) == len(key) and k[0] == key[0] and k[2:] == key[2:] and k[1] != requests]
        single = getattr(self.policy, "gate", None)  # the batch-1 gate: a request running alone drafts on it (processor)
        if single is not None and requests != 1:
            same.append((requests - 1, 1, 1, single))
        for _, count, _, neighbour in sorted(same, key=lambda t: t[:3]):
            tokens = neighbour.measured_tokens_per_round()
            if tokens is not None:
                seconds = 1.0 / max(sps(2 * requests), 1e-12) + self.drafting_seconds(requests)
                gate.seed(tokens / count * requests, seconds)
                return True
        return False

    def step_curve(self, requests: int):
        """``SPS(B)`` for a step of ``requests`` decoding requests, always a curve: :meth:`steps_per_second_for`,
        else the policy's own batch-1 profile (batch-scheduled policies only)."""
        return self.steps_per_second_for(requests) or self.policy.profile.steps_per_second

    def steps_per_second_for(self, requests: int):
        """``SPS(B)`` for a step of ``requests`` decoding requests: the given curve, else the stored
        packed profile's (:mod:`.packed_profile`), else ``None`` (the policy's own batch-1 profile)."""
        if self.steps_per_second is not None:
            return self.steps_per_second
        if self.packed_profile is not None:
            return self.packed_profile.steps_per_second_for(requests)
        return None

    def request(self, request_id: str) -> SpeculativeRequest:
        """The state of ``request_id``, made on first use."""
        spec = self.requests.get(request_id)
        if spec is None:
            spec = self.requests[request_id] = SpeculativeRequest(self.draft)
            self.telemetry.add_request(request_id, spec.telemetry)
        return spec

    def forget(self, request_id: str) -> None:
        """Drop a finished or cancelled request's state (its draft context cache with it)."""
        self.requests.pop(request_id, None)

    def feature_tap(self) -> TargetFeatureTap:
        """The hooks on the target's feature layers, owned by the calling (generation) thread."""
        if self._tap is None or self._tap_thread != threading.get_ident():
            self.close()
            self._tap = TargetFeatureTap(self.target, self.draft.config.target_layer_ids, reduce=getattr(self.draft, "target_feature", None))
            self._tap_thread = threading.get_ident()
        return self._tap

    def close(self) -> None:
        """Remove the hooks."""
        if self._tap is not None:
            self._tap.close()
            self._tap = None


def _tell_no_packed_profile(target) -> None:
    """One stderr line, the first time in this process that ``target`` (on its device, dtype and threads) has no
    stored packed profile."""
    key = str(packed_profile_path(target))
    if key in _TOLD_NO_PACKED_PROFILE:
        return
    _TOLD_NO_PACKED_PROFILE.add(key)
    print("dspark: no packed cost profile for this target here; the batch is scheduled on the batch-1 curve "
          "(run `dspark profile --packed` for the packed forward's).", file=sys.stderr)


def kept_recent_blocks(draft) -> collections.deque:
    """The confidences of the last :data:`RECENT_BLOCKS` blocks drafted with ``draft`` in any engine (a deque
    stored on the draft, made on first use)."""
    recent = getattr(draft, "_dspark_recent_block_confidences", None)
    if not isinstance(recent, collections.deque) or recent.maxlen != RECENT_BLOCKS:
        recent = collections.deque(maxlen=RECENT_BLOCKS)
        draft._dspark_recent_block_confidences = recent
    return recent


def affine_cost(medians: dict[int, float]):
    """``k -> a + b k`` fitted to ``medians`` (seconds per count ``k``) by least squares with ``a, b >= 0``:
    from one count, proportional (``b = t / k``, no fixed part assumed, which never underprices a larger
    batch); from several, the fitted line, its slope clipped at 0 (then the mean) and its intercept at 0
    (then the proportional fit through the origin)."""
    points = sorted(medians.items())
    if len(points) == 1:
        k0, t0 = points[0]
        return lambda k: t0 * k / k0
    n = len(points)
    mean_k = sum(k for k, _ in points) / n
    mean_t = sum(t for _, t in points) / n
    var = sum((k - mean_k) ** 2 for k, _ in points)
    slope = max(0.0, sum((k - mean_k) * (t - mean_t) for k, t in points) / var)
    intercept = mean_t - slope * mean_k
    if intercept < 0:
        intercept, slope = 0.0, sum(k * t for k, t in points) / sum(k * k for k, _ in points)
    return lambda k: intercept + slope * k
