"""What a batched step costs in planning (:mod:`dspark_hf.batching.planning`, :mod:`dspark_hf.batching.speculation`,
:mod:`dspark_hf.verification.scheduling.prefix_scheduler`): the engine's own work per step, the convex hull
of a measured curve with bumps, and drafting rounds cut short by ``max_new_tokens`` kept out of the gate's
averages. Traced on an H200 (cost mode, Qwen3-8B shape) and on this CPU's tiny model, where a drafted step
costs two to four times its forward and the hardware-aware policy verified 1-2 slots per request while all
7 ran faster."""

from __future__ import annotations

import types

import torch

from batched_support import fixture_draft, greedy_config, prompts_of, small_cache
from conftest import synthetic_profile, tiny_qwen3_target
from dspark_hf.batching import processor as processor_module
from dspark_hf.batching.planning import plan_lengths, requests_to_draft
from dspark_hf.batching.speculation import OVERHEAD_WINDOW, Speculation, affine_cost
from dspark_hf.verification.policies import HardwareAware
from dspark_hf.verification.scheduling.drafting_gate import DraftingGate
from dspark_hf.verification.scheduling.prefix_scheduler import lower_convex_hull, schedule_prefixes

BLOCK = 7


def _policy():
    policy = HardwareAware(profile=synthetic_profile(BLOCK), gate=False)
    policy.profile = policy._given_profile  # what setup() does with a given profile
    return policy


def test_lower_convex_hull():
    """Hand-worked: vertices kept, a point above the hull read off its segment, infinities left alone."""
    assert lower_convex_hull([4.0, 3.0, 5.0, 2.0, 6.0]) == [4.0, 3.0, 2.5, 2.0, 6.0]
    assert lower_convex_hull([1.0, 2.0, 3.0]) == [1.0, 2.0, 3.0]
    assert lower_convex_hull([3.0, float("inf"), 1.0]) == [3.0, float("inf"), 1.0]


def test_convex_costing_admits_past_a_bump():
    """One request, every slot 0.9; the forward jumps from 1.0 s at 2 tokens to 1.6 at 3, then rises by 0.05 a
    token to 1.85 at 8. The paper's stop ends at the jump (1 slot: 1.9 tokens/s, then 2.71 / 1.6 = 1.69);
    on the hull (the chord from 2 to 8 tokens) throughput rises all the way and all 7 slots are verified
    (5.22 / 1.85 = 2.82 tokens/s). Mutation run once: ``convex`` ignored in ``schedule_prefixes``: [1], fails."""
    seconds = {1: 1.0, 2: 1.0, 3: 1.6, 4: 1.65, 5: 1.7, 6: 1.75, 7: 1.8, 8: 1.85}
    sps = lambda b: 1.0 / seconds[b]  # noqa: E731
    row = [[0.9] * BLOCK]
    assert schedule_prefixes(row, sps) == [1]
    assert schedule_prefixes(row, sps, convex=True) == [7]


def test_step_overhead_lengthens_verification():
    """One request, every slot 0.9, a forward of ``1 + 0.5 (B - 1)`` seconds: alone the forward makes 3 slots
    best (3.44 tokens / 2.5 s, then 4.10 / 3.0); a step that also costs 5 s of the engine's own work makes each
    slot relatively cheap and all 7 are verified (5.22 / 9.5, rising all the way). Mutation run once:
    ``plan_lengths`` dropping ``overhead_seconds``: [3], fails."""
    sps = lambda b: 1.0 / (1.0 + 0.5 * (b - 1))  # noqa: E731
    sure = torch.full((BLOCK,), 0.9)
    assert plan_lengths(_policy(), [sure], BLOCK, [BLOCK], 64, steps_per_second=sps) == [3]
    assert plan_lengths(_policy(), [sure], BLOCK, [BLOCK], 64, steps_per_second=sps, overhead_seconds=5.0) == [7]


