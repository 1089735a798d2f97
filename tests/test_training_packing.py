"""Anchor sampling, block packing and the packed training forward against the inference path."""

import pytest
import torch

from dspark_hf.training.data import Example
from dspark_hf.training.draft_objective import packed_forward
from dspark_hf.training.packing import IGNORE, pack_blocks, sample_anchors, valid_anchors
from dspark_hf.training.target_outputs import OnlineTargetOutputs
from dspark_hf.training.trainer import TrainConfig, build_draft

from training_tiny import tiny_target


def test_valid_anchors_need_anchor_and_next_token_in_the_answer():
    mask = torch.tensor([0, 0, 1, 1, 1, 0, 1, 1, 0])
    assert valid_anchors(mask).tolist() == [2, 3, 6]


def test_sample_anchors_is_seeded_distinct_and_sorted():
    mask = torch.tensor([0] * 5 + [1] * 40)
    a = sample_anchors(mask, 8, torch.Generator().manual_seed(3))
    b = sample_anchors(mask, 8, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.numel() == 8 and torch.equal(a, a.sort().values)
    assert len(set(a.tolist())) == 8 and all(5 <= x < 44 for x in a.tolist())


def test_labels_are_the_next_tokens_cut_at_the_first_invalid_slot():
    ids = torch.arange(100, 112)  # 12 tokens
    mask = torch.tensor([0, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1])
    packed = pack_blocks(ids, mask, torch.tensor([2, 8]), gamma=4, mask_token_id=7)
    # anchor 2: slots predict positions 3, 4, 5, 6 -> position 6 is a prompt token: cut there.
    assert packed.labels[0].tolist() == [103, 104, 105, IGNORE]
    # anchor 8: positions 9, 10, 11, 12 -> 12 is past the end.
    assert packed.labels[1].tolist() == [109, 110, 111, IGNORE]
    assert packed.valid.tolist() == [[True, True, True, False], [True, True, True, False]]
    assert packed.block_ids.tolist() == [[102, 7, 7, 7], [108, 7, 7, 7]]
    assert packed.prev_ids[0].tolist() == [102, 103, 104, 105]  # teacher forcing: the true previous token
    assert packed.positions[12:].tolist() == [2, 3, 4, 5, 8, 9, 10, 11]
    # block 0 sees context positions 0, 1 and its own 4 rows; block 1 sees positions 0..7 and its rows.
    m = packed.attention_mask
    assert m[0, :12].tolist() == [True, True] + [False] * 10
    assert m[5, :12].tolist() == [True] * 8 + [False] * 4
    assert m[0, 12:].tolist() == [True] * 4 + [False] * 4
    assert m[7, 12:].tolist() == [False] * 4 + [True] * 4


@pytest.mark.parametrize("method", ["dspark", "dflash"])
def test_packed_forward_equals_the_inference_rounds(method, tmp_path):
    """The base logits of each packed block equal those of inference rounds (draft KV cache filled over
    two rounds, then the block at the anchor with no mask), float32, atol 1e-5."""
    torch.set_num_threads(1)
    target = tiny_target()
    draft = build_draft(target, TrainConfig(output_dir=str(tmp_path), method=method, markov_rank=8, block_size=5,
                                            target_layer_ids=[0, 2])).eval()
    for p in draft.parameters():  # a trained-looking draft: no all-zero biases or unit norms
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.2)
    ids = torch.randint(2, 94, (30,), generator=torch.Generator().manual_seed(5))
    mask = torch.tensor([0] * 6 + [1] * 24)
    features = OnlineTargetOutputs(target, draft.config.target_layer_ids)(ids.tolist()).features
    anchors = torch.tensor([6, 11, 17, 24])
    gamma, mask_id = draft.config.block_size, draft.config.mask_token_id
    packed = pack_blocks(ids, mask, anchors, gamma, mask_id)
    with torch.no_grad():
        _, packed_logits = packed_forward(draft, features, packed)
        for i, a in enumerate(anchors.tolist()):
            cache = draft.new_cache()
            first = a // 2  # an earlier round anchored at a // 2 commits the context before it
            block = torch.full((1, gamma), mask_id)
            block[0, 0] = ids[first]
            draft(input_ids=block, context_features=features[None, :first],
                  position_ids=torch.arange(0, first + gamma)[None], past_key_values=cache)
            block[0, 0] = ids[a]
            out = draft(input_ids=block, context_features=features[None, first:a],
                        position_ids=torch.arange(first, a + gamma)[None], past_key_values=cache)
            torch.testing.assert_close(packed_logits[i], out.logits[0], atol=1e-5, rtol=0)
            assert not torch.equal(packed_logits[i], packed_logits[(i + 1) % len(anchors)])
