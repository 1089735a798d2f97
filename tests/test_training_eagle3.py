"""`dspark train --method eagle3`: DeepSpec's EAGLE-3 recipe (test-time-training chain, soft
cross-entropy against the target's distribution, per-step decay), training and inference computing
the same chain, resume, the same seeded data and positions as DSpark runs, and the command line."""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from dspark_hf.cli import main
from dspark_hf.models.eagle3.config_for_target import eagle3_config_for_target
from dspark_hf.models.eagle3.modeling_eagle3 import Eagle3Draft
from dspark_hf.training.checkpointing import latest_checkpoint, trainable_state
from dspark_hf.training.eagle3_chain import chain_hidden
from dspark_hf.training.eagle3_objective import Eagle3Objective
from dspark_hf.training.packing import chain_rows, sample_anchors, valid_anchors
from dspark_hf.training.trainer import Trainer, TrainConfig

from training_tiny import computed, read_log, tiny_examples, tiny_target

LAYERS = 6  # an EAGLE-3 draft reads five target layers within [0, layers - 2]


def _tiny_draft(ttt_length=4, decay=0.8, seed=0):
    torch.manual_seed(seed)
    config = eagle3_config_for_target(tiny_target(layers=LAYERS).config, ttt_length=ttt_length, step_loss_decay=decay)
    draft = Eagle3Draft(config).eval()
    with torch.no_grad():  # weights large enough that a wrong mask or position shows
        for p in draft.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.2)
    return draft


def _sequence(seq_len=16, prompt=5, seed=3):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, 94, (seq_len,), generator=g)
    mask = torch.tensor([0] * prompt + [1] * (seq_len - prompt))
    return ids, mask, g


def test_loss_equals_deepspec_formula_computed_by_hand_with_the_inference_chain():
    """The objective's loss equals DeepSpec's ``compute_eagle3_loss`` written out by hand: for every row
    ``i`` and step ``k`` with the position mask on (assistant token at ``i + k``, ``i + k < S - 1``), the
    soft cross-entropy of the draft's step-``k`` logits against ``softmax(target logits at i + k + 1)``,
    weighted ``decay ** k``, summed and divided by ``S``; the draft's logits come from inference's own
    computation (causal prefill of rows ``0 .. i``, then the chain forwards on a cache, teacher-forced).

    Fails when the step decay is dropped (losses.py, ``eagle3_losses``: ``step_loss_decay ** steps`` ->
    ``1.0 ** steps``), or the loss compares with the hard label instead of the target distribution."""
    draft, S, T, decay = _tiny_draft(ttt_length=4, decay=0.7), 14, 4, 0.7
    ids, mask, g = _sequence(S)
    features = torch.randn(S, draft.config.feature_size, generator=g)
    target_logits = torch.randn(S, draft.config.vocab_size, generator=g) * 3
    rows = chain_rows(ids, mask, T)
    parts = Eagle3Objective(draft)(features, rows, target_logits[rows.target_positions])

    expected = torch.zeros(())
    padded = torch.cat([ids, torch.zeros(T + 1, dtype=torch.long)])
    with torch.no_grad():
        for i in range(S):
            cache = draft.new_cache()
            h = draft.extend_context(features[None, : i + 1], padded[None, 1 : i + 2], torch.arange(i + 1)[None], cache)[:, -1:]
            for k in range(T):
                if mask[i + k] if i + k < S - 1 else False:
                    logp = F.log_softmax(draft.compute_logits(h)[0, 0], -1)
                    p = F.softmax(target_logits[i + k + 1], -1)
                    expected += decay**k * -(p * logp).sum() / S
                h = draft(hidden_states=h, input_ids=padded[None, i + k + 2 : i + k + 3],
                          position_ids=torch.tensor([[i + k + 1]]), past_key_values=cache).last_hidden_state
    assert torch.allclose(parts.total, expected, rtol=1e-5, atol=1e-6), (float(parts.total), float(expected))


