"""Verification policies: how many drafted tokens of a block the target verifies this round.

Contract of :meth:`VerificationPolicy.verify_length`: given the per-slot confidences ``c_k`` of the
drafted block (``None`` for drafts without a confidence head) and the block size, return ``L`` in
``[0, block_size]``; the target then verifies the first ``L`` drafted tokens. A policy may look at
``c_k`` (which depends only on the tokens before slot ``k``) but never at the drafted tokens
themselves, and it must decide slot by slot from the left, stopping at its first "no": that is what
keeps speculative sampling lossless. :meth:`observe` receives every finished round's telemetry, for
policies that learn online. :meth:`VerificationPolicy.should_draft`, asked before a round drafts, may
answer no from finished rounds only (then the round is a plain one-token step; ``proposed == 0`` in its
record); only the hardware-aware policies do (:mod:`dspark_hf.verification.scheduling.drafting_gate`).
:meth:`VerificationPolicy.lookup_length`, asked before a round drafts when the policy's ``lookup_tokens`` is
positive and the sequence has a prompt-lookup guess, may answer that the round verifies that guess instead
of drafting (a *lookup round*, ``source == "lookup"`` in its record), again from finished rounds only; the
hardware-aware policies do when the guess is expected to deliver more tokens per second
(:mod:`dspark_hf.verification.scheduling.lookup_rounds`).

Choose a policy per call with ``generation_config.dspark_policy`` (an instance, or a spec string such
as ``"whole"`` or ``"threshold:0.6"``), or per draft with ``draft.verification_policy``.

Spec strings: ``"whole"``, ``"fixed:L"``, ``"threshold:t"``, ``"survival:t"``, ``"hardware"`` (or
``"hardware:profile|whole|error"``: what to do when no cost profile exists; ``"hardware:always-draft"``:
draft every round, no gate and no lookup rounds; ``"hardware:no-lookup"``: never verify a prompt-lookup guess instead
of drafting; options combine with a comma), ``"online"`` (same options). When to use which: ``docs/scheduling.md``.
"""

from __future__ import annotations

import inspect
import math
import sys

import torch

from dspark_hf.errors import UnsupportedUsageError
from dspark_hf.telemetry import StepRecord


# The policy `dspark generate` and the demo start with: the fastest one measured on this project's CPU
# with the shipped draft (docs/benchmarks.md). It profiles the target's cost curve on first use when no
# profile is stored (`dspark profile` stores one). `generate()` itself keeps "whole" unless told otherwise.
FASTEST_MEASURED_POLICY = "hardware"


class VerificationPolicy:
    """Base class; subclasses implement :meth:`verify_length`."""

    name = "policy"
    # True when the policy verifies the whole block whenever a draft gives no confidences (a draft
    # without a confidence head), so that for such drafts it is ``whole`` under another name
    needs_confidences = False
    # The longest prompt-lookup guess (tokens) the policy may verify instead of drafting; 0: it never does.
    lookup_tokens = 0

    def setup(self, target, draft, generation_config) -> None:
        """Called once per generate() call before the first round (e.g. to find a cost profile for
        this target and device); the default does nothing."""

    def verify_length(self, confidences: torch.Tensor | None, block_size: int) -> int:
        raise NotImplementedError

    def should_draft(self) -> bool:
        """Whether the coming round drafts (asked once per round, before drafting; the answer may depend
        on finished rounds only). The default always drafts."""
        return True

    def lookup_length(self, ngram: int, available: int, drafting: bool) -> int:
        """How many tokens of a prompt-lookup guess the coming round verifies instead of drafting (``0``: none,
        the round goes on as :meth:`should_draft` said). ``ngram``: the size of the match the guess came from;
        ``available``: its length; ``drafting``: :meth:`should_draft`'s answer for this round. Asked only when
        ``lookup_tokens > 0`` and a guess exists; the answer may depend on finished rounds only. The default
        never verifies a guess."""
        return 0

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
    needs_confidences = True

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


