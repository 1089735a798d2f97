"""The loader reproduces the reference implementation's outputs on every released-format fixture.

Protocol (shared/fixtures/deepspec/README.md): three drafting rounds with one draft cache kept across
them; each round feeds the context features committed since the last round and the block input, and
is compared on every tensor of reference.safetensors, in float32, to 1e-5 absolute.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from conftest import fixture_folders
from dspark_hf import DSparkDraft
from dspark_hf.drafting.block import draw_block

ATOL = 1e-5

FOLDERS = fixture_folders()


def test_fixture_root_is_populated():
    assert len(FOLDERS) >= 5, f"expected the five reference fixtures, found {[p.name for p in FOLDERS]}"


def run_reference_protocol(draft: DSparkDraft, ref: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our tensors under the names of reference.safetensors."""
    ours: dict[str, torch.Tensor] = {"position_ids": ref["position_ids"]}
    cache = draft.new_cache()
    rounds = sorted({k.split(".")[0] for k in ref if k.startswith("round")})
    for r in rounds:
        features = ref[f"{r}.context_features"]
        start = int(ref[f"{r}.start"])
        block_ids = ref[f"{r}.block_input_ids"]
        positions = ref["position_ids"][:, start - features.shape[1] : start + block_ids.shape[1]]
        with torch.no_grad():
            out = draft(input_ids=block_ids, context_features=features, position_ids=positions, past_key_values=cache)
        block = draw_block(draft, out.last_hidden_state, out.logits, block_ids[:, :1], None, do_sample=False)
        ours.update({
            f"{r}.context_features": features,
            f"{r}.start": ref[f"{r}.start"],
            f"{r}.block_input_ids": block_ids,
            f"{r}.block_hidden": out.last_hidden_state,
            f"{r}.base_logits": out.logits,
            f"{r}.greedy_tokens": block.tokens,
            f"{r}.corrected_logits": block.logits,
        })
        prev = torch.cat([block_ids[:, :1], block.tokens[:, :-1]], dim=1)
        conf = draft.confidence_logits(out.last_hidden_state, prev)
        if conf is not None:
            ours[f"{r}.confidence_logits"] = conf
    return ours


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_reproduces_reference_tensors(folder):
    draft = DSparkDraft.from_pretrained(folder, dtype=torch.float32).eval()
    ref = load_file(folder / "reference.safetensors")
    ours = run_reference_protocol(draft, ref)
    assert set(ours) == set(ref), f"tensor names differ: {sorted(set(ours) ^ set(ref))}"
    for name, expected in ref.items():
        got = ours[name]
        assert got.shape == expected.shape, name
        if expected.is_floating_point():
            torch.testing.assert_close(got.float(), expected, atol=ATOL, rtol=0, msg=lambda m: f"{folder.name}/{name}: {m}")
        else:
            assert torch.equal(got, expected), f"{folder.name}/{name}"


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_save_load_round_trip(folder, tmp_path):
    draft = DSparkDraft.from_pretrained(folder, dtype=torch.float32).eval()
    draft.save_pretrained(tmp_path)
    assert not list(tmp_path.glob("*.bin")), "saved a pickle"
    from transformers import AutoConfig, AutoModel

    assert AutoConfig.from_pretrained(tmp_path).model_type == "dspark"
    again = AutoModel.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert type(again) is DSparkDraft
    assert again.config.to_dict() == draft.config.to_dict() | {"_name_or_path": again.config._name_or_path}
    sd_a, sd_b = draft.state_dict(), again.state_dict()
    assert sd_a.keys() == sd_b.keys()
    for key in sd_a:
        assert torch.equal(sd_a[key], sd_b[key]), key
    ref = load_file(folder / "reference.safetensors")
    ours = run_reference_protocol(again, ref)
    torch.testing.assert_close(ours["round2.corrected_logits"], ref["round2.corrected_logits"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_released_config_round_trip(folder):
    """Our config written back in the released layout reads back to the same draft config."""
    import json

    from dspark_hf.models.dspark.released_format import from_released_config, is_released_config, to_released_config

    original = from_released_config(json.loads((folder / "config.json").read_text()))
    exported = to_released_config(original)
    assert is_released_config(exported)
    assert from_released_config(exported).to_dict() == original.to_dict()
