"""The hardware-aware prefix scheduler (paper, Algorithm 1) on hand-worked examples, R = 1 and R > 1,
and the cost profile it reads."""

from __future__ import annotations

import json

import pytest

from dspark_hf.verification.scheduling import CostProfile, cumulative_survival, expected_tokens, schedule_prefixes


def sps_table(table: dict[int, float]):
    return lambda b: table[b]


def test_cumulative_survival_and_expected_tokens():
    assert cumulative_survival([0.5, 0.5, 0.8]) == pytest.approx([0.5, 0.25, 0.2])
    assert expected_tokens([0.5, 0.5, 0.8], 2) == pytest.approx(1.75)
    assert expected_tokens([0.5, 0.5, 0.8], 0) == 1.0


def test_batch_one_hand_worked():
    # c = (0.9, 0.8, 0.5, 0.9): a = (0.9, 0.72, 0.36, 0.324).
    # SPS: 10, 9, 8, 6, 5 for B = 1..5.
    # B=1: 1 * 10 = 10.  B=2: 1.9 * 9 = 17.1 (keep).  B=3: 2.62 * 8 = 20.96 (keep).
    # B=4: 2.98 * 6 = 17.88 < 20.96: stop -> L = 2, even though B=5 would give 3.304 * 5 = 16.5.
    sps = sps_table({1: 10.0, 2: 9.0, 3: 8.0, 4: 6.0, 5: 5.0})
    assert schedule_prefixes([[0.9, 0.8, 0.5, 0.9]], sps) == [2]
    # A flat cost curve verifies everything; a steep one nothing.
    assert schedule_prefixes([[0.9, 0.8, 0.5, 0.9]], lambda b: 1.0) == [4]
    assert schedule_prefixes([[0.9, 0.8, 0.5, 0.9]], lambda b: 1.0 / b) == [0]


def test_stops_at_first_drop_but_global_search_does_not():
    # a = (0.5, 0.45, 0.405): B=2 gives 1.5 * 0.6 = 0.9 < 1 = best: stop at L = 0.
    # Searching on: B=3: 1.95 * 0.55 = 1.0725 > 1 -> global search picks L = 2.
    sps = sps_table({1: 1.0, 2: 0.6, 3: 0.55, 4: 0.4})
    assert schedule_prefixes([[0.5, 0.9, 0.9]], sps) == [0]
    assert schedule_prefixes([[0.5, 0.9, 0.9]], sps, global_search=True) == [2]


def test_draft_seconds_enter_the_step_time():
    # Target time 1 + 0.5 (B - 1) s; with draft cost 0 verifying one slot with a = 0.4 gives
    # 1.4 / 1.5 < 1 / 1: L = 0. With a 10 s draft round the target cost matters less: 1.4 / 11.5 > 1 / 11.
    sps = lambda b: 1.0 / (1.0 + 0.5 * (b - 1))  # noqa: E731
    assert schedule_prefixes([[0.4]], sps) == [0]
    assert schedule_prefixes([[0.4]], sps, draft_seconds=10.0) == [1]


def test_several_requests_hand_worked():
    # r0: c = (0.9, 0.9) -> a = (0.9, 0.81); r1: c = (0.6, 0.5) -> a = (0.6, 0.3).
    # Order: (0,1) 0.9, (0,2) 0.81, (1,1) 0.6, (1,2) 0.3.   SPS(B): 2:10, 3:9.5, 4:9, 5:7, 6:6.
    # B=2: tau 2 -> 20. (0,1): B=3, tau 2.9 -> 27.55 keep. (0,2): B=4, tau 3.71 -> 33.39 keep.
    # (1,1): B=5, tau 4.31 -> 30.17 < 33.39: stop. -> [2, 0].
    sps = sps_table({2: 10.0, 3: 9.5, 4: 9.0, 5: 7.0, 6: 6.0})
    assert schedule_prefixes([[0.9, 0.9], [0.6, 0.5]], sps) == [2, 0]
    # Cheaper fifth token: (1,1) gives 4.31 * 8 = 34.48 > 33.39 keep; (1,2): 4.61 * 6 = 27.66 stop -> [2, 1].
    sps = sps_table({2: 10.0, 3: 9.5, 4: 9.0, 5: 8.0, 6: 6.0})
    assert schedule_prefixes([[0.9, 0.9], [0.6, 0.5]], sps) == [2, 1]