class FixedLength(VerificationPolicy):
    """Verify the first ``length`` drafted tokens every round, whatever the confidences (capped at the
    block size). The baseline a scheduler must beat: the best fixed length for a machine and workload is
    found by trying each ``L``; use it for drafts without confidences when no profile can be made."""

    name = "fixed"

    def __init__(self, length: int = 3) -> None:
        if isinstance(length, bool) or not isinstance(length, (int, float)) or not math.isfinite(length) or length != int(length) or length < 0:
            raise UnsupportedUsageError(f"fixed verification length must be a whole number >= 0, got {length}.")
        self.length = int(length)

    def verify_length(self, confidences, block_size):
        return min(self.length, block_size)

    def __repr__(self) -> str:
        return f"FixedLength({self.length})"


class _CalibratedConfidences(VerificationPolicy):
    """Base for policies that read ``c_k`` as probabilities: applies the draft's stored sequential
    temperatures (``confidence_temperatures``, :mod:`dspark_hf.verification.calibration`) before deciding."""

    temperatures: list[float] | None = None

    def setup(self, target, draft, generation_config) -> None:
        from dspark_hf.verification.calibration.temperatures import draft_temperatures

        self.temperatures = draft_temperatures(draft)

    def calibrated(self, confidences: torch.Tensor) -> torch.Tensor:
        from dspark_hf.verification.calibration.temperatures import apply_temperatures

        return apply_temperatures(confidences, self.temperatures)


class SurvivalThreshold(_CalibratedConfidences):
    """Verify the longest prefix whose cumulative survival ``a_j = prod_{i<=j} c_i`` (the probability
    that all of its tokens are accepted) stays at or above ``threshold``. Unlike the per-slot threshold
    it accounts for the risk already taken by earlier slots, so one threshold means the same thing at
    every depth. Use it when no cost profile is at hand and the confidences are calibrated; drafts
    without a confidence head verify the whole block."""

    name = "survival"
    needs_confidences = True

    def __init__(self, threshold: float = 0.5) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise UnsupportedUsageError(f"survival threshold must lie in [0, 1], got {threshold}.")
        self.threshold = float(threshold)

    def verify_length(self, confidences, block_size):
        if confidences is None:
            return block_size
        survival = torch.cumprod(self.calibrated(confidences).double(), dim=-1)
        below = (survival < self.threshold).nonzero()
        return int(below[0, 0]) if below.numel() else block_size

    def __repr__(self) -> str:
        return f"SurvivalThreshold({self.threshold})"


MISSING_PROFILE_ACTIONS = ("profile", "whole", "error")


