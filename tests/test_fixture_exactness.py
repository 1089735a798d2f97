"""The loader reproduces the reference implementation's OUTPUTS on every released-format fixture.

Protocol (shared/fixtures/deepspec/README.md): three drafting rounds with one draft context cache
kept across them, run through our production drafting round
(:func:`dspark_hf.drafting.round.draft_round`). The reference file holds both kinds of tensor:

- inputs, copied into the run and never compared: ``position_ids``, ``round{r}.context_features``,
  ``round{r}.start`` (given to the round as the prefix length, with ``round{r}.block_input_ids[0, 0]``
  as its anchor) and ``round{r}.block_input_ids`` (the round builds it itself; that it built the
  recorded one is checked as a precondition, not counted as a reproduced output);
- outputs, each recomputed by our code and compared to 1e-5 absolute in float32 (integer outputs
  exactly): ``round{r}.block_hidden``, ``.base_logits`` (captured from the draft's forward inside the
  round), ``.greedy_tokens``, ``.corrected_logits`` (the drawn block), ``.confidence_logits`` (captured
  from ``draft.confidence_logits`` as the round calls it).

Every tensor of a reference file must be classified as input or output, and every output tensor of
it must be compared (a fixture with an output we do not reproduce fails); no compared tensor may be
the reference's own tensor or share its storage.

Largest absolute difference measured (torch 2.13 CPU, transformers 5.24, float32, one thread),
across all five folders and all float outputs: 6.23e-06, gemma4_dspark_vanilla/round1.block_hidden
(whose entries reach 3.06); every Qwen3 folder stays below 1.0e-06; greedy tokens identical everywhere.
``test_largest_difference_across_folders`` prints the figure and asserts it is below 1e-5.

Fails if, e.g., the sequential head's bias is dropped in ``dspark_hf/drafting/block.py``
(``step_logits = step_logits + bias.float()`` removed: corrected logits and greedy tokens differ) or
``hidden_norm`` is skipped in ``DSparkDraft.project_context`` (block hidden and every logit differ, in
all five folders; a uniform rescale of the context rows is not a usable mutation: Gemma4's k and v
norms make it invisible).
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from safetensors.torch import load_file

from conftest import fixture_folders
from dspark_hf import DSparkDraft
from dspark_hf.drafting.round import DraftContext, draft_round

ATOL = 1e-5

FOLDERS = fixture_folders()

# Names of reference.safetensors: a global input, per-round inputs ("round{r}.<suffix>") and outputs.
GLOBAL_INPUTS = {"position_ids"}
ROUND_INPUTS = {"context_features", "start", "block_input_ids"}
ROUND_OUTPUTS = {"block_hidden", "base_logits", "greedy_tokens", "corrected_logits", "confidence_logits"}


def split_reference(ref: dict[str, torch.Tensor]) -> tuple[set[str], set[str]]:
    """(input names, output names) of a reference file; fails on a tensor of neither kind."""
    inputs, outputs, unknown = set(), set(), set()
    for name in ref:
        suffix = name.split(".", 1)[1] if name.startswith("round") and "." in name else None
        if name in GLOBAL_INPUTS or suffix in ROUND_INPUTS:
            inputs.add(name)
        elif suffix in ROUND_OUTPUTS:
            outputs.add(name)
        else:
            unknown.add(name)
    assert not unknown, f"reference tensors neither input nor output (update the protocol): {sorted(unknown)}"
    return inputs, outputs


def reproduce_outputs(draft: DSparkDraft, ref: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our OUTPUT tensors, under the names of reference.safetensors, from the reference's inputs only."""
    ours: dict[str, torch.Tensor] = {}
    context = DraftContext(draft)
    rounds = sorted({k.split(".")[0] for k in ref if k.startswith("round")}, key=lambda r: int(r[5:]))
    captured: dict[str, object] = {}
    forward, confidence_logits = draft.forward, draft.confidence_logits

    def capturing_forward(**kwargs):
        captured["block_input_ids"] = kwargs["input_ids"].clone()
        captured["out"] = out = forward(**kwargs)
        return out

    def capturing_confidence_logits(hidden, prev_ids):
        captured["confidence"] = conf = confidence_logits(hidden, prev_ids)
        return conf

    draft.forward, draft.confidence_logits = capturing_forward, capturing_confidence_logits
    try:
        for r in rounds:
            captured.clear()
            start = int(ref[f"{r}.start"])
            anchor = ref[f"{r}.block_input_ids"][0, 0]
            prefix = torch.zeros(1, start + 1, dtype=torch.long)
            prefix[0, -1] = anchor  # only the anchor matters without logits processors
            block = draft_round(draft, context, ref[f"{r}.context_features"], prefix)
            # Precondition (an input, not an output): the round fed the recorded block input.
            assert torch.equal(captured["block_input_ids"], ref[f"{r}.block_input_ids"]), f"{r}: block input differs"
            out = captured["out"]
            ours[f"{r}.block_hidden"] = out.last_hidden_state
            ours[f"{r}.base_logits"] = out.logits
            ours[f"{r}.greedy_tokens"] = block.tokens
            ours[f"{r}.corrected_logits"] = block.logits
            if captured["confidence"] is not None:
                ours[f"{r}.confidence_logits"] = captured["confidence"]
    finally:
        del draft.forward, draft.confidence_logits  # back to the class's methods
    return ours