def test_step_overhead_makes_drafting_pay():
    """Two requests, slots of survival 0.5 each, a forward of ``1 + 0.5 (B - 2)`` seconds, 0.6 s of drafting per
    request: without overhead a plain step (2 tokens / 1 s) beats drafting either; with 10 s of engine work in
    every step, plain gives 2 / 11 and both drafting (2 slots each: 3.5 tokens / 14.2 s) gives more.
    Mutation run once: ``overhead_seconds`` ignored in ``requests_to_draft``: nobody drafts, fails."""
    sps = lambda b: 1.0 / (1.0 + 0.5 * (b - 2))  # noqa: E731
    half = torch.tensor([0.5] * BLOCK)
    assert requests_to_draft(_policy(), [half, half], BLOCK, sps, 0.6) == [False, False]
    assert requests_to_draft(_policy(), [half, half], BLOCK, sps, 0.6, overhead_seconds=10.0) == [True, True]


def test_step_overhead_is_a_median_per_request_count():
    """The median of the last :data:`OVERHEAD_WINDOW` observations of a count; a count with none borrows the
    nearest measured one (the smaller on a tie); never negative; 0 before any."""
    spec = types.SimpleNamespace(_overheads={})
    overhead = lambda r: Speculation.step_overhead(spec, r)  # noqa: E731
    assert overhead(4) == 0.0
    for seconds in (0.010, 0.500, 0.012, 0.011):  # one slow step does not move a median
        Speculation.observe_step_overhead(spec, 4, seconds)
    assert abs(overhead(4) - 0.0115) < 1e-12
    assert abs(overhead(6) - 0.0115) < 1e-12
    Speculation.observe_step_overhead(spec, 8, -0.02)
    assert overhead(6) == overhead(4) and overhead(8) == 0.0 and overhead(16) == 0.0
    for _ in range(OVERHEAD_WINDOW):
        Speculation.observe_step_overhead(spec, 4, 0.030)
    assert overhead(4) == 0.030


def test_step_overhead_keeps_plain_and_drafted_steps_apart():
    """Plain steps (no request verifies) and drafted steps are separate medians; a kind with no observation
    borrows the other's. Mutation run once: ``observe_step_overhead`` ignoring ``drafted`` (one deque per
    count, as before): the drafted median becomes 0.002, fails."""
    spec = types.SimpleNamespace(_overheads={})
    overhead = lambda r, drafted: Speculation.step_overhead(spec, r, drafted=drafted)  # noqa: E731
    for _ in range(3):
        Speculation.observe_step_overhead(spec, 8, 0.002, drafted=False)
    assert overhead(8, True) == 0.002  # no drafted step yet: the plain kind's
    for _ in range(2):
        Speculation.observe_step_overhead(spec, 8, 0.040, drafted=True)
    assert overhead(8, True) == 0.040 and overhead(8, False) == 0.002
    assert overhead(4, True) == 0.040 and overhead(4, False) == 0.002


def test_plain_option_priced_with_the_plain_overhead():
    """Two requests, every slot of survival 0.5, a forward of ``1 + 0.5 (B - 2)`` s, 0.6 s of drafting per
    request, 10 s of the engine's own work on a drafted step. A plain step priced with the same 10 s gives
    2 / 11 s and drafting both (2 slots each: 3.5 tokens / 14.2 s) wins; priced with the 0.2 s measured on
    plain steps it gives 2 / 1.2 s and wins. Mutation run once: ``plain_overhead_seconds`` ignored in
    ``requests_to_draft``: [True, True], fails."""
    sps = lambda b: 1.0 / (1.0 + 0.5 * (b - 2))  # noqa: E731
    half = torch.tensor([0.5] * BLOCK)
    assert requests_to_draft(_policy(), [half, half], BLOCK, sps, 0.6, overhead_seconds=10.0) == [True, True]
    assert requests_to_draft(_policy(), [half, half], BLOCK, sps, 0.6, overhead_seconds=10.0, plain_overhead_seconds=0.2) == [False, False]


def test_drafting_priced_per_call_not_per_request():
    """Two requests (every slot 0.9 and 0.6), a forward of ``1 + 0.1 (B - 2)`` s: Algorithm 1 gives lengths 7 and
    1 (expected 4.70 and 0.60 tokens). Drafting priced 0.5 s per request: one drafts (6.70 tokens / 2.20 s = 3.04
    per s; both: 7.30 / 2.80 = 2.61). A batched drafting call of 0.5 s whatever its size (what the engine
    measures: one forward for all): both draft (7.30 / 2.30 = 3.17). Mutation run once: ``requests_to_draft``
    pricing a callable as ``k * draft_seconds(1)``: [True, False], fails."""
    sps = lambda b: 1.0 / (1.0 + 0.1 * (b - 2))  # noqa: E731
    sure, unsure = torch.full((BLOCK,), 0.9), torch.full((BLOCK,), 0.6)
    assert requests_to_draft(_policy(), [sure, unsure], BLOCK, sps, 0.5) == [True, False]
    assert requests_to_draft(_policy(), [sure, unsure], BLOCK, sps, lambda k: 0.5 if k else 0.0) == [True, True]