class HardwareAware(_CalibratedConfidences):
    """The paper's hardware-aware prefix scheduler (Algorithm 1) at batch 1: verify the prefix that
    maximises expected tokens per second, ``(1 + sum_{j<=L} a_j) / (t_target(L + 1) + t_round)``, where
    ``t_target(B)`` comes from the target's profiled cost curve (:mod:`dspark_hf.verification.scheduling`) and
    ``t_round`` (drafting and loop overhead per round) starts at the profile's draft cost and then
    follows the measured rounds. It stops at the first slot that does not raise throughput, which keeps
    sampling lossless. Use it whenever the target's cost per verified token is not negligible (CPU,
    large targets, long blocks) and the draft has a confidence head; without one it schedules from
    per-slot acceptance estimates learned online (as :class:`OnlineAcceptance`).

    Where even the best length does not pay for the drafting round, rounds skip drafting
    (:class:`~dspark_hf.verification.scheduling.drafting_gate.DraftingGate`: measured tokens per second of
    drafting rounds against plain steps, with exploration; kept on the draft between calls);
    ``gate=False`` always drafts. With the gate, a round whose sequence has a prompt-lookup guess verifies
    that guess instead of drafting (or instead of a plain step) when its expected tokens per second, from
    acceptance estimates per n-gram size learned in this call, is at least the measured rate of what the
    round would otherwise do (:mod:`dspark_hf.verification.scheduling.lookup_rounds`); ``lookup=False``
    never does. ``lookup_tokens``: the longest guess considered.

    ``profile``: a :class:`~dspark_hf.verification.scheduling.CostProfile` or a JSON path; ``None`` finds the stored
    profile for the target, device, dtype and thread count. ``on_missing`` says what happens when none
    exists: ``"profile"`` (default) measures one now (a short profile, about ``block_size + 4`` forward
    shapes x 5 repeats), stores it for next time and says so on stderr; ``"whole"`` falls back to
    verifying the whole block, with a one-line notice; ``"error"`` raises
    :class:`~dspark_hf.verification.scheduling.ProfileMissingError`.
    """

    name = "hardware"
    use_confidences = True

    def __init__(self, profile=None, on_missing: str = "profile", overhead_smoothing: float = 0.1, explore_every: int = 16,
                 gate: bool = True, lookup: bool = True, lookup_tokens: int = 7) -> None:
        if on_missing not in MISSING_PROFILE_ACTIONS:
            raise UnsupportedUsageError(f"on_missing must be one of {MISSING_PROFILE_ACTIONS}, got {on_missing!r}.")
        self.on_missing = on_missing
        self.overhead_smoothing = float(overhead_smoothing)
        self.explore_every = int(explore_every)
        self._given_profile = profile
        self.profile = None
        self.round_seconds = 0.0
        self.estimator = None
        self._rounds = 0
        self.use_gate = bool(gate)
        self.gate = None
        self.use_lookup = bool(lookup)
        self.max_lookup_tokens = int(lookup_tokens)
        self.lookup_rounds = None
        self._lookup_ngram = None

    @classmethod
    def from_spec(cls, arg: str):
        """``arg``: comma-separated options, a missing-profile action, ``always-draft`` (no gate, no lookup
        rounds) and / or ``no-lookup``."""
        options = [a.strip() for a in arg.split(",") if a.strip()]
        unknown = [a for a in options if a not in MISSING_PROFILE_ACTIONS + ("always-draft", "no-lookup")]
        if unknown:
            raise UnsupportedUsageError(f"on_missing must be one of {MISSING_PROFILE_ACTIONS} (or the options 'always-draft', "
                                        f"'no-lookup'), got {arg!r}.")
        actions = [a for a in options if a in MISSING_PROFILE_ACTIONS]
        return cls(on_missing=actions[-1] if actions else "profile", gate="always-draft" not in options,
                   lookup="no-lookup" not in options)

    # -- setup: cost profile and estimates ---------------------------------------------------------

    def setup(self, target, draft, generation_config) -> None:
        super().setup(target, draft, generation_config)
        self.profile = self._find_or_make_profile(target, draft)
        self.estimator = self._estimator_for(draft)
        self.gate = None
        if self.use_gate and self.profile is not None:
            from dspark_hf.verification.scheduling.drafting_gate import DraftingGate, kept_gate

            profile = self.profile
            key = ("batch-1", profile.model, profile.device, profile.dtype, profile.verification)
            self.gate = kept_gate(draft, key, lambda: DraftingGate(profile.step_seconds(1)))  # start_call()-ed if kept
        self._start_text()

    def start_sequence(self) -> None:
        """Start a new text as a new ``generate()`` call would, after :meth:`setup`: the gate's exploration
        and counts of rounds in a row (:meth:`~dspark_hf.verification.scheduling.drafting_gate.DraftingGate.start_call`),
        the lookup estimates (of one text only) and the round-overhead estimate start afresh; the gate's
        measured averages, the cost profile and the draft's acceptance estimates stay. The batch engine calls
        it when a request starts running alone (it then decides that request's rounds as this policy does at
        batch 1)."""
        if self.gate is not None:
            self.gate.start_call()
        self._start_text()

    def _start_text(self) -> None:
        self._rounds = 0
        if self.profile is not None:
            self.round_seconds = self.profile.draft_seconds
        self.lookup_rounds = None
        self.lookup_tokens = 0
        self._lookup_ngram = None
        if self.use_lookup and self.gate is not None and self.max_lookup_tokens > 0:
            from dspark_hf.verification.scheduling.lookup_rounds import LookupRounds

            self.lookup_rounds = LookupRounds(self.max_lookup_tokens)  # estimates of this call's text only
            self.lookup_tokens = self.max_lookup_tokens

    def _find_or_make_profile(self, target, draft):
        from dspark_hf.verification.scheduling.cost_profile import CostProfile, ProfileMissingError, find_profile, load_profile, save_profile

        if isinstance(self._given_profile, CostProfile):
            return self._given_profile
        if self._given_profile is not None:
            return load_profile(self._given_profile)
        try:
            return _cached(find_profile, target)
        except ProfileMissingError as err:
            if self.on_missing == "error":
                raise
            if self.on_missing == "whole":
                print(f"dspark: {err} Verifying whole blocks meanwhile.", file=sys.stderr)
                return None
            from dspark_hf.verification.scheduling.profiler import profile_target

            block = draft.config.block_size
            print(f"dspark: {err} Profiling now (once; stored for later runs).", file=sys.stderr)
            tokens = sorted(set(range(1, block + 2)) | {block + 4, 2 * block + 2, 4 * block})
            # The profiler times a block draft's round (DSpark, DFlash, V4: drafts with a mask token); for
            # other drafts (EAGLE-3 chains) only the target is profiled and the round time is learned online.
            timed = draft if getattr(draft.config, "mask_token_id", None) is not None else None
            profile = profile_target(target, timed, tokens=tokens, warmup=2, repeats=5)
            path = save_profile(profile)
            print(f"dspark: cost profile stored at {path}", file=sys.stderr)
            _PROFILE_CACHE.clear()
            return profile

    def _estimator_for(self, draft):
        """Online per-slot estimates, kept on the draft so they carry over between generate() calls."""
        from dspark_hf.verification.scheduling.acceptance_estimates import SlotAcceptanceEstimator

        block = draft.config.block_size
        estimator = getattr(draft, "_dspark_acceptance_estimator", None)
        if not isinstance(estimator, SlotAcceptanceEstimator) or estimator.block_size != block:
            estimator = SlotAcceptanceEstimator(block)
            draft._dspark_acceptance_estimator = estimator
        return estimator

    # -- per round -----------------------------------------------------------------------------------

    def slot_confidences(self, confidences, block_size) -> torch.Tensor | None:
        """``c_k`` this round: calibrated confidences, or online estimates for drafts without them."""
        if confidences is not None and self.use_confidences:
            return self.calibrated(confidences)
        if self.estimator is None:
            return None
        return torch.tensor(self.estimator.estimates()[:block_size], dtype=torch.float64)

    def verify_length(self, confidences, block_size):
        if self.profile is None:
            return block_size
        from_estimates = confidences is None or not self.use_confidences
        self._rounds += 1
        if from_estimates and self.explore_every and self._rounds % self.explore_every == 1:
            return block_size  # a scheduled (token-blind) full round keeps every slot's estimate fresh
        slot_c = self.slot_confidences(confidences, block_size)
        if slot_c is None:
            return block_size
        from dspark_hf.verification.scheduling.prefix_scheduler import schedule_prefixes

        return schedule_prefixes([slot_c.tolist()], self.profile.steps_per_second, draft_seconds=self.round_seconds)[0]

    def should_draft(self) -> bool:
        return self.gate is None or self.gate.should_draft()

    def lookup_length(self, ngram, available, drafting):
        self._lookup_ngram = None
        if self.lookup_rounds is None or available <= 0:
            return 0
        gate, profile = self.gate, self.profile
        if drafting:
            if gate.drafting_rounds == 0 or gate.draft_seconds <= 0:
                return 0  # drafting not measured yet: measure it first
            rate = gate.draft_tokens / gate.draft_seconds
        else:
            rate = 1.0 / gate.plain_seconds
        # the profile's curve, scaled to the plain steps measured in this process
        one = profile.step_seconds(1)
        scale = gate.plain_seconds / one if one > 0 else 1.0
        length = self.lookup_rounds.length(ngram, available, lambda tokens: scale * profile.step_seconds(tokens), rate)
        if length:
            self._lookup_ngram = ngram
        return length

    def observe(self, record) -> None:
        if record.source == "lookup":  # a verified guess: neither a drafting round nor a plain step
            if self.lookup_rounds is not None and self._lookup_ngram:
                self.lookup_rounds.observe(self._lookup_ngram, record.verified, record.accepted)
            self._lookup_ngram = None
            return
        drafted = record.proposed > 0
        if self.gate is not None:
            self.gate.observe(drafted, record.emitted, record.step_seconds)
        if not drafted:
            return  # a plain step: nothing about the draft or the round's overhead to learn
        if self.estimator is not None:
            self.estimator.observe(record)
        if self.profile is not None and record.verified >= 0:
            overhead = max(0.0, record.step_seconds - self.profile.step_seconds(record.verified + 1))
            a = self.overhead_smoothing
            self.round_seconds = overhead if self._rounds <= 1 else (1 - a) * self.round_seconds + a * overhead

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(on_missing={self.on_missing!r}" + ("" if self.use_gate else ", gate=False")
                + ("" if self.use_lookup else ", lookup=False") + ")")


