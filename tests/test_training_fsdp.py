"""FSDP2 training through accelerate (``accelerate launch --use_fsdp --fsdp_version 2``), two processes.

On CPU (gloo): accelerate 1.15 keeps CPU processes in DDP mode even under ``--use_fsdp``, so the
worker switches accelerate's state to FSDP itself (see ``fsdp_worker.py``); everything else is the
real launch, accelerate's ``prepare`` (``fully_shard``) and torch.distributed.checkpoint. Checked:
the trainable weights are sharded and the target-owned embedding / LM head are not (still the
target's tensors); both ranks end with identical full weights, equal within 1e-6 (float32) to one
process training on the same global batch (not bit-equal: the per-rank gradient averages are summed
in a different order); a run stopped after its step-2 checkpoint and resumed by a fresh trainer loads
that checkpoint, trains only steps 3-6 on each rank (logged with the uninterrupted run's losses) and
ends bit-identical to the uninterrupted run (a deterministic restart from scratch would end there too,
hence the steps are checked); the exported draft loads with ``DSparkDraft.from_pretrained``.
These checks run for a DSpark draft and for an EAGLE-3 one (``--method eagle3``, its one layer part of
the root FSDP unit; ``training_tiny.TINY_RUNS`` gives both tiny runs).
Slow (``-m slow``): the same with bf16 mixed precision, and a real SIGKILL of the launcher and both
workers. On two CUDA GPUs the plain launch (no switch) runs the same checks; skipped elsewhere.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from dspark_hf.errors import CheckpointError
from dspark_hf.models.dspark.modeling_dspark import DSparkDraft
from dspark_hf.models.eagle3.modeling_eagle3 import Eagle3Draft
from dspark_hf.training.checkpointing import latest_checkpoint, trainable_state
from dspark_hf.training.trainer import Trainer, TrainConfig, draft_from_checkpoint

from training_tiny import computed, read_log, tiny_examples, tiny_run

# Per method: the full shape of the draft's ``fc`` (half of its rows on each rank), a parameter-name
# prefix that must change in training besides ``fc``, and the class the exported draft loads as.
EXPECTED = {"dspark": ([32, 64], "markov_head", DSparkDraft), "eagle3": ([32, 160], "layers.0.", Eagle3Draft)}

HERE = Path(__file__).resolve().parent
SINGLE_PROCESS_ATOL = 1e-6  # float32; measured 3.7e-9 after 6 steps (2 CPU processes vs 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker_command(out: Path, cpu: bool, bf16: bool = False, run: tuple[str, int] | None = None,
                    method: str = "dspark") -> tuple[list[str], dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), str(HERE), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    if cpu:
        env["ACCELERATE_USE_CPU"] = "1"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--use_fsdp", "--fsdp_version", "2",
           "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "bf16" if bf16 else "no",
           "--dynamo_backend", "no", "--main_process_port", str(_free_port()), str(HERE / "fsdp_worker.py"), str(out)]
    cmd += ["--method", method] + (["--force-cpu-fsdp"] if cpu else []) + (["--bf16"] if bf16 else []) + (["--run", run[0], str(run[1])] if run else [])
    return cmd, env


def _launch_fsdp_worker(out: Path, cpu: bool, bf16: bool = False, run: tuple[str, int] | None = None,
                        method: str = "dspark") -> str:
    """Run the worker to its end; returns its output."""
    cmd, env = _worker_command(out, cpu, bf16, run, method)
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout + result.stderr


def _single_process_run(out: Path, method: str) -> tuple[dict, dict]:
    """The same 6 steps in one process with the same global batch (2 processes x 2 sequences)."""
    torch.set_num_threads(1)
    fields, target = tiny_run(method)
    cfg = TrainConfig(output_dir=str(out), num_anchors=3, batch_size=4, max_steps=6, save_every=100, progress=False,
                      bf16=False, **fields)
    trainer = Trainer(target, tiny_examples(), cfg)
    init = {k: v.clone() for k, v in trainable_state(trainer.draft).items()}  # CPU: not views of the live weights
    return init, trainable_state(trainer.train())


def _check_fsdp_run(tmp_path: Path, exact: bool, atol: float, single_process: bool = True, method: str = "dspark") -> list[dict]:
    fc_shape, trained_prefix, draft_class = EXPECTED[method]
    facts = [json.loads((tmp_path / f"facts{r}.json").read_text()) for r in (0, 1)]
    for f in facts:
        assert f["distributed_type"] == "DistributedType.FSDP" and f["world"] == 2
        assert f["trainable_are_dtensors"] and f["fc_full_shape"] == fc_shape and f["fc_local_shape"] == [fc_shape[0] // 2, fc_shape[1]]
        assert f["frozen_not_sharded"] and f["embedding_shared_with_target"] and f["lm_head_shared_with_target"]
        assert f["stopped_checkpoints"] == ["checkpoint-2"] and f["trainable_dtypes"] == ["torch.float32"]
        # The rerun resumed from checkpoint-2: each rank trained only the 4 remaining steps (0-based 2-5).
        steps = f["stopped_steps"], f["resumed_steps"]
        assert steps == ([0, 1, 2], [2, 3, 4, 5]), steps
    log = read_log(tmp_path / "resumed")  # written by rank 0: the stopped run's steps, then the rerun's
    assert [e["step"] for e in log] == [1, 2, 3] + [3, 4, 5, 6]
    if exact:  # what the rerun's steps computed: the uninterrupted run's steps 3-6, bit for bit
        assert [computed(e) for e in log[3:]] == [computed(e) for e in read_log(tmp_path / "straight")[2:]]

    def load(name):
        return [load_file(str(tmp_path / f"{name}{r}.safetensors")) for r in (0, 1)]

    (init0, init1), (straight0, straight1), (resumed0, resumed1) = load("init"), load("straight"), load("resumed")
    assert straight0.keys() == straight1.keys() == resumed0.keys() == init0.keys() and "fc.weight" in straight0
    same = torch.equal if exact else (lambda a, b: torch.allclose(a, b, rtol=0, atol=atol))
    for name in straight0:
        assert torch.equal(init0[name], init1[name]), name
        assert torch.equal(straight0[name], straight1[name]), name  # ranks hold the same gathered weights
        assert torch.equal(resumed0[name], resumed1[name]), name
        assert same(straight0[name], resumed0[name]), name  # stopped + resumed == uninterrupted
    changed = [n for n in straight0 if not torch.equal(straight0[n], init0[n])]
    assert "fc.weight" in changed and any(n.startswith(trained_prefix) for n in changed)

    # What is on disk: the full, unsharded draft, and checkpoints holding the sharded state.
    exported = load_file(str(tmp_path / "straight" / "draft" / "model.safetensors"))
    assert all(torch.equal(exported[n], straight0[n]) for n in straight0)
    frozen = exported.keys() - straight0.keys()  # an EAGLE-3 draft is saved with the target's embedding and LM head
    assert frozen == ({"embed_tokens.weight", "lm_head.weight"} if method == "eagle3" else set()), frozen
    target = tiny_run(method)[1]
    owned = {"embed_tokens.weight": target.get_input_embeddings().weight, "lm_head.weight": target.get_output_embeddings().weight}
    assert all(torch.equal(exported[name], owned[name]) for name in frozen)
    assert isinstance(DSparkDraft.from_pretrained(tmp_path / "straight" / "draft"), draft_class)
    checkpoint = tmp_path / "straight" / "checkpoints" / "checkpoint-6"
    assert (checkpoint / "sharded" / ".metadata").is_file()
    in_checkpoint = load_file(str(checkpoint / "draft.safetensors"))
    assert all(torch.equal(in_checkpoint[n], straight0[n]) for n in straight0)
    from_checkpoint = trainable_state(draft_from_checkpoint(tiny_run(method)[1], checkpoint))  # --draft-from-checkpoint
    assert all(torch.equal(from_checkpoint[n], straight0[n]) for n in straight0)

    for name in straight0:
        assert torch.isfinite(straight0[name]).all(), name
    if not single_process:
        return facts
    # One process, same global batch: the same training up to float32 summation order.
    init, single = _single_process_run(tmp_path / "single", method)
    assert all(torch.equal(init[n], init0[n]) for n in init)
    for name in single:
        assert torch.allclose(single[name], straight0[name], rtol=0, atol=atol), (name, (single[name] - straight0[name]).abs().max())
    return facts


@pytest.mark.parametrize("method", ["dspark", "eagle3"])
def test_fsdp_on_two_cpu_processes_shards_trains_and_resumes_exactly(method, tmp_path):
    """See the module docstring. EAGLE-3 fails with its decoder layer made an FSDP unit of its own
    (trainer.py, ``Trainer.__init__``: ``layer_units=cfg.method != EAGLE3`` -> ``layer_units=True``, and
    fsdp.py ``WRAPPED_LAYER = "DSparkDecoderLayer"`` -> ``"Eagle3DecoderLayer"``): the training chain calls
    the layer's modules, not the layer, so its weights stay sharded ("mixed torch.Tensor and DTensor");
    with ``layer_units=True`` alone accelerate finds no ``DSparkDecoderLayer`` to wrap. The resume check fails with resume switched off in trainer.py,
    ``Trainer.train``: ``latest = latest_checkpoint(ckpt_dir)`` -> ``latest = None`` (the rerun starts over:
    the same final weights, but each rank trains all 6 steps, not the last 4); also with the sharded
    state not loaded (``Trainer.load_checkpoint``: ``load_sharded(path / SHARDED_DIR, self.objective,
    self.optimizer.optimizer)`` -> ``pass``: step 3 logs another loss)."""
    _launch_fsdp_worker(tmp_path, cpu=True, method=method)
    _check_fsdp_run(tmp_path, exact=True, atol=SINGLE_PROCESS_ATOL, method=method)
    # A sharded checkpoint is refused, in one line, by a run without FSDP.
    fields, target = tiny_run(method)
    cfg = TrainConfig(output_dir=str(tmp_path / "straight"), num_anchors=3, batch_size=2, max_steps=8, progress=False, **fields)
    with pytest.raises(CheckpointError, match="written under FSDP"):
        Trainer(target, tiny_examples(), cfg).train()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dspark", "eagle3"])
def test_fsdp_bf16_mixed_precision_on_two_cpu_processes(method, tmp_path):
    """bf16 as on GPUs: accelerate's FSDP policy (bf16 compute and gradient reduction, float32 master
    weights) plus autocast, with forward inputs and outputs left uncast so the target's logits and the
    losses stay float32. Ranks agree and stop/resume stays bit-exact (the rerun trains only the steps
    after its checkpoint); no single-process comparison (one CPU process trains in float32). The resume
    check fails with resume switched off in trainer.py, ``Trainer.train``: ``latest = latest_checkpoint(ckpt_dir)``
    -> ``latest = None`` (each rank trains all 6 steps again)."""
    _launch_fsdp_worker(tmp_path, cpu=True, bf16=True, method=method)
    facts = _check_fsdp_run(tmp_path, exact=True, atol=0.0, single_process=False, method=method)
    policy = facts[0]["mixed_precision_policy"]
    assert "param_dtype=torch.bfloat16" in policy and "cast_forward_inputs=False" in policy and "output_dtype=None" in policy


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dspark", "eagle3"])
def test_fsdp_run_killed_with_sigkill_resumes_to_the_same_weights(method, tmp_path):
    """Both FSDP processes and the launcher killed (SIGKILL) once a checkpoint exists, relaunched: the
    relaunch resumes from that checkpoint, logs only the steps after it (with the uninterrupted run's
    losses) and ends with the same final weights as an uninterrupted FSDP run, bit for bit.

    Fails with resume switched off in trainer.py, ``Trainer.train``: ``latest = latest_checkpoint(ckpt_dir)``
    -> ``latest = None`` (the relaunch logs all 30 steps)."""
    steps = 30
    cmd, env = _worker_command(tmp_path, cpu=True, run=("killed", steps), method=method)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 300
    while latest_checkpoint(checkpoints) is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    # The workers run in sessions of their own (torch elastic): kill them and the launcher by pid.
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert len([w for w in workers if "fsdp_worker.py" in " ".join(w.cmdline())]) == 2
    for process in [*workers, psutil.Process(proc.pid)]:
        process.send_signal(signal.SIGKILL)
    psutil.wait_procs(workers, timeout=30)
    proc.wait()
    stopped_at = int(latest_checkpoint(checkpoints).name.split("-")[1])
    assert stopped_at < steps and not (tmp_path / "killed" / "draft").exists()
    logged_before = len(read_log(tmp_path / "killed"))
    relaunch = _launch_fsdp_worker(tmp_path, cpu=True, run=("killed", steps), method=method)
    _launch_fsdp_worker(tmp_path, cpu=True, run=("uninterrupted", steps), method=method)
    appended = read_log(tmp_path / "killed")[logged_before:]  # what the relaunch logged
    assert [e["step"] for e in appended] == list(range(stopped_at + 1, steps + 1)), f"not from checkpoint-{stopped_at}"
    assert [computed(e) for e in appended] == [computed(e) for e in read_log(tmp_path / "uninterrupted")[stopped_at:]]
    assert f"Resuming from {checkpoints / f'checkpoint-{stopped_at}'}" in relaunch
    for rank in (0, 1):
        a = load_file(str(tmp_path / f"killed{rank}.safetensors"))
        b = load_file(str(tmp_path / f"uninterrupted{rank}.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="FSDP without the CPU switch needs two CUDA GPUs (NCCL); none here")
@pytest.mark.parametrize("method", ["dspark", "eagle3"])
def test_fsdp_on_two_gpus(method, tmp_path):
    """The plain launch, no switch: accelerate enables FSDP itself. cuBLAS and atomic adds make GPU
    float32 results order-dependent, hence a tolerance instead of bit equality."""
    _launch_fsdp_worker(tmp_path, cpu=False, method=method)
    _check_fsdp_run(tmp_path, exact=False, atol=1e-4, method=method)


def test_cli_refuses_fsdp_where_accelerate_cannot_run_it(tmp_path):
    """``accelerate launch --use_fsdp`` sets ACCELERATE_USE_FSDP; where accelerate does not set FSDP up
    (one process, or CPU processes, which it silently runs as DDP) ``dspark train`` says so in one line."""
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"text": "hello"}) + "\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")]),
           "ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-m", "dspark_hf.cli", "train", "--data", str(data), "--output-dir",
                             str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("dspark train: error:")]
    assert len(lines) == 1 and "FSDP was requested" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
