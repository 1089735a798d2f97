"""Each user error gives one clear message naming what is wrong (issue: checks on first use)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import GenerationConfig

from conftest import FIXTURES_DIR, copy_fixture, one_line, tiny_qwen3_target
from dspark_hf import CheckpointError, CompatibilityError, DSparkConfig, DSparkDraft, UnsupportedUsageError
from dspark_hf.errors import TransformersVersionError
from dspark_hf.integration.generation_hook import check_transformers_version

VANILLA = FIXTURES_DIR / "qwen3_dspark_vanilla"


def generate_with(draft, target=None, ids=None, **kwargs):
    target = target or tiny_qwen3_target()
    ids = ids if ids is not None else torch.randint(5, 300, (1, 6))
    return target.generate(ids, assistant_model=draft, max_new_tokens=4, do_sample=False, **kwargs)


def draft_with(**overrides) -> DSparkDraft:
    base = DSparkDraft.from_pretrained(VANILLA, dtype=torch.float32).config.to_dict()
    base.update(overrides)
    for key in ("model_type", "transformers_version", "architectures", "_name_or_path"):
        base.pop(key, None)
    return DSparkDraft(DSparkConfig(**base)).eval()


@pytest.mark.parametrize(
    "overrides,expected",
    [
        ({"target_hidden_size": 96}, "draft hidden size is 96, target hidden size is 64"),
        ({"vocab_size": 500}, "draft vocabulary size is 500, target vocabulary size is 384"),
        ({"num_target_layers": 12, "target_layer_ids": [1, 3, 5]}, "draft target layer count (num_target_layers) is 12, target target layer count (num_target_layers) is 8"),
        ({"num_target_layers": 12, "target_layer_ids": [1, 5, 10]}, "num_target_layers"),
    ],
)
def test_draft_target_mismatch(overrides, expected):
    with pytest.raises(CompatibilityError) as err:
        generate_with(draft_with(**overrides))
    assert expected in one_line(err)


def test_layer_ids_outside_target():
    draft = draft_with()
    draft.config.target_layer_ids = [1, 3, 9]  # as if trained for a deeper target with the same count
    with pytest.raises(CompatibilityError) as err:
        generate_with(draft)
    assert "target_layer_ids" in one_line(err) and "[1, 3, 9]" in str(err.value)


def test_missing_config_keys(tmp_path):
    folder = copy_fixture(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    del config["target_layer_ids"], config["block_size"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as err:
        DSparkDraft.from_pretrained(folder)
    assert "missing required DSpark config keys: block_size, target_layer_ids" in one_line(err)


def test_folder_without_safetensors(tmp_path):
    folder = copy_fixture(tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError) as err:
        DSparkDraft.from_pretrained(folder)
    assert "has no model*.safetensors weights" in one_line(err)


def test_pickle_only_checkpoint_is_refused_without_unpickling(tmp_path):
    folder = copy_fixture(tmp_path)
    (folder / "model.safetensors").unlink()
    # A file that would run code if unpickled: loading must refuse before touching it.
    (folder / "pytorch_model.bin").write_bytes(b"cos\nsystem\n(S'echo pwned > %s'\ntR." % str(tmp_path / "pwned").encode())
    with pytest.raises(CheckpointError) as err:
        DSparkDraft.from_pretrained(folder)
    assert "holds only pickle weights (pytorch_model.bin)" in one_line(err)
    assert not (tmp_path / "pwned").exists()


def test_bad_paths(tmp_path):
    with pytest.raises(CheckpointError) as err:
        DSparkDraft.from_pretrained(tmp_path / "nope")
    assert "does not exist" in one_line(err)
    with pytest.raises(CheckpointError) as err:
        DSparkDraft.from_pretrained(tmp_path)
    assert "has no config.json" in one_line(err)


def test_not_a_draft(tmp_path):
    tiny_qwen3_target().save_pretrained(tmp_path)
    with pytest.raises(CheckpointError) as err:
        DSparkDraft.from_pretrained(tmp_path)
    assert "is not a DSpark draft: its config has model_type='qwen3'" in one_line(err)


def test_unknown_policy_spec():
    draft = DSparkDraft.from_pretrained(VANILLA, dtype=torch.float32).eval()
    with pytest.raises(UnsupportedUsageError) as err:
        generate_with(draft, generation_config=GenerationConfig(dspark_policy="sometimes"))
    assert "Unknown verification policy 'sometimes'" in one_line(err)


@pytest.mark.parametrize("version", ["4.57.1", "5.10.2", "6.0.0"])
def test_unsupported_transformers_version(version):
    with pytest.raises(TransformersVersionError) as err:
        check_transformers_version(version)
    assert f"needs transformers >=5.20,<6 (found {version})" in one_line(err)
