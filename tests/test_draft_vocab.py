"""Draft vocabularies (FR-Spec / EAGLE-3 ``d2t``): a draft restricted to K target tokens proposes exactly
what the full draft would among those K, reports zero mass outside them, saves and loads, trains, and
keeps greedy generation identical to plain decoding. (Sampling with a restricted draft is tested, with its
negative control, in ``test_sampling_distribution.py``.)"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import GenerationConfig

from conftest import FIXTURES_DIR, one_line, tiny_qwen3_target
from dspark_hf import DSparkDraft
from dspark_hf.drafting.round import DraftContext, draft_round
from dspark_hf.errors import CheckpointError, ConfigValueError, DataError
from dspark_hf.models.dspark.draft_vocab import read_token_counts, top_tokens, write_token_counts
from dspark_hf.training.export import ExportError, deepspec_tensors
from dspark_hf.training.losses import dspark_losses

SUBSET = list(range(0, 384, 3))  # 128 of the tiny target's 384 tokens


def fixture_draft() -> DSparkDraft:
    return DSparkDraft.from_pretrained(FIXTURES_DIR / "qwen3_dspark_vanilla", dtype=torch.float32).eval()


def test_restricted_draft_proposes_the_full_drafts_best_tokens_inside_the_subset():
    """Slot logits of the restricted draft equal the full draft's corrected logits on the subset and are
    -inf elsewhere, so its greedy proposals are the full draft's argmax over the subset.

    Fails if ``draft_vocab.spread_to_vocabulary`` (which ``DraftBlock.logits`` calls) writes the K logits to ids
    ``0..K-1`` instead of ``draft_vocab_ids``
    (run: tokens 0..127 get the logits, the comparison below fails), or if the sequential head's rows are
    not sliced with the LM head's (shape error)."""
    full, small = fixture_draft(), fixture_draft().restrict_vocabulary(SUBSET)
    assert small.config.draft_vocab_size == len(SUBSET) and small.lm_head.out_features == len(SUBSET)
    assert small.markov_head.markov_w2.out_features == len(SUBSET)
    cfg = full.config
    torch.manual_seed(0)
    features = torch.randn(1, 8, len(cfg.target_layer_ids) * cfg.target_hidden_size)
    prefix = torch.randint(0, cfg.vocab_size, (1, 9))
    blocks = []
    for draft in (full, small):
        context = DraftContext(draft)
        blocks.append(draft_round(draft, context, features, prefix, None, False))
    big, restricted = blocks
    outside = torch.ones(cfg.vocab_size, dtype=torch.bool)
    outside[SUBSET] = False
    assert torch.isinf(restricted.logits[0, :, outside]).all() and (restricted.logits[0, :, outside] < 0).all()
    # slot 0's logits do not depend on earlier draws: exactly the full draft's on the subset
    assert torch.allclose(restricted.logits[0, 0, SUBSET], big.logits[0, 0, SUBSET], atol=1e-5)
    for k in range(cfg.block_size):
        assert int(restricted.tokens[0, k]) in SUBSET
    assert int(restricted.tokens[0, 0]) == SUBSET[int(big.logits[0, 0, SUBSET].argmax())]


class _Unchanged:
    """A logits processor that changes nothing: with it, blocks are drawn over the target's vocabulary."""

    def __call__(self, input_ids, scores):
        return scores


