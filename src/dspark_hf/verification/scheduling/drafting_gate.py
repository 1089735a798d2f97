"""Whether a round drafts at all (batch 1): the hardware-aware policy's answer for machines and prompts
where even the best verification length does not pay for the drafting round.

Algorithm 1 picks how many drafted tokens to verify, down to none; but the round that drafted them has
been paid by then. Where the draft's acceptance is low next to the cost of a round (a small target on a
CPU: a drafting round is ~15 % of a one-token forward there), rounds that end with little accepted are
slower than plain one-token steps. :class:`DraftingGate` compares what drafting rounds have delivered
with what plain steps deliver, both measured (tokens per second, smoothed), and skips drafting while
drafting is behind. A skipped round is a plain one-token step (the target's own token; the draft's
context catches up with the skipped positions at the next drafting round).

Exploration keeps the comparison fresh on both sides. After ``explore_every`` skipped rounds in a row
one round drafts anyway (:attr:`DraftingGate.exploring`; over a batch that round drafts for one request,
``SpeculativeBatchProcessor._explorer``); the interval doubles (up to ``explore_max``) while such forced rounds are the
only drafting, and returns to ``explore_every`` when drafting wins on its own (the batched scheduler's
rule, :mod:`dspark_hf.batching.request_state`). Symmetrically, after ``explore_every`` drafting rounds in
a row (warm-up done) one round is a plain *probe*, so that the plain side is measured too rather than
left at the cost profile's estimate (a profile timed at another context length, or a packed profile
timed at a fixed context, can be off by a fifth: a gate that only ever drafts would never find out);
the probe interval doubles up to ``explore_max`` while probes lose and returns to ``explore_every`` when
one wins. The first measured plain step replaces the profile's estimate, as the first drafting round
starts the drafting average. Every decision depends only on rounds already finished, never on the
round it decides, so speculative sampling stays lossless.

A drafting round's tokens are noisy (1 plus however many drafted tokens happen to be accepted), so the
smoothed average of a draft that pays on average still dips below plain now and then; once skipping,
the gate comes back only through a lucky forced round, while the exploration interval doubles. The
comparison therefore gives drafting one standard error of its smoothed tokens per round (the smoothed
spread over the average's ``(2 - a) / a`` effective rounds, ``a`` the smoothing); a draft behind plain by
more than its own noise is still skipped. Measured on the bundled SmolLM2 with weight-major float32
verification (2026-12-04, 2 prompts per set, 64 new tokens, one thread): without the allowance the
hardware-aware policy ran at 0.92x the fixed length 1 of the same run (drafting on 15 % of the rounds'
slots), with it at 1.01x (aggregate tokens/s).

Seconds are averaged robustly (:class:`RecentSeconds`): the mean over the last ``(2 - a) / a`` rounds (the
smoothed tokens' effective number of rounds), leaving out any round above ``OUTLIER_FACTOR`` times the lower
median of those rounds. A rare slow round (a kernel's first use at a new shape, another process taking
the core for a moment) would otherwise sit in an exponential average for dozens of rounds: measured on an
Intel Xeon (2026-12-06, bf16 row-by-row verification), the process's first drafting round took 11.5 s
(the row-invariance probes of :mod:`dspark_hf.integration.linear_rows` ran inside it), its smoothed
drafting cost stayed above 1 s per round for the rest of the run, and the gate kept drafting off on
prompts where drafting ran at 1.7x plain. Tokens need no such care: a round's are between 1 and the block.

A gate for a new situation (the batched scheduler keeps one per number of decoding requests) may start
seeded (:meth:`DraftingGate.seed`) with an estimate of its drafting steps instead of re-running the
warm-up rounds; the batched scheduler builds it from a measured neighbour's tokens per request and this
count's own cost curve (:meth:`dspark_hf.batching.speculation.Speculation.step_gate`).

A gate outlives one ``generate()`` call: :func:`kept_gate` stores it on the draft (as the online
acceptance estimates are), keyed by the machine, model and dtype of its cost profile, so a second call
starts from what the first measured instead of re-running the warm-up rounds. A batch-1 gate starts each
call's exploration afresh (:meth:`DraftingGate.start_call`), so a prompt on which drafting pays is found
within ``explore_every`` rounds; a gate over a batch (``explore_per_call=False``) keeps its interval, as its
drafting steps average over every request of the batch and a new call's requests move that average far
less than a new prompt moves one request's. Neither restarts its plain probes: a plain step's cost belongs
to the machine, not to the prompt. In the batched engine a step can also be plain because every request
declined to draft on its own confidences while the gate said draft; such a step is priced into the gate's
plain estimate too (:meth:`DraftingGate.measure_plain`), without counting as a round the gate chose.
Measured (2026-12-05, this project's CPU, the load benchmark's three passes, 1/2/4/8/16 requests): with
probes and exploration restarted on every call and only the gate's own plain steps priced, the
hardware-aware policy was 0.98/0.99/1.01/1.04/0.97 of the best other method; with both changes,
1.05/1.01/0.98/1.03/1.00 and, in a second run, 1.03/1.03/0.98/1.05/0.96 (passes vary by up to 5 %). Keeping the intervals alone was not enough (1.04/0.99/1.01/0.88/0.96): a trace
at 8 requests found the gate drafting on a plain estimate of 21 ms per token from one measured step, where
the plain steps the requests chose themselves took 14 (``docs/measurements/2026-12-05``).
"""