def compare_outputs(ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], label: str) -> dict[str, float]:
    """Compare every output tensor of ``ref`` with ours; returns each float output's max abs difference."""
    _, outputs = split_reference(ref)
    assert set(ours) == outputs, (
        f"{label}: outputs not reproduced {sorted(outputs - set(ours))}, not in the reference {sorted(set(ours) - outputs)}"
    )
    diffs: dict[str, float] = {}
    for name in sorted(outputs):
        got, expected = ours[name], ref[name]
        assert got.data_ptr() != expected.data_ptr(), f"{label}/{name}: compared the reference's own tensor"
        assert got.shape == expected.shape, f"{label}/{name}: shape {tuple(got.shape)} != {tuple(expected.shape)}"
        if expected.is_floating_point():
            diffs[name] = (got.float() - expected).abs().max().item()
            torch.testing.assert_close(got.float(), expected, atol=ATOL, rtol=0, msg=lambda m: f"{label}/{name}: {m}")
        else:
            assert torch.equal(got, expected), f"{label}/{name}: {got.tolist()} != {expected.tolist()}"
    return diffs


@functools.cache
def measured_differences(folder) -> dict[str, float]:
    draft = DSparkDraft.from_pretrained(folder, dtype=torch.float32).eval()
    ref = load_file(folder / "reference.safetensors")
    return compare_outputs(reproduce_outputs(draft, ref), ref, folder.name)


def test_fixture_root_is_populated():
    assert len(FOLDERS) >= 5, f"expected the five reference fixtures, found {[p.name for p in FOLDERS]}"


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_reproduces_reference_outputs(folder):
    diffs = measured_differences(folder)
    ref_outputs = split_reference(load_file(folder / "reference.safetensors"))[1]
    rounds = {name.split(".")[0] for name in ref_outputs}
    assert len(rounds) >= 3, f"{folder.name}: expected three recorded drafting rounds, found {sorted(rounds)}"
    assert all(math.isfinite(d) and d <= ATOL for d in diffs.values()), diffs


def test_largest_difference_across_folders():
    worst = max(((d, f"{folder.name}/{name}") for folder in FOLDERS for name, d in measured_differences(folder).items()))
    print(f"largest absolute difference over all fixture outputs: {worst[0]:.3g} ({worst[1]})")
    assert worst[0] < ATOL, worst


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
    compare_outputs(reproduce_outputs(again, ref), ref, f"{folder.name} (saved and reloaded)")


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_released_config_round_trip(folder):
    """Our config written back in the released layout reads back to the same draft config."""
    import json

    from dspark_hf.models.dspark.released_format import from_released_config, is_released_config, to_released_config

    original = from_released_config(json.loads((folder / "config.json").read_text()))
    exported = to_released_config(original)
    assert is_released_config(exported)
    assert from_released_config(exported).to_dict() == original.to_dict()