def test_drafting_seconds_per_count_and_affine_between():
    """:meth:`Speculation.drafting_seconds`: the median of a measured count; from one measured count,
    proportional; from several, the least-squares line (slope and intercept kept >= 0). Mutation run once:
    ``affine_cost`` always proportional to the smallest count: 0.16 at 4 requests, fails."""
    spec = types.SimpleNamespace(_drafting={})
    seconds = lambda k: Speculation.drafting_seconds(spec, k)  # noqa: E731
    assert seconds(3) == 0.0
    for t in (0.040, 0.900, 0.041):  # one slow call (a prompt's whole context) does not move the median
        Speculation.observe_drafting(spec, 1, t)
    assert seconds(1) == 0.041 and abs(seconds(2) - 0.082) < 1e-12
    for t in (0.045, 0.046, 0.044):
        Speculation.observe_drafting(spec, 3, t)
    assert seconds(3) == 0.045
    assert abs(seconds(2) - 0.043) < 1e-12 and abs(seconds(5) - 0.049) < 1e-12  # 0.039 + 0.002 k
    assert abs(affine_cost({1: 0.05, 2: 0.04})(4) - 0.045) < 1e-12  # a falling fit: flat at the mean
    assert abs(affine_cost({2: 0.01, 4: 0.05})(3) - 0.033) < 1e-12  # a negative intercept: through the origin, 0.011 k


def test_greedy_plan_lands_on_the_cheap_count():
    """Two requests (every slot 0.6 and 0.4), the packed curve this CPU measured for two requests (B = 2..8:
    110, 76, 74, 103, 107, 124, 110 ms; 4 rows run weight-major), 17 ms of drafting. Sampling's first-drop stop
    on the lower convex hull prices 5 tokens at 83 ms (the chord from 4 to 8) and verifies [2, 1]: 3.36
    tokens in 103 + 17 ms as measured. Greedy takes the best prefix on the measured curve: [1, 1], 3.0 tokens
    in 74 + 17 ms (33.0 tokens/s against 28.0). Mutation run once: ``plan_lengths`` ignoring ``greedy``
    (always the hull's first drop): [2, 1], fails."""
    ms = {2: 110, 3: 76, 4: 74, 5: 103, 6: 107, 7: 124, 8: 110}
    sps = lambda b: 1000.0 / ms.get(b, 110 + 5 * (b - 8))  # noqa: E731
    rows = [torch.full((BLOCK,), 0.6), torch.full((BLOCK,), 0.4)]
    plan = lambda greedy: plan_lengths(_policy(), rows, BLOCK, [BLOCK, BLOCK], 64, steps_per_second=sps,  # noqa: E731
                                       draft_seconds=0.017, greedy=greedy)
    assert plan(False) == [2, 1]
    assert plan(True) == [1, 1]


def test_next_block_expected_from_the_previous_and_the_recent_mean():
    """:meth:`Speculation.next_block_confidences`: half the request's previous block, half the mean of the
    draft's recent blocks per slot; the previous block alone before any; a request that never drafted
    (``None``) stays ``None`` before any block and is expected to draft like the recent blocks after.
    Mutation runs once: returning ``previous`` unchanged (the rule before run g): fails; returning ``None``
    for a request that never drafted (the rule before run l): fails."""
    import collections

    spec = types.SimpleNamespace(_recent_confidences=collections.deque(maxlen=64), _recent_mean=None)
    expect = lambda previous: Speculation.next_block_confidences(spec, previous)  # noqa: E731
    low = torch.tensor([0.1, 0.1, 0.1])
    assert expect(None) is None and torch.equal(expect(low), low)
    for block in (torch.tensor([0.5, 0.3, 0.1]), torch.tensor([0.7, 0.5, 0.3])):
        Speculation.observe_block_confidences(spec, block)
    Speculation.observe_block_confidences(spec, None)
    torch.testing.assert_close(expect(low), torch.tensor([0.35, 0.25, 0.15]))
    torch.testing.assert_close(expect(None).float(), torch.tensor([0.6, 0.4, 0.2]))