class OnlineAcceptance(HardwareAware):
    """The hardware-aware scheduler fed with per-slot acceptance estimates learned while generating
    (discounted counts of how often slot ``k`` was accepted when reached; kept on the draft across
    calls) instead of a confidence head. For drafts without one (DFlash, ``markov_rank = 0``) or whose
    confidences are not trusted. One round in ``explore_every`` verifies the whole block so that
    estimates of slots the scheduler stopped verifying keep being refreshed; the choice never looks at
    the current block, so it is lossless. Same ``profile`` / ``on_missing`` options as
    :class:`HardwareAware`."""

    name = "online"
    use_confidences = False


_PROFILE_CACHE: dict = {}


def _cached(find, target):
    """``find(target)``, memoised per profile file (path and modification time)."""
    from dspark_hf.verification.scheduling.cost_profile import load_profile, profile_key, profile_path

    path = profile_path(profile_key(target))
    stamp = (str(path), path.stat().st_mtime_ns) if path.is_file() else None
    if stamp is not None and stamp in _PROFILE_CACHE:
        return _PROFILE_CACHE[stamp]
    profile = find(target)
    if stamp is not None:
        _PROFILE_CACHE[stamp] = profile
    return profile


POLICIES: dict[str, type[VerificationPolicy]] = {
    "whole": WholeBlock,
    "threshold": ConfidenceThreshold,
    "fixed": FixedLength,
    "survival": SurvivalThreshold,
    "hardware": HardwareAware,
    "online": OnlineAcceptance,
}


