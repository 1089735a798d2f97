"""A damaged or incomplete draft checkpoint never loads silently: missing, unexpected or wrong-shaped
tensors, a truncated weights file, a sharded checkpoint with a lost shard, and a local-looking path that
does not exist each give one line naming the file and the problem, before any weight is loaded."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import FIXTURES_DIR, one_line
from dspark_hf import CheckpointError, DSparkDraft

VANILLA = FIXTURES_DIR / "qwen3_dspark_vanilla"


def copy_with_weights(tmp_path, edit) -> os.PathLike:
    """The vanilla fixture draft with its weights edited by ``edit(state_dict)``."""
    dest = tmp_path / "draft"
    dest.mkdir()
    shutil.copy(VANILLA / "config.json", dest / "config.json")
    state = load_file(VANILLA / "model.safetensors")
    edit(state)
    save_file(state, dest / "model.safetensors")
    return dest


def test_missing_tensor_is_refused(tmp_path):
    """Fails if the weights are not checked before transformers loads them (``check_weights_match_config``
    not called in ``DSparkDraft.from_pretrained``): transformers then initialises the tensor randomly
    and the draft loads (what main did)."""
    folder = copy_with_weights(tmp_path, lambda s: s.pop("layers.0.self_attn.q_proj.weight"))
    with pytest.raises(CheckpointError) as err:
        DSparkDraft.from_pretrained(folder)
    assert "lack 1 tensors" in one_line(err) and "layers.0.self_attn.q_proj.weight" in one_line(err)


def test_unexpected_tensor_is_refused(tmp_path):
    folder = copy_with_weights(tmp_path, lambda s: s.update({"layers.9.mlp.up_proj.weight": torch.zeros(2, 2)}))
    with pytest.raises(CheckpointError) as err:
        DSparkDraft.from_pretrained(folder)
    assert "layers.9.mlp.up_proj.weight" in one_line(err) and "no place for" in one_line(err)


def test_wrong_shape_is_refused(tmp_path):
    def edit(state):
        state["fc.weight"] = state["fc.weight"][:, :-1].contiguous()

    folder = copy_with_weights(tmp_path, edit)
    with pytest.raises(CheckpointError) as err:
        DSparkDraft.from_pretrained(folder)
    text = one_line(err)
    assert "fc.weight in model.safetensors has shape" in text and "config.json needs" in text


def test_truncated_weights_file_names_the_file(tmp_path):
    folder = copy_with_weights(tmp_path, lambda s: None)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as err:
        DSparkDraft.from_pretrained(folder)
    assert str(weights) in one_line(err) and "truncated or damaged" in one_line(err)


def test_garbage_weights_file_names_the_file(tmp_path):
    folder = copy_with_weights(tmp_path, lambda s: None)
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError) as err:
        DSparkDraft.from_pretrained(folder)
    assert "model.safetensors is not a readable safetensors file" in one_line(err)


def test_sharded_checkpoint_with_a_lost_shard(tmp_path):
    sharded = tmp_path / "sharded"
    DSparkDraft.from_pretrained(VANILLA).save_pretrained(sharded, max_shard_size="200KB")
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1
    (sharded / shards[-1]).unlink()
    with pytest.raises(CheckpointError) as err:
        DSparkDraft.from_pretrained(sharded)
    assert f"{shards[-1]} is missing" in one_line(err)


def test_sharded_round_trip_loads(tmp_path):
    """The checks accept what save_pretrained writes, sharded or not, tensor for tensor."""
    original = DSparkDraft.from_pretrained(VANILLA)
    original.save_pretrained(tmp_path / "sharded", max_shard_size="200KB")
    reloaded = DSparkDraft.from_pretrained(tmp_path / "sharded")
    for name, tensor in original.state_dict().items():
        assert torch.equal(tensor, reloaded.state_dict()[name]), name


@pytest.mark.parametrize("name", ["missing_dir", "missing_dir/sub/dir", "./missing", "~/missing-draft-dir"])
def test_local_looking_path_fails_at_once(name):
    """A name that cannot be a Hub draft id (no owner/name form, or a path) is a local path: it fails in
    one line at once, never after Hub retries (main took about 23 s for ``missing_dir``)."""
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as err:
        DSparkDraft.from_pretrained(name)
    assert "does not exist" in one_line(err)
    assert time.perf_counter() - start < 2.0