@pytest.mark.parametrize("ids_order", ["ascending", "descending"])
@pytest.mark.parametrize("sequential_head", [True, False], ids=["sequential-head", "ties"])
def test_drawing_among_the_draft_vocabulary_equals_drawing_over_the_targets(ids_order, sequential_head):
    """Without logits processors a restricted draft draws among its K ids (argmax over K, then mapped to the
    target id) and keeps K logits, spread over the target's vocabulary only when read. Its tokens and
    reported logits must be exactly those of the draw over the spread-out logits (forced here by a processor
    that changes nothing; request by request, float32), ties included: without the sequential head the slots' logits are whole numbers
    in 0..2, so nearly every argmax is a tie, which the target-vocabulary argmax breaks to the lowest id.
    Ids out of ascending order (a hand-made checkpoint) must fall back to the target-vocabulary draw.

    Fails if the drawn index is not mapped through ``draft_vocab_ids`` (run: tokens are indices 0..K-1),
    or if ``reduced_vocabulary`` accepts ids out of order (run: the descending case breaks ties to the
    highest id and the tokens differ)."""
    from transformers.generation.logits_process import LogitsProcessorList

    from dspark_hf.drafting.block import draw_block, draw_blocks

    draft = fixture_draft().restrict_vocabulary(SUBSET)
    if ids_order == "descending":
        draft.draft_vocab_ids.copy_(draft.draft_vocab_ids.flip(0))
    if not sequential_head:
        with torch.no_grad():
            draft.markov_head.markov_w2.weight.zero_()  # the sequential head's bias is then exactly 0
    cfg = draft.config
    generator = torch.Generator().manual_seed(5)
    requests = 3
    hidden = torch.randn(requests, cfg.block_size, cfg.hidden_size, generator=generator)
    if sequential_head:
        base = torch.randn(requests, cfg.block_size, len(SUBSET), generator=generator)
    else:
        base = torch.randint(0, 3, (requests, cfg.block_size, len(SUBSET)), generator=generator).float()
    prefixes = [torch.randint(0, cfg.vocab_size, (1, 4 + r), generator=generator) for r in range(requests)]
    unchanged = LogitsProcessorList([_Unchanged()])
    batched = draw_blocks(draft, hidden, base, prefixes, None, False)
    for r, prefix in enumerate(prefixes):
        mine = draw_block(draft, hidden[r : r + 1], base[r : r + 1], prefix, None, False)
        theirs = draw_block(draft, hidden[r : r + 1], base[r : r + 1], prefix, unchanged, False)
        assert mine.tokens.tolist() == theirs.tokens.tolist()
        assert set(mine.tokens[0].tolist()) <= set(SUBSET)
        assert torch.equal(mine.logits, theirs.logits)
        assert torch.equal(mine.confidences, theirs.confidences)
        # all requests at once: the same draws, logits up to the batched sequential head's reduction order
        assert batched[r].tokens.tolist() == mine.tokens.tolist()
        torch.testing.assert_close(batched[r].logits, mine.logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("policy", ["whole", "threshold:0.5"])
def test_greedy_generation_with_a_restricted_draft_is_plain_decoding(policy):
    """The draft is pushed towards the target's own continuation wherever that token is in its
    vocabulary, so blocks are accepted in part and the target's tokens outside the vocabulary are
    rejections; the output must still be plain decoding's."""
    target = tiny_qwen3_target()
    ids = torch.randint(0, 384, (1, 12), generator=torch.Generator().manual_seed(3))
    plain = target.generate(ids, generation_config=GenerationConfig(max_new_tokens=40, do_sample=False))
    # the random target's continuation cycles through a few tokens: keep one of them (331) in, 140 out
    subset = sorted(set(SUBSET) | {331} - {140})
    draft = fixture_draft().restrict_vocabulary(subset)
    position = {t: i for i, t in enumerate(subset)}
    original = draft.forward

    def forward(**kwargs):
        out = original(**kwargs)
        q_len = kwargs["input_ids"].shape[1]
        for k, pos in enumerate(kwargs["position_ids"][0, -q_len:].tolist()):
            if pos + 1 < plain.shape[1] and int(plain[0, pos + 1]) in position:
                out.logits[0, k, position[int(plain[0, pos + 1])]] += 1e4
        return out

    draft.forward = forward
    config = GenerationConfig(max_new_tokens=40, do_sample=False, dspark_policy=policy)
    out = target.generate(ids, assistant_model=draft, generation_config=config)
    assert torch.equal(out, plain)
    steps = draft.last_telemetry.steps
    assert sum(s.accepted for s in steps) >= 5, "the forced draft must be accepted"
    assert any(s.accepted < s.verified for s in steps), "and rejected where the target's token is outside its vocabulary"


def test_save_and_load_round_trip_keeps_the_vocabulary(tmp_path):
    draft = fixture_draft().restrict_vocabulary(SUBSET)
    draft.save_pretrained(tmp_path / "small")
    again = DSparkDraft.from_pretrained(tmp_path / "small", dtype=torch.float32)
    assert again.config.draft_vocab_size == len(SUBSET)
    assert again.draft_vocab_ids.tolist() == SUBSET
    for name, tensor in draft.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name


def test_checkpoint_without_its_vocabulary_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    draft = fixture_draft().restrict_vocabulary(SUBSET)
    draft.save_pretrained(tmp_path / "small")
    weights = tmp_path / "small" / "model.safetensors"
    state = load_file(str(weights))
    del state["draft_vocab_ids"]
    save_file(state, str(weights), metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as err:
        DSparkDraft.from_pretrained(tmp_path / "small")
    assert "draft_vocab_ids" in one_line(err)


def test_restricting_twice_needs_a_subset_and_bad_ids_are_one_line():
    draft = fixture_draft().restrict_vocabulary(SUBSET)
    draft.restrict_vocabulary(SUBSET[:10])
    assert draft.draft_vocab_ids.tolist() == SUBSET[:10]
    with pytest.raises(ConfigValueError) as err:
        draft.restrict_vocabulary([1, 2])  # not in the current vocabulary (multiples of 3)
    assert "outside this draft's vocabulary" in one_line(err)
    with pytest.raises(ConfigValueError) as err:
        fixture_draft().restrict_vocabulary([5, 400])
    assert "[0, 383]" in one_line(err)


def test_token_counts_file_and_top_tokens(tmp_path):
    from collections import Counter

    path = write_token_counts(Counter({5: 10, 7: 3, 9: 10, 11: 1}), tmp_path / "token_counts.json")
    counts = read_token_counts(tmp_path)  # a folder means its token_counts.json
    assert top_tokens(counts, 2) == [5, 9]  # ties broken by the smaller id
    assert top_tokens(counts, 2, required=[11]) == [5, 11]
    path.write_text(json.dumps({"x": 3}))
    with pytest.raises(DataError) as err:
        read_token_counts(path)
    assert "not a token id" in one_line(err)
    path.write_text(json.dumps({"999": 3}))
    with pytest.raises(DataError) as err:
        read_token_counts(path, vocab_size=384)
    assert "outside the target's vocabulary of 384" in one_line(err)
    with pytest.raises(DataError) as err:
        read_token_counts(tmp_path / "missing.json")
    assert "No token-count file" in one_line(err)


def test_reduced_vocabulary_losses_equal_the_full_vocabulary_losses_of_the_spread_distribution():
    """With K logits spread to the full vocabulary as -inf elsewhere, L1, the survival target and CE over
    in-vocabulary labels equal the full-vocabulary losses. Fails without the outside-mass term in L1
    (run: the L1 values differ by the target's mass outside the subset, ~0.66 here)."""
    torch.manual_seed(0)
    n, gamma, vocab = 3, 4, 12
    ids = torch.tensor([0, 2, 3, 7, 8, 11])
    small = torch.randn(n, gamma, ids.numel())
    target = torch.randn(n, gamma, vocab)
    labels = ids[torch.randint(0, ids.numel(), (n, gamma))]
    valid = torch.ones(n, gamma, dtype=torch.bool)
    conf = torch.randn(n, gamma)
    spread = torch.full((n, gamma, vocab), float("-inf"))
    spread[..., ids] = small
    a = dspark_losses(small, target, labels, valid, conf, draft_vocab_ids=ids)
    # the full-vocabulary reference, computed directly (log_softmax of -inf is -inf, exp gives 0)
    q = torch.softmax(spread, -1)
    p = torch.softmax(target, -1)
    l1 = (q - p).abs().sum(-1)
    w = torch.exp(-torch.arange(gamma) / 4.0)[None].expand(n, gamma)
    assert torch.allclose(a.l1, (l1 * w).sum() / w.sum(), atol=1e-6)
    ce = -torch.log(q.gather(-1, labels[..., None]).squeeze(-1))
    assert torch.allclose(a.ce, (ce * w).sum() / w.sum(), atol=1e-5)
    # labels outside the subset are skipped by CE (they cannot be drafted)
    labels[0, 0] = 1
    b = dspark_losses(small, target, labels, valid, conf, draft_vocab_ids=ids)
    assert torch.isfinite(b.ce)


def test_export_of_a_restricted_draft_is_refused_in_one_line():
    draft = fixture_draft().restrict_vocabulary(SUBSET)
    with pytest.raises(ExportError) as err:
        deepspec_tensors(draft)
    assert "reduced vocabulary of 128 tokens" in one_line(err)


def test_training_with_a_draft_vocabulary(tmp_path):
    """``draft_vocab=K`` trains a K-logit draft on the K most frequent answer tokens and writes their counts."""
    from dspark_hf.training.data import Example
    from dspark_hf.training.trainer import Trainer, TrainConfig

    target = tiny_qwen3_target()
    gen = torch.Generator().manual_seed(0)
    examples = []
    for _ in range(8):
        ids = torch.randint(0, 40, (40,), generator=gen).tolist()  # answers use tokens 0..39 only
        examples.append(Example(input_ids=ids, assistant_mask=[0] * 8 + [1] * 32))
    cfg = TrainConfig(output_dir=str(tmp_path / "run"), num_hidden_layers=1, block_size=4, num_anchors=4,
                      max_steps=2, batch_size=2, draft_vocab=16, progress=False, save_every=100)
    draft = Trainer(target, examples, cfg).train()
    assert draft.config.draft_vocab_size == 16 and draft.lm_head.out_features == 16
    assert all(t < 40 for t in draft.draft_vocab_ids.tolist())
    counts = json.loads((tmp_path / "run" / "draft" / "token_counts.json").read_text())
    assert sum(counts.values()) == 8 * 32
    again = DSparkDraft.from_pretrained(tmp_path / "run" / "draft")
    assert again.draft_vocab_ids.tolist() == draft.draft_vocab_ids.tolist()


def test_a_released_draft_is_restricted_at_load_time_from_a_token_count_file(tmp_path):
    """``load_draft(..., draft_vocab=K, token_counts=FILE)`` (the CLI's ``--draft-vocab K --token-counts FILE``)
    on the released-format fixture: K logits, the K most frequent ids; without a counts file, one line."""
    from collections import Counter

    from dspark_hf.errors import UnsupportedUsageError
    from dspark_hf.loading import load_draft

    target = tiny_qwen3_target()
    counts = Counter({t: 1000 - t for t in range(0, 300)})
    path = write_token_counts(counts, tmp_path / "counts.json")
    draft = load_draft(str(FIXTURES_DIR / "qwen3_dspark_vanilla"), target, draft_vocab=50, token_counts=path)
    assert draft.config.draft_vocab_size == 50 and draft.lm_head.out_features == 50
    assert draft.draft_vocab_ids.tolist() == list(range(50))
    ids = torch.randint(0, 384, (1, 10), generator=torch.Generator().manual_seed(5))
    plain = target.generate(ids, max_new_tokens=16, do_sample=False)
    assert torch.equal(target.generate(ids, assistant_model=draft, max_new_tokens=16, do_sample=False), plain)
    with pytest.raises(UnsupportedUsageError) as err:
        load_draft(str(FIXTURES_DIR / "qwen3_dspark_vanilla"), target, draft_vocab=50)
    assert "pass a token-count file with --token-counts" in one_line(err)