def resolve_policy(spec: VerificationPolicy | str | float | None) -> VerificationPolicy:
    """A policy from an instance, ``None`` (whole block), a threshold number, or a spec string
    ``"name"`` / ``"name:arg"`` (e.g. ``"threshold:0.6"``, ``"fixed:3"``, ``"hardware:whole"``)."""
    if spec is None:
        return WholeBlock()
    if isinstance(spec, VerificationPolicy):
        return spec
    if isinstance(spec, (int, float)):
        return ConfidenceThreshold(float(spec))
    name, _, arg = str(spec).partition(":")
    if name not in POLICIES:
        raise UnsupportedUsageError(f"Unknown verification policy {name!r}; choose one of {sorted(POLICIES)}.")
    cls = POLICIES[name]
    try:
        if hasattr(cls, "from_spec"):
            return cls.from_spec(arg)
        if not arg:
            return cls()
        if not _takes_argument(cls):
            raise UnsupportedUsageError(f"verification policy {name!r} takes no argument, got {spec!r}.")
        try:
            value = float(arg)
        except ValueError:
            raise UnsupportedUsageError(f"verification policy {name!r} takes a number, got {arg!r} in {spec!r}.") from None
        return cls(value)
    except UnsupportedUsageError as err:
        if str(spec) in str(err):
            raise
        raise UnsupportedUsageError(f"verification policy {spec!r}: {err}") from None


def _takes_argument(cls: type) -> bool:
    """Whether ``cls(value)`` is a valid call (``WholeBlock`` takes none)."""
    if cls.__init__ is object.__init__:
        return False
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params)
