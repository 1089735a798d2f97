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
from dspark_hf.batching.speculation import OVERHEAD_WINDOW, Speculation
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


def test_engine_measures_and_plans_with_its_overhead(monkeypatch):
    """In a run of two requests, pure decoding steps report their overhead per request count, and every
    planning call gets :meth:`Speculation.step_overhead` of its decoding count. Mutations run once: the
    processor not calling ``_observe_overhead``: no observation, fails; ``plan_lengths`` called without
    ``overhead_seconds``: fails."""
    target = tiny_qwen3_target()
    observed, planned = [], []
    original_observe, original_plan = Speculation.observe_step_overhead, processor_module.plan_lengths

    def observe(self, requests, seconds):
        observed.append(requests)
        original_observe(self, requests, seconds)

    def plan(*args, **kwargs):
        planned.append(kwargs.get("overhead_seconds"))
        return original_plan(*args, **kwargs)

    monkeypatch.setattr(Speculation, "observe_step_overhead", observe)
    monkeypatch.setattr(Speculation, "step_overhead", lambda self, requests: 0.25 * requests)
    monkeypatch.setattr(processor_module, "plan_lengths", plan)
    target.generate_batch(inputs=prompts_of([6, 9], seed=71), generation_config=greedy_config(12, _policy()),
                          continuous_batching_config=small_cache(), assistant_model=fixture_draft(), progress_bar=False)
    assert observed and set(observed) <= {1, 2}
    assert planned and set(planned) <= {0.25, 0.5}


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
    policy = HardwareAware(profile=synthetic_profile(BLOCK), gate=True)
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
