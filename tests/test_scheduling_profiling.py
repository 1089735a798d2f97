"""Cost-curve profiling: measured values, storage under the cache key, and the `dspark profile` command."""

from __future__ import annotations

import pytest
import torch

from conftest import FIXTURES_DIR, tiny_qwen3_target
from dspark_hf import DSparkDraft
from dspark_hf.cli import main
from dspark_hf.verification.scheduling import find_profile, profile_key
from dspark_hf.verification.scheduling.profiler import profile_target


def test_profile_target_measures_every_value_and_the_draft():
    target = tiny_qwen3_target()
    draft = DSparkDraft.from_pretrained(FIXTURES_DIR / "qwen3_dspark_vanilla", dtype=torch.float32).eval()
    profile = profile_target(target, draft, tokens=[4, 1, 2, 2], context_length=32, warmup=1, repeats=3)
    assert profile.tokens == [1, 2, 4]
    assert all(s > 0 for s in profile.target_seconds) and profile.draft_seconds > 0
    assert profile.context_length == 32 and profile.repeats == 3
    assert profile.key == profile_key(target)
    assert profile.versions["threads"] == torch.get_num_threads()


def test_profile_command_stores_where_the_policy_looks(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DSPARK_HF_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "tiny-target"
    tiny_qwen3_target().save_pretrained(folder)
    code = main(["profile", "--target", str(folder), "--draft", "none", "--tokens", "1-3,6", "--context", "16",
                 "--warmup", "0", "--repeats", "2", "--threads", "1", "--device", "cpu", "--dtype", "float32"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "stored" in printed and "tiny-target-qwen3-L8-H64" in printed
    from transformers import AutoModelForCausalLM

    from dspark_hf.integration.verification_forwards import verification_context

    target = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with verification_context(target):  # the policy looks up its profile inside the call's verification mode
        profile = find_profile(target)
    assert profile.tokens == [1, 2, 3, 6] and profile.draft_seconds == 0.0


def test_profile_command_rejects_bad_values(capsys):
    with pytest.raises(SystemExit):
        main(["profile", "--tokens", "0-3"])
    assert main(["profile", "--repeats", "0"]) == 2
    assert "--repeats" in capsys.readouterr().err


def test_row_by_row_verification_has_its_own_profile(tmp_path, monkeypatch):
    """A profile measured while verification runs row by row (the exact bf16 path) is stored and found
    under its own key, and a batched profile is never used for row-by-row generation or the reverse
    (their costs differ: on the 2-core CPU 85 ms vs 42 ms for 8 tokens).
    Mutation run once: ``profile_key`` without the ``__rows`` suffix makes the row-by-row lookup find
    the batched profile (the key assertion fails first)."""
    from dspark_hf.integration.exact_verification import single_step_rows
    from dspark_hf.verification.scheduling import CostProfile, save_profile

    monkeypatch.setenv("DSPARK_HF_CACHE", str(tmp_path / "cache"))
    target = tiny_qwen3_target()
    batched = profile_target(target, None, tokens=[1, 2], context_length=8, warmup=0, repeats=1)
    with single_step_rows():
        measured = profile_target(target, None, tokens=[1, 2], context_length=8, warmup=0, repeats=1)
        assert measured.verification == "rows" and measured.key == profile_key(target) == batched.key + "__rows"
    assert batched.verification == "batched" and batched.key == profile_key(target)
    save_profile(CostProfile(**{**batched.to_dict(), "target_seconds": [1.0, 2.0]}))
    with pytest.raises(Exception, match="No cost profile"), single_step_rows():
        find_profile(target)
    save_profile(CostProfile(**{**measured.to_dict(), "target_seconds": [3.0, 4.0]}))
    with single_step_rows():
        rows = find_profile(target)
    assert rows.target_seconds == [3.0, 4.0] and find_profile(target).target_seconds == [1.0, 2.0]
    # stored and read back, the field survives (a profile written before it existed reads as batched)
    assert CostProfile.from_dict(measured.to_dict()).key == measured.key
    old = {k: v for k, v in batched.to_dict().items() if k != "verification"}
    assert CostProfile.from_dict(old).verification == "batched"