def test_training_chain_equals_inference_prefill_and_propose():
    """Training and inference agree: the training chain's step 0 over all rows equals
    ``Eagle3Draft.extend_context`` (the causal prefill) on the same features and shifted tokens, and the
    chain of row ``i`` over all steps, fed the tokens ``propose`` drafted, gives ``propose``'s logits
    (float32, 1e-5).

    Fails when the chain's prefix mask lets a row see itself no more (eagle3_chain.py, ``chain_hidden``:
    ``visible = all_positions[None, :] <= rows[:, None]`` -> ``<``), or a chain step runs at the wrong
    RoPE position (``positions = rows + k`` -> ``rows + 2 * k``)."""
    draft, S, T = _tiny_draft(ttt_length=5), 16, 5
    ids, _, g = _sequence(S)
    features = torch.randn(S, draft.config.feature_size, generator=g)
    shifted = torch.cat([ids[1:], torch.zeros(1, dtype=torch.long)])
    with torch.no_grad():
        prefill = draft.extend_context(features[None], shifted[None], torch.arange(S)[None], draft.new_cache())[0]
        step0 = chain_hidden(draft, features, ids, torch.arange(S), 1)[:, 0]
        assert torch.allclose(step0, prefill, atol=1e-5, rtol=1e-5), (step0 - prefill).abs().max()

        i = 6  # draft from anchor i + 1, as the inference round after a prompt of i + 2 tokens would
        cache = draft.new_cache()
        h0 = draft.extend_context(features[None, : i + 1], ids[None, 1 : i + 2], torch.arange(i + 1)[None], cache)[:, -1]
        proposal = draft.propose(h0, ids[None, i + 1 : i + 2], start=i + 1, cache=cache)
        fed = ids.clone()
        fed[i + 2 : i + T + 1] = proposal.tokens[0, : T - 1]  # the chain's step k reads the token at i + k + 1
        chain = draft.compute_logits(chain_hidden(draft, features, fed, torch.tensor([i]), T))[0]
    assert torch.allclose(chain, proposal.logits[0], atol=1e-5, rtol=1e-5), (chain - proposal.logits[0]).abs().max()


def test_sampled_positions_are_the_dspark_anchors_weighted_to_estimate_the_full_loss():
    """``--eagle3-positions anchors``: the chain rows are ``a - 1`` for the DSpark anchors ``a`` (the
    chain drafting from each anchor), weighted ``candidates / sampled / S``; DeepSpec's mask is kept.

    Fails when the rows are the anchors themselves (packing.py, ``chain_rows``: ``rows = anchors[anchors >= 1] - 1``
    -> ``rows = anchors[anchors >= 1]``)."""
    ids, mask, _ = _sequence(20)
    anchors = sample_anchors(mask, 4, torch.Generator().manual_seed(0))
    rows = chain_rows(ids, mask, 3, anchors)
    assert torch.equal(rows.rows, anchors - 1) and torch.equal(rows.anchors, anchors)
    assert rows.row_weight == pytest.approx(valid_anchors(mask).numel() / 4 / 20)
    full = chain_rows(ids, mask, 3)
    for r, i in enumerate(rows.rows.tolist()):
        assert torch.equal(rows.mask[r], full.mask[full.rows.tolist().index(i)])
        assert torch.equal(rows.target_positions[r], torch.tensor([i + 1, i + 2, i + 3]).clamp(max=19))


def _config(out, **kw):
    base = dict(output_dir=str(out), method="eagle3", eagle3_positions="anchors", ttt_length=3, num_anchors=3,
                batch_size=2, max_steps=6, save_every=2, progress=False, learning_rate=1e-2)
    base.update(kw)
    return TrainConfig(**base)


def _counted_train(out, **kw):
    torch.set_num_threads(1)
    trainer = Trainer(tiny_target(layers=LAYERS), tiny_examples(), _config(out, **kw))
    taken = []
    trainer.optimizer.optimizer.register_step_post_hook(lambda *_: taken.append(1))
    return trainer.train(), len(taken)


@pytest.mark.parametrize("positions", ["anchors", "all"])
def test_stopped_then_resumed_eagle3_run_ends_with_identical_weights(positions, tmp_path):
    """Stopped during step 3 (checkpoint-2), rerun: the rerun runs only steps 3-6 (4 optimiser steps,
    logged with the uninterrupted run's losses) and ends bit-identical to the uninterrupted run; the
    target's embedding and LM head stay frozen and out of the checkpoint.

    Fails with resume switched off (trainer.py, ``Trainer.train``: ``latest = latest_checkpoint(ckpt_dir)``
    -> ``latest = None``: 6 optimiser steps)."""
    straight, n = _counted_train(tmp_path / "straight", eagle3_positions=positions)
    assert n == 6
    straight = trainable_state(straight)
    assert "embed_tokens.weight" not in straight and "lm_head.weight" not in straight and "fc.weight" in straight
    _, n = _counted_train(tmp_path / "resumed", eagle3_positions=positions, stop_after=3)
    assert n == 3 and latest_checkpoint(tmp_path / "resumed" / "checkpoints").name == "checkpoint-2"
    resumed, n = _counted_train(tmp_path / "resumed", eagle3_positions=positions)
    assert n == 4
    log, expected = read_log(tmp_path / "resumed"), read_log(tmp_path / "straight")
    assert [e["step"] for e in log] == [1, 2, 3, 3, 4, 5, 6]
    assert [computed(e) for e in log[3:]] == [computed(e) for e in expected[2:]]
    resumed = trainable_state(resumed)
    assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight)
    init = trainable_state(_counted_train(tmp_path / "zero", eagle3_positions=positions, max_steps=1, learning_rate=0.0)[0])
    assert any(not torch.equal(init[k], straight[k]) for k in straight)


