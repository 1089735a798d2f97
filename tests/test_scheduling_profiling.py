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


_XEON = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: {model}
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16{extra}

processor\t: 1
model name\t: Another name
"""


def test_cpu_identity_tells_hosts_with_one_model_name_apart():
    """Two virtual CPUs both named "Intel(R) Xeon(R) Processor", one with AMX and one without (the hosts of runs
    o-v and of run w), get different identities, so neither reuses the other's cost profiles or dtype costs; so do
    two generations under one name; the first processor's entry is read; a text without a model name gives "".
    Mutation run once: ``cpu_identity`` returning the model name alone: fails (all three identities equal)."""
    from dspark_hf.verification.scheduling.cost_profile import cpu_identity

    amx = cpu_identity(_XEON.format(model=207, extra=" amx_tile amx_bf16"))
    plain = cpu_identity(_XEON.format(model=207, extra=""))
    older = cpu_identity(_XEON.format(model=143, extra=""))
    assert amx == "Intel(R) Xeon(R) Processor f6m207 avx2 avx512f avx512_bf16 amx_bf16"
    assert plain == "Intel(R) Xeon(R) Processor f6m207 avx2 avx512f avx512_bf16"
    assert len({amx, plain, older}) == 3
    assert cpu_identity("processor\t: 0\nflags\t\t: avx2\n") == ""


def test_the_profile_key_names_this_cpus_identity():
    """The device part of a CPU profile key is this machine's identity and thread count (what
    :func:`find_profile` and the dtype costs look up). Mutation run once: ``device_name`` with
    ``platform.processor()`` in place of ``_cpu_model()``: fails."""
    from dspark_hf.verification.scheduling.cost_profile import _cpu_model, device_name, _sanitise

    assert device_name("cpu") == _sanitise(f"cpu-{_cpu_model()}-{torch.get_num_threads()}threads")
    assert f"__{device_name('cpu')}__" in profile_key(tiny_qwen3_target())
