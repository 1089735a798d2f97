"""Checkpoints resume exactly: a run stopped after a checkpoint and resumed loads that checkpoint, runs
only the remaining steps and ends with the same weights (torch.equal) as an uninterrupted run; same
seed => same data order and anchors for either method.

Training is deterministic, so a rerun that ignored the checkpoint and started over would end with the
same weights too: the resume tests therefore also count what the rerun did (the optimiser steps it took,
the steps it appended to ``train_log.jsonl``) and check that its logged losses are the uninterrupted
run's, step for step."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dspark_hf.training.checkpointing import latest_checkpoint, trainable_state
from dspark_hf.training.trainer import Trainer, TrainConfig

from training_tiny import computed, read_log, tiny_examples, tiny_target

SRC = Path(__file__).resolve().parents[1] / "src"


def _config(out, **kw):
    base = dict(output_dir=str(out), num_anchors=3, batch_size=2, max_steps=6, save_every=2, block_size=4,
                markov_rank=8, target_layer_ids=[0, 2], progress=False)
    base.update(kw)
    return TrainConfig(**base)


def _train(out, **kw):
    return _counted_train(out, **kw)[0]


def _counted_train(out, **kw):
    """Train; returns the final draft and how many optimiser steps this run took (counted by a step hook
    on the torch optimizer itself, not by the trainer's own bookkeeping)."""
    torch.set_num_threads(1)
    trainer = Trainer(tiny_target(), tiny_examples(), _config(out, **kw))
    taken = []
    trainer.optimizer.optimizer.register_step_post_hook(lambda *_: taken.append(1))
    return trainer.train(), len(taken)


@pytest.mark.parametrize("method", ["dspark", "dflash"])
def test_stopped_then_resumed_run_ends_with_identical_weights(method, tmp_path, capsys):
    """Stopped during step 3 (its last checkpoint: step 2), then rerun by a fresh Trainer: the rerun loads
    checkpoint-2 and runs only steps 3-6 (4 optimiser steps, logged as steps 3, 4, 5, 6 with the
    uninterrupted run's losses and learning rates, bit for bit) and ends bit-identical to the uninterrupted run.

    Fails with resume switched off in trainer.py, ``Trainer.train``: ``latest = latest_checkpoint(ckpt_dir)``
    -> ``latest = None`` (the rerun starts over: same final weights, but 6 optimiser steps, not 4); also
    when the checkpoint is loaded but its step ignored (``start = self.load_checkpoint(latest)`` ->
    ``self.load_checkpoint(latest)``: 6 steps), or its step kept but its weights not restored
    (checkpointing.py, ``load_checkpoint``: ``missing, unexpected = draft.load_state_dict(state, strict=False)``
    -> ``missing, unexpected = [], []``: step 3 logs another loss)."""
    straight, straight_steps = _counted_train(tmp_path / "straight", method=method)
    straight = trainable_state(straight)
    assert straight_steps == 6 and [e["step"] for e in read_log(tmp_path / "straight")] == [1, 2, 3, 4, 5, 6]
    # Checkpoint at 2, stopped during 3 (redone on resume).
    _, stopped_steps = _counted_train(tmp_path / "resumed", method=method, stop_after=3)
    assert stopped_steps == 3 and latest_checkpoint(tmp_path / "resumed" / "checkpoints").name == "checkpoint-2"
    capsys.readouterr()
    resumed, resumed_steps = _counted_train(tmp_path / "resumed", method=method)
    resumed = trainable_state(resumed)
    assert resumed_steps == 6 - 2, f"the resumed run took {resumed_steps} optimiser steps, not the 4 after checkpoint-2"
    log, expected = read_log(tmp_path / "resumed"), read_log(tmp_path / "straight")
    assert [e["step"] for e in log] == [1, 2, 3] + [3, 4, 5, 6]  # stopped run, then the resumed run from step 3
    assert [computed(e) for e in log[3:]] == [computed(e) for e in expected[2:]]  # what step 3.. computed
    assert "Resuming from" in capsys.readouterr().out
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    init = trainable_state(_train(tmp_path / "zero", method=method, max_steps=1, learning_rate=0.0))
    assert any(not torch.equal(init[n], straight[n]) for n in straight)  # training really moved the weights


def test_same_seed_gives_the_same_batches_and_anchors_for_both_methods(tmp_path):
    torch.set_num_threads(1)
    runs = [Trainer(tiny_target(), tiny_examples(), _config(tmp_path / m, method=m)) for m in ("dspark", "dflash")]
    for step in range(6):
        a, b = (r.step_indices(step) for r in runs)
        assert a == b
        for index in a:
            assert torch.equal(runs[0].packed_sequence(step, index).anchors, runs[1].packed_sequence(step, index).anchors)
    other = Trainer(tiny_target(), tiny_examples(), _config(tmp_path / "s1", seed=1))
    assert [other.step_indices(s) for s in range(6)] != [runs[0].step_indices(s) for s in range(6)]


def _cli(tmp_path, out, steps, target_layers=4, layer_ids="0,2"):
    """``python -m dspark_hf.cli train`` on tiny data and a tiny target of ``target_layers`` layers saved under ``tmp_path``."""
    data = tmp_path / "data.jsonl"
    if not data.exists():
        data.write_text("".join(json.dumps({"input_ids": e.input_ids, "assistant_mask": e.assistant_mask}) + "\n"
                                for e in tiny_examples()))
        target = tiny_target(layers=target_layers)
        target.save_pretrained(tmp_path / "target")
        from transformers import PreTrainedTokenizerFast
        from tokenizers import Tokenizer, models

        PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")),
                                unk_token="<unk>").save_pretrained(tmp_path / "target")
    return [sys.executable, "-m", "dspark_hf.cli", "train", "--target", str(tmp_path / "target"), "--data", str(data),
            "--output-dir", str(out), "--max-steps", str(steps), "--save-every", "2", "--batch-size", "2",
            "--num-anchors", "3", "--block-size", "4", "--markov-rank", "8", "--target-layer-ids", layer_ids,
            "--threads", "1", "--no-progress"]


