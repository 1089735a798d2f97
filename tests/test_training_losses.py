"""The DSpark losses: per-slot decay, the cut at invalid slots, and the three terms' values."""

import math

import torch
import torch.nn.functional as F

from dspark_hf.training.losses import dspark_losses, slot_weights


def test_slot_weights_decay_as_exp_minus_k_over_4():
    assert torch.allclose(slot_weights(7), torch.tensor([math.exp(-k / 4) for k in range(7)]))


def test_a_draft_equal_to_the_target_has_zero_l1_and_its_confidence_target_is_one():
    logits = torch.randn(3, 4, 10)
    labels = logits.argmax(-1)
    valid = torch.ones(3, 4, dtype=torch.bool)
    conf = torch.full((3, 4), 20.0)  # sigmoid ~ 1
    parts = dspark_losses(logits, logits.clone(), labels, valid, conf)
    assert float(parts.l1) < 1e-6
    assert float(parts.confidence) < 1e-6
    assert float(parts.accuracy) == 1.0


def test_losses_match_a_hand_computation_with_invalid_slots_cut():
    torch.manual_seed(0)
    draft, target = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    labels = torch.tensor([[1, 2, -100], [4, -100, -100]])
    valid = labels != -100
    conf = torch.randn(2, 3)
    parts = dspark_losses(draft, target, labels, valid, conf)
    w = torch.tensor([1.0, math.exp(-0.25), math.exp(-0.5)])
    slots = [(0, 0), (0, 1), (1, 0)]
    denom = sum(float(w[k]) for _, k in slots)
    ce = sum(float(w[k] * F.cross_entropy(draft[i, k][None], labels[i, k][None])) for i, k in slots) / denom
    l1s = {(i, k): float((draft[i, k].softmax(-1) - target[i, k].softmax(-1)).abs().sum()) for i, k in slots}
    l1 = sum(float(w[k]) * l1s[(i, k)] for i, k in slots) / denom
    bce = sum(
        float(w[k] * F.binary_cross_entropy_with_logits(conf[i, k], torch.tensor(1 - l1s[(i, k)] / 2))) for i, k in slots
    ) / denom
    assert math.isclose(float(parts.ce), ce, rel_tol=1e-5)
    assert math.isclose(float(parts.l1), l1, rel_tol=1e-5)
    assert math.isclose(float(parts.confidence), bce, rel_tol=1e-5)
    assert math.isclose(float(parts.total), 0.1 * ce + 0.9 * l1 + bce, rel_tol=1e-5)


def test_confidence_target_is_detached_and_dflash_has_no_confidence_term():
    draft = torch.randn(1, 2, 6, requires_grad=True)
    conf = torch.zeros(1, 2, requires_grad=True)
    parts = dspark_losses(draft, torch.randn(1, 2, 6), torch.tensor([[1, 2]]), torch.ones(1, 2, dtype=torch.bool), conf)
    parts.confidence.backward()
    assert draft.grad is None and conf.grad is not None
    no_conf = dspark_losses(draft, torch.randn(1, 2, 6), torch.tensor([[1, 2]]), torch.ones(1, 2, dtype=torch.bool), None)
    assert no_conf.confidence is None
    assert math.isclose(no_conf.total.item(), 0.1 * no_conf.ce.item() + 0.9 * no_conf.l1.item(), rel_tol=1e-6)


def test_draft_objective_imitates_the_target_only_up_to_the_first_invalid_slot():
    """Through DraftObjective, with target logits gathered at ``packed.target_positions`` as training
    does: anchor 3's slot 0 predicts x_4 (answer), slot 1 predicts x_5 (prompt), so only the target's
    distribution at position 3 counts; changing it at positions 4.. changes nothing (exact float32)."""
    from conftest import FIXTURES_DIR
    from dspark_hf import DSparkDraft
    from dspark_hf.training.draft_objective import DraftObjective
    from dspark_hf.training.packing import pack_blocks

    torch.manual_seed(0)
    draft = DSparkDraft.from_pretrained(FIXTURES_DIR / "qwen3_dspark_vanilla", dtype=torch.float32).eval()
    objective = DraftObjective(draft)
    mask = torch.tensor([0, 0, 1, 1, 1, 0, 1, 1])
    ids = torch.randint(5, 300, (8,))
    features = torch.randn(8, draft.fc.in_features)
    packed = pack_blocks(ids, mask, torch.tensor([3]), draft.config.block_size, draft.config.mask_token_id)
    logits = torch.randn(8, draft.config.vocab_size)

    def loss(per_position):
        with torch.no_grad():
            return objective(features, packed, per_position[packed.target_positions]).total

    base = loss(logits)
    changed = logits.clone()
    changed[4:] += torch.randn_like(changed[4:]) * 5
    assert torch.equal(base, loss(changed))
    changed[3] += torch.randn_like(changed[3]) * 5
    assert not torch.equal(base, loss(changed))