def test_new_requests_are_priced_on_the_drafts_recent_blocks_not_forced_to_draft(monkeypatch):
    """A second ``generate_batch`` with the same draft: its requests have not drafted, but the draft's recent
    blocks (kept on the draft by the first call) give them expected confidences, so
    :func:`.planning.requests_to_draft` receives no ``None`` for them (a ``None`` forces a draft: every new
    request drafting and catching its context up over its prompt on its first step). The first call, with no
    recent block, does pass ``None``. Mutation runs once: ``Speculation`` keeping its recent blocks per
    engine instead of on the draft: fails (the second call passes ``None`` again); the ``previous is None``
    branch of ``next_block_confidences`` returning ``previous``: fails. Output equals plain greedy either way
    (tested in ``test_batched_greedy_tiny.py``)."""
    target = tiny_qwen3_target()
    draft = fixture_draft()
    prompts = prompts_of([5, 9], seed=3)
    seen: list[list[bool]] = []
    original = processor_module.requests_to_draft

    def recording(policy, confidences, *args, **kwargs):
        seen.append([c is None for c in confidences])
        return original(policy, confidences, *args, **kwargs)

    monkeypatch.setattr(processor_module, "requests_to_draft", recording)
    for call in range(2):
        seen.clear()
        policy = HardwareAware(profile=synthetic_profile(draft.config.block_size), gate=False)
        target.generate_batch(inputs=prompts, generation_config=greedy_config(12, policy),
                              continuous_batching_config=small_cache(), assistant_model=draft)
        first = seen[0]
        assert first == ([True, True] if call == 0 else [False, False]), (call, first)


def test_engine_measures_and_plans_with_its_overhead(monkeypatch):
    """In a run of two requests, pure decoding steps report their overhead per request count, and every
    planning call gets :meth:`Speculation.step_overhead` of its decoding count. Mutations run once: the
    processor not calling ``_observe_overhead``: no observation, fails; ``plan_lengths`` called without
    ``overhead_seconds``: fails. The run is greedy, so every plan is made with ``greedy=True``."""
    target = tiny_qwen3_target()
    observed, planned, greedy = [], [], []
    original_observe, original_plan = Speculation.observe_step_overhead, processor_module.plan_lengths

    def observe(self, requests, seconds, drafted=True):
        observed.append(requests)
        original_observe(self, requests, seconds, drafted)

    def plan(*args, **kwargs):
        planned.append(kwargs.get("overhead_seconds"))
        greedy.append(kwargs.get("greedy"))
        return original_plan(*args, **kwargs)

    monkeypatch.setattr(Speculation, "observe_step_overhead", observe)
    monkeypatch.setattr(Speculation, "step_overhead", lambda self, requests, drafted=True: 0.25 * requests)
    monkeypatch.setattr(processor_module, "plan_lengths", plan)
    target.generate_batch(inputs=prompts_of([6, 9], seed=71), generation_config=greedy_config(12, _policy()),
                          continuous_batching_config=small_cache(), assistant_model=fixture_draft(), progress_bar=False)
    assert observed and set(observed) <= {1, 2}
    assert planned and set(planned) <= {0.25, 0.5}
    assert set(greedy) == {True}  # a greedy run plans with the best prefix (test_greedy_plan_lands_on_the_cheap_count)


def test_capped_rounds_stay_out_of_the_gate_averages():
    """A drafting round cut by ``max_new_tokens`` (``counted=False``) counts as a drafted round for the gate's
    run lengths but leaves its token and time averages as they were. Mutation run once: ``counted`` ignored:
    the averages move, fails."""
    gate = DraftingGate(0.1, warmup=2)
    for _ in range(3):
        assert gate.should_draft()
        gate.observe(True, 4, 0.2)
    before = (gate.draft_tokens, gate.draft_seconds, gate.drafting_rounds, gate.drafted_in_a_row)
    gate.should_draft()
    gate.observe(True, 1, 0.2, counted=False)
    assert (gate.draft_tokens, gate.draft_seconds, gate.drafting_rounds) == before[:3]
    assert gate.drafted_in_a_row == before[3] + 1