def test_interleaves_requests_by_survival_and_keeps_prefixes():
    # r0 a = (0.95, 0.19), r1 a = (0.8, 0.72), r2 a = (0.5, ...): order 0.95 (r0), 0.8 (r1), 0.72 (r1), 0.5 (r2), 0.19 (r0).
    rows = [[0.95, 0.2], [0.8, 0.9], [0.5, 0.5]]
    assert schedule_prefixes(rows, lambda b: 1.0) == [2, 2, 2]
    # Each extra token costs 15 % of throughput: admit while a > 0.15 * tau-ish; computed by hand:
    # SPS(B) = 1 / (1 + 0.15 (B - 3)). B=3: 3. +0.95: 3.95/1.15 = 3.435. +0.8: 4.75/1.3 = 3.654.
    # +0.72: 5.47/1.45 = 3.772. +0.5: 5.97/1.6 = 3.731 < 3.772: stop -> [1, 2, 0].
    sps = lambda b: 1.0 / (1.0 + 0.15 * (b - 3))  # noqa: E731
    assert schedule_prefixes(rows, sps) == [1, 2, 0]


def test_caps_and_edge_cases():
    assert schedule_prefixes([], lambda b: 1.0) == []
    assert schedule_prefixes([[0.9, 0.9, 0.9]], lambda b: 1.0, max_lengths=[1]) == [1]
    assert schedule_prefixes([[1.0, 1.0, 1.0]], lambda b: 1.0 / (1 + 0.1 * (b - 1))) == [3]
    assert schedule_prefixes([[0.0, 0.9]], lambda b: 1.0) == [0]


def test_cost_profile_interpolation_and_round_trip(tmp_path, monkeypatch):
    profile = CostProfile(model="m", device="cpu-x", dtype="float32", tokens=[4, 1, 2], target_seconds=[0.4, 0.1, 0.2])
    assert profile.tokens == [1, 2, 4]
    assert profile.step_seconds(3) == pytest.approx(0.3)
    assert profile.step_seconds(6) == pytest.approx(0.6)  # last slope continued
    assert profile.step_seconds(1) == pytest.approx(0.1)
    assert profile.steps_per_second(2) == pytest.approx(5.0)
    from dspark_hf.verification.scheduling.cost_profile import load_profile, save_profile

    path = save_profile(profile, tmp_path / "p.json")
    assert load_profile(path) == profile
    assert json.loads(path.read_text())["target_seconds"] == [0.1, 0.2, 0.4]
    monkeypatch.setenv("DSPARK_HF_CACHE", str(tmp_path / "cache"))
    stored = save_profile(profile)
    assert stored == tmp_path / "cache" / "profiles" / "m__cpu-x__float32.json"


def test_a_cheaper_larger_forward_is_reached_through_a_dearer_one():
    """A cost curve that dips (this CPU's float32 forward: 4 rows faster than 3, weight-major linears):
    c = (0.9, 0.5, 0.5): a = (0.9, 0.45, 0.225). Seconds 1, 1, 1.5, 1.2 for B = 1..4.
    On the raw curve: B=2 1.9 / 1 = 1.9; B=3 2.35 / 1.5 = 1.57 < 1.9: stop -> L = 1. A forward of 3 tokens
    can carry the third slot at 1.2 s, so B=3 costs 1.2: 2.35 / 1.2 = 1.96 (keep), B=4 2.575 / 1.2 = 2.15
    (keep) -> L = 3. With the third slot capped, the envelope ends at B=3 (its own 1.5 s): L = 1 again.
    Mutation run once: the envelope removed (``seconds[i] = min(...)`` loop dropped): fails (L = 1)."""
    sps = sps_table({1: 1.0, 2: 1.0, 3: 1 / 1.5, 4: 1 / 1.2})
    assert schedule_prefixes([[0.9, 0.5, 0.5]], sps) == [3]
    assert schedule_prefixes([[0.9, 0.5, 0.5]], sps, max_lengths=[2]) == [1]
