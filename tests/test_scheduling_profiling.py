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

    target = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    profile = find_profile(target)
    assert profile.tokens == [1, 2, 3, 6] and profile.draft_seconds == 0.0


def test_profile_command_rejects_bad_values(capsys):
    with pytest.raises(SystemExit):
        main(["profile", "--tokens", "0-3"])
    assert main(["profile", "--repeats", "0"]) == 2
    assert "--repeats" in capsys.readouterr().err
