"""Shared test fixtures: locations of the shared reference fixtures and benchmark prompts, tiny targets."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

import dspark_hf  # noqa: F401  (installs the generation hook)

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES_DIR = Path(os.environ.get("DSPARK_FIXTURES_DIR", REPO_ROOT.parent / "shared" / "fixtures" / "deepspec"))
EAGLE3_FIXTURES_DIR = Path(
    os.environ.get("DSPARK_EAGLE3_FIXTURES_DIR", REPO_ROOT.parent / "shared" / "fixtures" / "deepspec_eagle3")
)
EVAL_DATASETS_DIR = Path(os.environ.get("DSPARK_EVAL_DATASETS_DIR", REPO_ROOT.parent / "shared" / "eval_datasets"))


# The core subset (`make test-core`, and `make test-compat` on other transformers releases): fixture
# exactness, greedy equality, DeepSeek-V4, EAGLE-3 in generate(), sampling, the generate() hook with its options, and
# the CPU grouped-query attention path (it wraps transformers' own SDPA function).
CORE_TEST_FILES = {
    "test_fixture_exactness.py",
    "test_generate_greedy_tiny.py",
    "test_generate_greedy_smollm2.py",
    "test_generate_options.py",
    "test_v4_drafter.py",
    "test_sampling_distribution.py",
    "test_scheduling_lossless.py",
    "test_other_assistant_paths.py",
    "test_eagle3_generate.py",
    "test_cpu_gqa_attention.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in CORE_TEST_FILES:
            item.add_marker(pytest.mark.core)


def one_line(err: pytest.ExceptionInfo) -> str:
    """The message of a raised error, asserted to be a single line."""
    text = str(err.value)
    assert "\n" not in text, text
    return text


def copy_fixture(tmp_path, name="qwen3_dspark_vanilla"):
    """A writable copy of a shared fixture draft folder."""
    dest = tmp_path / name
    shutil.copytree(FIXTURES_DIR / name, dest)
    return dest


def fixture_folders() -> list[Path]:
    """Every sub-folder of the fixture root that holds a reference.safetensors."""
    return sorted(p.parent for p in FIXTURES_DIR.glob("*/reference.safetensors"))


@pytest.fixture(autouse=True)
def _single_thread_and_seed():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield


def tiny_qwen3_target(seed: int = 0):
    """A random Qwen3 shaped like the Qwen3 fixtures' pretend target (hidden 64, 8 layers, vocab 384)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen3Config(
        vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=512, tie_word_embeddings=False,
    )
    return Qwen3ForCausalLM(cfg).eval()


def tiny_gemma3_target(seed: int = 0):
    """A random Gemma3 text model shaped like the Gemma4 fixture's pretend target (hidden 64, 8 layers, vocab 320)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    cfg = Gemma3TextConfig(
        vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=512, sliding_window=16,
        final_logit_softcapping=30.0, pad_token_id=0, bos_token_id=2, eos_token_id=1,
    )
    return Gemma3ForCausalLM(cfg).eval()


class PlainGenerations:
    """Plain ``target.generate`` of each of ``prompts`` (encoded ids, an attention mask of ones, then
    ``generate_kwargs``), computed on the first read of ``[i]`` and kept: a module's tests compare against
    one set of references, and only the prompts they read are generated."""

    def __init__(self, target, prompts, **generate_kwargs):
        self.target, self.prompts, self.generate_kwargs, self._done = target, prompts, generate_kwargs, {}

    def __getitem__(self, i: int) -> torch.Tensor:
        if i not in self._done:
            ids = self.prompts[i]
            self._done[i] = self.target.generate(ids, attention_mask=torch.ones_like(ids), **self.generate_kwargs)
        return self._done[i]


def synthetic_profile(block_size: int, per_token: float = 0.35):
    """Verifying ``B`` tokens costs ``100 (1 + per_token (B - 1))`` seconds. With the default 0.35, verifying a slot
    pays when its cumulative survival is above about a third of the expected tokens so far (a tenth with 0.1), so a confident prefix is
    verified and a doubtful slot is not. The unit (100 s) dwarfs any real round on this machine, so the
    policies' measured overhead (round time minus profiled time) clamps to 0 and the schedule depends on
    the confidences / acceptance estimates only, never on timing; nothing is profiled. Policies built on it
    take ``gate=False``: the drafting gate compares wall-clock rounds (and probes plain steps), which
    would make the schedule depend on timing; its own tests are in ``test_drafting_gate.py``."""
    from dspark_hf.verification.scheduling.cost_profile import CostProfile

    tokens = list(range(1, 2 * block_size + 3))
    return CostProfile(model="synthetic", device="test", dtype="float32", tokens=tokens,
                       target_seconds=[100.0 * (1 + per_token * (b - 1)) for b in tokens])