from __future__ import annotations

from collections import deque

OUTLIER_FACTOR = 3.0


class RecentSeconds:
    """A robust running estimate of seconds per round: the mean of the last ``window`` values, leaving
    out those above ``OUTLIER_FACTOR`` times the window's lower median (so one slow round among a few
    normal ones never counts, while a lasting change of cost, once it holds the median, does).
    ``window=None``: the estimate never moves from its first value (a gate with smoothing 0)."""

    def __init__(self, window: int | None, first: float | None = None) -> None:
        self.values: deque[float] = deque(maxlen=window or 1)
        self.frozen = window is None
        self.value = 0.0
        if first is not None:
            self.reset(first)

    def reset(self, value: float) -> None:
        """Forget every earlier value: the estimate is ``value``."""
        self.values.clear()
        self.values.append(float(value))
        self.value = float(value)

    def add(self, value: float) -> None:
        if self.frozen and self.values:
            return
        self.values.append(float(value))
        ordered = sorted(self.values)
        bound = OUTLIER_FACTOR * ordered[(len(ordered) - 1) // 2]
        kept = [v for v in ordered if v <= bound]
        self.value = sum(kept) / len(kept)


class DraftingGate:
    """Measured tokens per second of drafting rounds against plain steps; see the module docstring.

    ``plain_seconds``: the first estimate of a plain step (the cost profile's one-token forward);
    ``warmup``: drafting rounds before the gate may skip; ``smoothing``: weight of the newest round in
    the exponential averages of tokens (seconds: :class:`RecentSeconds` over ``(2 - smoothing) / smoothing``
    rounds; 0 keeps every estimate at its first value); ``plain_measured``: whether ``plain_seconds`` is itself a measurement (the
    first measured plain step is then averaged into it instead of replacing it)."""

    def __init__(self, plain_seconds: float, *, warmup: int = 8, explore_every: int = 8, explore_max: int = 64,
                 smoothing: float = 0.2, plain_measured: bool = False, explore_per_call: bool = True) -> None:
        self.warmup = int(warmup)
        self.explore_min = int(explore_every)
        self.explore_max = int(explore_max)
        self.explore_every = self.explore_min
        self.smoothing = float(smoothing)
        self.draft_tokens = 0.0  # per drafting round, smoothed
        self.draft_tokens_sq = 0.0  # its square, smoothed (for the spread)
        window = max(1, round((2 - self.smoothing) / self.smoothing)) if self.smoothing > 0 else None
        self._plain_window = RecentSeconds(window, float(plain_seconds))  # per plain step (one token)
        self._draft_window = RecentSeconds(window)  # per drafting round
        self.drafting_rounds = 0
        self.plain_rounds = int(bool(plain_measured))  # measured plain steps (skipped or probe rounds)
        self.skipped_in_a_row = 0
        self.drafted_in_a_row = 0
        self.probe_every = self.explore_min
        self.explore_per_call = bool(explore_per_call)
        self._forced = False
        self._probing = False

    @property
    def plain_seconds(self) -> float:
        """Seconds per token of a plain step: the profile's estimate until steps are measured, then
        :class:`RecentSeconds` of the measured steps."""
        return self._plain_window.value

    @property
    def draft_seconds(self) -> float:
        """Seconds per drafting round (:class:`RecentSeconds`; 0 before the first round or seed)."""
        return self._draft_window.value

    def tokens_allowance(self) -> float:
        """One standard error of the smoothed tokens per drafting round (0 without spread)."""
        a = self.smoothing
        if a <= 0 or self.drafting_rounds < 2:
            return 0.0
        spread = max(0.0, self.draft_tokens_sq - self.draft_tokens ** 2)
        return (spread * a / (2 - a)) ** 0.5

    def drafting_ahead(self) -> bool:
        """Whether drafting rounds have delivered at least plain steps' tokens per second, within one
        standard error of their smoothed tokens per round."""
        if self.drafting_rounds < self.warmup or self.draft_seconds <= 0:
            return True
        return (self.draft_tokens + self.tokens_allowance()) / self.draft_seconds >= 1.0 / self.plain_seconds

    def drafting_ratio(self) -> float | None:
        """Drafting rounds' tokens per second over plain steps' (both measured), or ``None`` before the
        warm-up rounds and a plain step have been measured."""
        if self.drafting_rounds < self.warmup or self.plain_rounds == 0 or self.draft_seconds <= 0:
            return None
        return self.draft_tokens / self.draft_seconds * self.plain_seconds

    def measured_tokens_per_round(self) -> float | None:
        """The smoothed tokens of a drafting round, once the warm-up rounds are measured, else ``None``."""
        if self.drafting_rounds < self.warmup or self.draft_seconds <= 0:
            return None
        return self.draft_tokens

    def seed(self, tokens: float, seconds: float) -> None:
        """Start this (new) gate as if its warm-up had measured drafting rounds of ``tokens`` tokens in
        ``seconds`` seconds each (one virtual round, counted as the whole warm-up); its exploration and
        probes correct it from there."""
        self.draft_tokens = float(tokens)
        self.draft_tokens_sq = self.draft_tokens ** 2
        self._draft_window.reset(seconds)
        self.drafting_rounds = max(self.warmup, 1)

    def should_draft(self) -> bool:
        """This round's choice (call once per round, then :meth:`observe` its outcome)."""
        self._forced = self._probing = False
        if self.drafting_ahead():
            if self.drafting_rounds >= self.warmup and self.drafted_in_a_row >= self.probe_every:
                self._probing = True  # a plain probe keeps the plain side measured
                return False
            return True
        if self.skipped_in_a_row + 1 >= self.explore_every:
            self._forced = True
            return True
        return False

    @property
    def exploring(self) -> bool:
        """Whether the last :meth:`should_draft` was a forced exploration round (drafting behind plain,
        its interval up), until that round is observed."""
        return self._forced

    def start_call(self) -> None:
        """A new call on the same machine: the measured averages and the probe interval stay, the counts of
        rounds in a row return to zero, and the exploration interval to ``explore_every`` when
        ``explore_per_call`` (see the module docstring)."""
        self.skipped_in_a_row = self.drafted_in_a_row = 0
        if self.explore_per_call:
            self.explore_every = self.explore_min
        self._forced = self._probing = False

    def measure_plain(self, emitted: int, seconds: float) -> None:
        """Average a plain step's seconds per emitted token into the plain estimate, leaving the rounds in a
        row, exploration and probes alone: for plain steps the gate did not choose itself (a batch whose
        requests all declined to draft on their own confidences) but that cost what its own would."""
        if emitted > 0 and seconds > 0:
            measured = seconds / emitted
            if self.plain_rounds == 0:
                self._plain_window.reset(measured)
            else:
                self._plain_window.add(measured)
            self.plain_rounds += 1

    def observe(self, drafted: bool, emitted: int, seconds: float, counted: bool = True) -> None:
        """Record a finished round: whether it drafted, the tokens it added and its wall-clock seconds.
        ``counted=False``: a drafting round whose tokens were cut by something other than the draft (a
        request's ``max_new_tokens`` left fewer slots than a block) counts as drafted for exploration and
        probing but leaves the averages alone; otherwise every generation's last rounds would pull the
        drafting estimate down, and the gate (kept on the draft) would start the next call skipping."""
        a = self.smoothing
        if not drafted:
            self.skipped_in_a_row += 1
            self.drafted_in_a_row = 0
            self.measure_plain(emitted, seconds)
            if self._probing:
                ahead = self.drafting_ahead()  # the probe lost (drafting still ahead): probe less often
                self.probe_every = min(2 * self.probe_every, self.explore_max) if ahead else self.explore_min
                self._probing = False
            return
        self.skipped_in_a_row = 0
        self.drafted_in_a_row += 1
        if not counted:
            self._forced = False
            return
        if self.drafting_rounds == 0:
            self.draft_tokens = float(emitted)
            self.draft_tokens_sq = float(emitted) ** 2
            self._draft_window.reset(seconds)
        else:
            self.draft_tokens = (1 - a) * self.draft_tokens + a * emitted
            self.draft_tokens_sq = (1 - a) * self.draft_tokens_sq + a * emitted ** 2
            self._draft_window.add(seconds)
        self.drafting_rounds += 1
        if self._forced:
            ahead = self.drafting_ahead()
            self.explore_every = self.explore_min if ahead else min(2 * self.explore_every, self.explore_max)
            self._forced = False
        else:
            self.explore_every = self.explore_min


def kept_gates(owner) -> dict:
    """The gates stored on ``owner`` by :func:`kept_gate`, by key (the store is made on first use)."""
    gates = getattr(owner, "_dspark_drafting_gates", None)
    if not isinstance(gates, dict):
        gates = owner._dspark_drafting_gates = {}
    return gates


def kept_gate(owner, key, make) -> DraftingGate:
    """The gate stored on ``owner`` (a draft) under ``key``, made by ``make()`` the first time and
    :meth:`~DraftingGate.start_call`-ed on every later one."""
    gates = kept_gates(owner)
    gate = gates.get(key)
    if gate is None:
        gate = gates[key] = make()
    else:
        gate.start_call()
    return gate