def test_engine_marks_the_capped_steps(monkeypatch):
    """In a run of two requests with the gate on, a drafting step is kept out of the gate's averages exactly
    when some verifying request had fewer tokens left than a block. Mutation run once: ``counted=True``
    always in the processor: fails."""
    target = tiny_qwen3_target()
    events = []
    original_plan, original_observe = processor_module.plan_lengths, DraftingGate.observe

    def plan(policy, confidences, block_size, caps, *args, **kwargs):
        events.append(("plan", min(caps) < block_size))
        return original_plan(policy, confidences, block_size, caps, *args, **kwargs)

    def observe(self, drafted, emitted, seconds, counted=True):
        events.append(("observe", drafted, counted))
        original_observe(self, drafted, emitted, seconds, counted)

    monkeypatch.setattr(processor_module, "plan_lengths", plan)
    monkeypatch.setattr(DraftingGate, "observe", observe)
    policy = HardwareAware(profile=synthetic_profile(BLOCK), gate=True, lookup=False)
    policy.profile = policy._given_profile
    target.generate_batch(inputs=prompts_of([6, 9], seed=73), generation_config=greedy_config(20, policy),
                          continuous_batching_config=small_cache(), assistant_model=fixture_draft(), progress_bar=False)
    pairs = [(events[i - 1][1], e[2]) for i, e in enumerate(events) if e[0] == "observe" and e[1] and i and events[i - 1][0] == "plan"]
    assert pairs and any(capped for capped, _ in pairs) and any(not capped for capped, _ in pairs)
    assert all(counted == (not capped) for capped, counted in pairs)


def test_greedy_tokens_equal_the_general_acceptance():
    """Host-list greedy acceptance (one argmax for the whole packed forward) equals :func:`verify_request`
    without logits processors, on 300 random cases with drafts right for a random prefix (0 to all slots)
    and ties in the rows. Mutation run once: ``greedy_tokens`` accepting the first slot whether or not it
    matches: fails. The engine's use of it (the rows of each request) is held by the identity tests of
    ``test_batched_greedy_tiny.py``: reading each request's picks one row later fails them."""
    from dspark_hf.batching.acceptance import greedy_tokens, verify_request

    generator = torch.Generator().manual_seed(5)
    for case in range(300):
        length = case % (BLOCK + 1)
        rows = torch.randint(0, 4, (length + 1, 9), generator=generator).float()  # small integers: ties
        picks = rows.argmax(dim=-1).tolist()
        right = int(torch.randint(0, length + 1, (1,), generator=generator))
        drafted = picks[:right] + [(p + 1) % 9 for p in picks[right:length]]
        expected = verify_request(rows, torch.zeros(1, 3, dtype=torch.long), torch.tensor([drafted], dtype=torch.long), None, None, False)
        assert greedy_tokens(picks, drafted) == expected


def test_an_exploring_step_drafts_the_one_request_expected_to_gain_most():
    """On the gate's exploring step (drafting measured behind plain steps) one request drafts: the one whose
    expected confidences give the most expected accepted tokens (:func:`.planning.expected_gains`), ties to
    the one longest without drafting, whatever the others' own exploration intervals say. Mutations run once:
    the choice by the smallest gain: fails; ties to the shortest time without drafting: fails."""
    spec = types.SimpleNamespace(policy=_policy(), block_size=BLOCK)
    fake = types.SimpleNamespace(speculation=spec)
    explorer = processor_module.SpeculativeBatchProcessor._explorer
    low, high = torch.full((BLOCK,), 0.1), torch.full((BLOCK,), 0.9)
    requests = [types.SimpleNamespace(steps_since_draft=s) for s in (30, 2, 30)]
    curve = spec.policy.profile.steps_per_second
    assert explorer(fake, requests, [low, high, low], curve, 0.0) == [False, True, False]
    assert explorer(fake, requests, [low, low, low], curve, 0.0) == [True, False, False]
    requests[2].steps_since_draft = 31
    assert explorer(fake, requests, [high, low, high], curve, 0.0) == [False, False, True]
