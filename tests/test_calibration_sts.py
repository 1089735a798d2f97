"""Sequential temperature scaling and its metrics.

Synthetic rounds with a known truth: slot k's true conditional acceptance is sigmoid(z_k) and the
draft reports logits 2.5 * z_k (over-confident by a factor 2.5). STS must find temperatures near 2.5
for every slot and bring the per-slot ECE of the cumulative product well below the uncalibrated one
(8,000 rounds; bounds stated in the asserts).
"""

from __future__ import annotations

import json

import pytest
import torch

from dspark_hf.verification.calibration import apply_temperatures, auroc, brier, draft_temperatures, expected_calibration_error
from dspark_hf.verification.calibration.report import format_table, per_slot_metrics, reliability_diagram
from dspark_hf.verification.calibration.sts import fit_sequential_temperatures, outcomes, survival_predictions
from dspark_hf.verification.calibration.temperatures import store_temperatures

GAMMA, ROUNDS, SCALE = 4, 8000, 2.5


def synthetic_rounds(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(ROUNDS, GAMMA, generator=g, dtype=torch.float64) * 1.2 + 0.8
    survive = torch.rand(ROUNDS, GAMMA, generator=g, dtype=torch.float64) < torch.sigmoid(z)
    accepted = torch.where(survive.all(1), torch.tensor(GAMMA), (~survive).double().argmax(1)).long()
    verified = torch.full((ROUNDS,), GAMMA)
    verified[::5] = 2  # some rounds verified only two slots: later slots' outcomes unknown there
    accepted = torch.minimum(accepted, verified)
    return z * SCALE, verified, accepted


def test_metrics_hand_worked():
    p = torch.tensor([0.1, 0.4, 0.35, 0.8])
    y = torch.tensor([0, 0, 1, 1])
    assert auroc(p, y) == pytest.approx(0.75)  # 3 of 4 positive-negative pairs ordered right
    assert auroc(torch.tensor([0.5, 0.5]), torch.tensor([0, 1])) == pytest.approx(0.5)  # ties count half
    assert brier(p, y) == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    # bins [0, 0.5): p = 0.1, 0.4, 0.35 (mean 0.2833), y = 0, 0, 1 (mean 0.3333); [0.5, 1]: 0.8 vs 1
    assert expected_calibration_error(p, y, bins=2) == pytest.approx(0.75 * abs(0.85 / 3 - 1 / 3) + 0.25 * 0.2)
    assert expected_calibration_error(torch.full((4,), 0.5), torch.tensor([0, 1, 0, 1])) == pytest.approx(0.0)


def test_outcomes_from_counts():
    y, known = outcomes(torch.tensor([3, 1]), torch.tensor([2, 0]), 3)
    assert y.tolist() == [[True, True, False], [False, False, False]]
    assert known.tolist() == [[True, True, True], [True, False, False]]


def test_sts_recovers_the_overconfidence_and_lowers_ece():
    logits, verified, accepted = synthetic_rounds()
    temps = fit_sequential_temperatures(logits, verified, accepted)
    assert all(1.9 < t < 3.3 for t in temps), temps
    before = per_slot_metrics(logits, verified, accepted, [1.0] * GAMMA)
    after = per_slot_metrics(logits, verified, accepted, temps)
    for b, a in zip(before, after):
        assert b["ece"] > 0.04 and a["ece"] < 0.02 and a["ece"] < b["ece"] / 3, (b, a)
        assert a["brier"] < b["brier"]
    # Slot 1's ordering is untouched by a positive temperature; later slots' only through the product.
    assert after[0]["auroc"] == pytest.approx(before[0]["auroc"])
    assert "slot" in format_table(before, after, temps)


def test_sts_leaves_calibrated_confidences_near_one():
    logits, verified, accepted = synthetic_rounds(seed=1)
    temps = fit_sequential_temperatures(logits / SCALE, verified, accepted)
    assert all(0.75 < t < 1.35 for t in temps), temps


def test_apply_temperatures_matches_survival_predictions():
    logits = torch.tensor([[2.0, -1.0, 0.5]], dtype=torch.float64)
    temps = [2.0, 0.5, 1.0]
    c = torch.sigmoid(logits[0]).float()
    tempered = apply_temperatures(c, temps).double()
    assert torch.allclose(torch.cumprod(tempered, 0), survival_predictions(logits, temps)[0], atol=1e-6)
    assert torch.equal(apply_temperatures(c, None), c)


def test_store_and_read_temperatures(tmp_path):
    from conftest import FIXTURES_DIR
    from dspark_hf import DSparkDraft
    import shutil

    folder = tmp_path / "draft"
    shutil.copytree(FIXTURES_DIR / "qwen3_dspark_vanilla", folder)
    path = store_temperatures(folder, [1.5, 2.0])
    assert json.loads(path.read_text())["confidence_temperatures"] == [1.5, 2.0]
    draft = DSparkDraft.from_pretrained(folder)
    assert draft_temperatures(draft) == [1.5, 2.0]


def test_reliability_diagram_is_written(tmp_path):
    logits, verified, accepted = synthetic_rounds()
    temps = fit_sequential_temperatures(logits[:2000], verified[:2000], accepted[:2000])
    path = reliability_diagram(logits[:2000], verified[:2000], accepted[:2000], temps, tmp_path / "r.png", title="t")
    assert path.stat().st_size > 10_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
