"""Benchmark metrics from known per-round telemetry equal hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from dspark_hf.benchmarks import metrics
from dspark_hf.benchmarks.session import pass_order
from dspark_hf.verification.calibration.metrics import auroc, expected_calibration_error
from dspark_hf.telemetry import StepRecord


def step(proposed, verified, accepted, emitted, confidences=None):
    return StepRecord(step=0, proposed=proposed, verified=verified, accepted=accepted, emitted=emitted,
                      confidences=confidences, draft_seconds=0.0, step_seconds=0.0)


STEPS = [step(7, 7, 3, 4), step(7, 4, 4, 5), step(7, 2, 0, 1), step(7, 0, 0, 1)]


def test_tau_ratios_and_counts():
    assert metrics.tau(STEPS) == pytest.approx(11 / 4)
    assert metrics.verified_ratio(STEPS) == pytest.approx(13 / 28)
    assert metrics.acceptance_rate(STEPS) == pytest.approx(7 / 13)
    assert metrics.round_counts(STEPS) == {"rounds": 4, "drafted": 28, "verified": 13, "accepted": 7, "emitted": 11}
    assert metrics.tau([]) is None and metrics.verified_ratio([]) is None


def test_per_slot_acceptance_survival_and_conditional():
    assert metrics.per_slot_acceptance(STEPS) == pytest.approx([2 / 3, 2 / 3, 1.0, 0.5, 0.0, 0.0, 0.0])
    conditional = metrics.per_slot_conditional(STEPS)
    assert conditional[:4] == pytest.approx([2 / 3, 1.0, 1.0, 0.5])
    assert conditional[4:] == [None, None, None]
    assert metrics.per_slot_acceptance(STEPS, depth=9)[7:] == [None, None]


def test_spread_and_speedups():
    s = metrics.spread([4.0, 1.0, 3.0, 2.0, float("nan"), None])
    assert s == {"median": 2.5, "q25": 1.75, "q75": 3.25, "min": 1.0, "max": 4.0, "n": 4}
    assert metrics.spread([]) is None
    assert metrics.paired_speedups([(10, 1.0), (10, 2.0)], [(10, 2.0), (10, 2.0)]) == pytest.approx([2.0, 1.0])
    assert metrics.aggregate_speedup([(10, 1.0), (10, 2.0)], [(10, 2.0), (10, 2.0)]) == pytest.approx(4 / 3)
    with pytest.raises(ValueError):
        metrics.paired_speedups([(1, 1.0)], [])


def test_calibration_by_hand():
    # one round: c = (0.5, 0.5), both verified, first accepted -> a = (0.5, 0.25), y = (1, 0)
    result = metrics.calibration([step(2, 2, 1, 2, [0.5, 0.5])])
    assert result["n"] == 2
    assert result["ece"] == pytest.approx(0.5 * 0.5 + 0.5 * 0.25)
    assert result["auroc"] == pytest.approx(1.0)
    assert [row["n"] for row in result["per_slot"]] == [1, 1]
    assert metrics.calibration([step(2, 2, 1, 2)]) is None


def test_calibration_matches_calibration_package_and_respects_verified():
    gen = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(40):
        c = torch.rand(4, generator=gen).clamp(0.05, 0.95).tolist()
        verified = int(torch.randint(0, 5, (1,), generator=gen))
        accepted = int(torch.randint(0, verified + 1, (1,), generator=gen))
        rows.append(step(4, verified, accepted, accepted + 1, c))
    p, y = [], []
    for r in rows:
        a = 1.0
        for k in range(r.verified):  # only verified slots have a known outcome
            a *= r.confidences[k]
            p.append(a)
            y.append(k < r.accepted)
    p, y = torch.tensor(p, dtype=torch.float64), torch.tensor(y)
    result = metrics.calibration(rows)
    assert result["n"] == len(p)
    assert result["ece"] == pytest.approx(expected_calibration_error(p, y), abs=1e-9)
    assert result["auroc"] == pytest.approx(auroc(p, y), abs=1e-9)
    tempered = metrics.calibration(rows, temperatures=[2.0, 2.0, 2.0, 2.0])
    assert tempered["temperatures"] == [2.0] * 4 and not math.isclose(tempered["ece"], result["ece"])


def test_pass_order_rotates_and_alternates():
    cols = ["plain", "a", "b"]
    assert pass_order(cols, 0, 0) == ["plain", "a", "b"]
    assert pass_order(cols, 1, 0) == ["a", "b", "plain"]
    assert pass_order(cols, 0, 1) == ["plain", "b", "a"]  # rotated by one, then reversed


def test_json_has_no_nan(tmp_path):
    import json

    from dspark_hf.benchmarks.report import write_json

    path = write_json({"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": 2}}, tmp_path / "r.json")
    assert json.loads(path.read_text()) == {"a": None, "b": [1.0, None], "c": {"d": 2}}
