"""Two CPU processes (``ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2``, gloo) train the same draft: both end with identical weights,
and the weights really changed."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("method", ["dspark", "eagle3"])
def test_two_processes_end_with_identical_updated_weights(tmp_path, method):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), str(HERE), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    # accelerate's CPU multi-process mode: torchrun-style launch (--multi_gpu) with ACCELERATE_USE_CPU set.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           str(HERE / "ddp_worker.py"), str(tmp_path), method]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "world0.txt").read_text() == "2" and (tmp_path / "world1.txt").read_text() == "2"
    final0, final1 = load_file(str(tmp_path / "final0.safetensors")), load_file(str(tmp_path / "final1.safetensors"))
    init0 = load_file(str(tmp_path / "init0.safetensors"))
    assert final0.keys() == final1.keys() == init0.keys()
    for name in final0:
        assert torch.equal(final0[name], final1[name]), name
    changed = [n for n in final0 if not torch.equal(final0[n], init0[n])]
    assert "fc.weight" in changed and (method == "eagle3" or any(n.startswith("markov_head") for n in changed))
    assert method != "eagle3" or "layers.0.self_attn.q_proj.weight" in changed