def test_same_seed_gives_eagle3_the_dspark_batches_and_anchors(tmp_path):
    """Same data, steps and seed across methods: an EAGLE-3 run trains on the DSpark run's sequences,
    step for step, and (sampled positions) on the chains drafting from the DSpark anchors.

    Fails when the EAGLE-3 run ignores the sampled anchors (trainer.py, ``packed_sequence``:
    ``anchors if self.cfg.eagle3_positions == "anchors" else None`` -> ``None``)."""
    torch.set_num_threads(1)
    target = tiny_target(layers=LAYERS)
    ids = [0, 1, 2, 3, 4]
    dspark = Trainer(target, tiny_examples(), TrainConfig(output_dir=str(tmp_path / "d"), num_anchors=3, batch_size=2,
                                                          block_size=4, markov_rank=8, target_layer_ids=ids, progress=False))
    eagle3 = Trainer(target, tiny_examples(), _config(tmp_path / "e", target_layer_ids=ids))
    for step in range(6):
        assert dspark.step_indices(step) == eagle3.step_indices(step)
        for index in dspark.step_indices(step):
            assert torch.equal(dspark.packed_sequence(step, index).anchors, eagle3.packed_sequence(step, index).anchors)


def test_cli_tiny_run_saves_a_draft_that_loads_as_eagle3_and_exports(tmp_path):
    """``dspark train --method eagle3 ... --export deepspec`` on a tiny target: OUTPUT_DIR/draft loads with
    ``DSparkDraft.from_pretrained`` as an :class:`Eagle3Draft` holding the target's embedding and LM head,
    with the trained weights; the DeepSpec-layout export loads back to the same tensors (bf16).

    Fails when the draft keeps its own random (frozen) embedding (drafts.py, ``bind_target_embeddings``:
    ``draft.embed_tokens.weight = embed.weight`` -> ``draft.embed_tokens.requires_grad_(False)``)."""
    from dspark_hf import DSparkDraft
    from test_training_resume import _cli

    argv = _cli(tmp_path, tmp_path / "out", 4, target_layers=LAYERS, layer_ids="0,1,2,3,4")[3:]
    torch.set_num_threads(1)
    assert main(argv + ["--method", "eagle3", "--eagle3-positions", "anchors", "--ttt-length", "3", "--export", "deepspec"]) == 0
    out = tmp_path / "out"
    draft = DSparkDraft.from_pretrained(out / "draft", dtype=torch.float32)
    assert isinstance(draft, Eagle3Draft) and draft.config.ttt_length == 3 and draft.config.target_layer_ids == [0, 1, 2, 3, 4]
    target = tiny_target(layers=LAYERS)
    assert torch.equal(draft.embed_tokens.weight, target.get_input_embeddings().weight)
    assert torch.equal(draft.lm_head.weight, target.get_output_embeddings().weight)
    trained = load_file(str(out / "checkpoints" / "checkpoint-4" / "draft.safetensors"))
    assert all(torch.equal(draft.state_dict()[k], v) for k, v in trained.items())
    assert [r["step"] for r in read_log(out)] == [1, 2, 3, 4]
    assert json.loads((out / "deepspec" / "config.json").read_text())["architectures"] == ["Qwen3Eagle3Model"]
    exported = DSparkDraft.from_pretrained(out / "deepspec", dtype=torch.float32)
    assert isinstance(exported, Eagle3Draft)
    assert torch.equal(exported.fc.weight, draft.fc.weight.to(torch.bfloat16).float())


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--target-layer-ids", "0,2"], "target_layer_ids is [0, 2]; it must be a list of exactly 5 target layer indices"),
        (["--target-layer-ids", "0,1,2,3,5"], "within [0, 4]: never the target's last layer"),
        (["--draft-vocab", "16"], "--draft-vocab is for DSpark and DFlash drafts"),
        (["--ttt-length", "0"], "--ttt-length must be at least 1, got 0."),
        (["--step-loss-decay", "0"], "--step-loss-decay must be > 0, got 0.0."),
    ],
)
def test_bad_eagle3_flags_are_one_line_before_training(capsys, tmp_path, extra, message):
    """Fails (``--ttt-length 0`` reaches the config instead) when cli/train.py stops checking it:
    ``"keep_checkpoints", "ttt_length")`` -> ``"keep_checkpoints")``."""
    from test_training_resume import _cli

    argv = _cli(tmp_path, tmp_path / "out", 2, target_layers=LAYERS, layer_ids="0,1,2,3,4")[3:]
    assert main(argv + ["--method", "eagle3"] + extra) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("dspark train: error: ") and message in last, last
    assert not (tmp_path / "out" / "checkpoints").exists()