def test_run_killed_with_sigkill_resumes_to_the_same_weights(tmp_path):
    """`dspark train` killed (SIGKILL) after its first checkpoint, rerun: the rerun says it resumes, appends
    to ``train_log.jsonl`` exactly the steps after its checkpoint, with the uninterrupted run's losses,
    and ends with the same final weights as a run that was never interrupted.

    Fails with resume switched off in trainer.py, ``Trainer.train``: ``latest = latest_checkpoint(ckpt_dir)``
    -> ``latest = None`` (no "Resuming from"; the rerun logs all 40 steps)."""
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    steps = 40
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(tmp_path, killed, steps), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while latest_checkpoint(killed / "checkpoints") is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    stopped_at = int(latest_checkpoint(killed / "checkpoints").name.split("-")[1])
    assert stopped_at < steps and not (killed / "draft").exists()
    logged_before = len(read_log(killed))
    resumed = subprocess.run(_cli(tmp_path, killed, steps), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = subprocess.run(_cli(tmp_path, tmp_path / "straight", steps), env=env, capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]
    appended = read_log(killed)[logged_before:]  # what the rerun logged: only the steps after the checkpoint
    assert [e["step"] for e in appended] == list(range(stopped_at + 1, steps + 1)), f"not from checkpoint-{stopped_at}"
    assert [computed(e) for e in appended] == [computed(e) for e in read_log(tmp_path / "straight")[stopped_at:]]
    assert f"Resuming from {killed / 'checkpoints' / f'checkpoint-{stopped_at}'}" in resumed.stdout + resumed.stderr
    a = load_file(str(killed / "draft" / "model.safetensors"))
    b = load_file(str(tmp_path / "straight" / "draft" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("head,param", [("gated", "markov_head.gate_proj.weight"), ("rnn", "markov_head.joint_proj.weight")])
def test_gated_and_rnn_heads_train(head, param, tmp_path):
    init = trainable_state(_train(tmp_path / "zero", markov_head=head, max_steps=1, learning_rate=0.0))
    trained = trainable_state(_train(tmp_path / "run", markov_head=head, max_steps=2))
    assert param in trained and not torch.equal(init[param], trained[param])
