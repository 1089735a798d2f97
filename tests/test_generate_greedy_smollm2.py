"""Greedy equality on the real SmolLM2-135M-Instruct (float32), 20 benchmark prompts x 64 new tokens.

The draft is randomly initialised and sized for SmolLM2: equality must hold whatever it proposes. The
default run checks the first two prompts of each set (6 prompts); the slow run (``pytest -m slow``) the
other 14, and also runs every prompt with the draft pushed towards the target's own greedy continuation
except at scheduled slots (see ``test_generate_greedy_tiny.force_towards``), so that partial acceptance,
the target's cache crop and the draft's context cache are all exercised on the real model. (Run x moved
the 14 prompts out of the default run: they took about 7 of its 28 minutes on a 2-vCPU Xeon without AMX;
a random draft is almost never accepted, so they repeat the rejection path the 6 prompts take, and the
forced runs below and the slow run cover the rest.)

The default run also drives every verification policy (whole, fixed:3, threshold:0.5, survival:0.5,
hardware and online, the last two on a synthetic cost profile) on 3 prompts x 40 new tokens with such
a forced draft whose confidences are forced too, and requires each to accept draft tokens and stay
token-for-token equal to plain greedy generate (``test_every_policy_accepts_and_stays_greedy``).
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import GenerationConfig

from conftest import EVAL_DATASETS_DIR, PlainGenerations, synthetic_profile
from dspark_hf import DSparkDraft
from dspark_hf.models.dspark.config_for_target import draft_config_for_target
from dspark_hf.verification.policies import HardwareAware, OnlineAcceptance
from test_generate_greedy_tiny import force_towards

NEW_TOKENS = 64
PROMPTS_PER_SET = {"mt-bench": 7, "gsm8k": 7, "humaneval": 6}


def benchmark_prompts() -> list[str]:
    prompts = []
    for name, count in PROMPTS_PER_SET.items():
        with open(EVAL_DATASETS_DIR / f"{name}.jsonl") as f:
            prompts += [json.loads(line)["turns"][0] for line, _ in zip(f, range(count))]
    return prompts


def random_smollm2_draft(target) -> DSparkDraft:
    torch.manual_seed(0)
    return DSparkDraft(draft_config_for_target(target.config, num_hidden_layers=1, markov_rank=16)).eval()


SET_STARTS = tuple(sum(list(PROMPTS_PER_SET.values())[:k]) for k in range(len(PROMPTS_PER_SET)))  # 0, 7, 14
ALL_PROMPTS = tuple(range(sum(PROMPTS_PER_SET.values())))
FIRST_OF_EACH_SET = tuple(start + j for start in SET_STARTS for j in (0, 1))  # the default run's: two per set
PROMPT_GROUPS = {
    "first-two-per-set": FIRST_OF_EACH_SET,
    "the-other-14": tuple(i for i in ALL_PROMPTS if i not in FIRST_OF_EACH_SET),
}


@pytest.fixture(scope="module")
def smollm2():
    from dspark_hf.bundled.target import load_default_target

    target, tokenizer = load_default_target()
    encoded = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
        for p in benchmark_prompts()
    ]
    return target, encoded, PlainGenerations(target, encoded, max_new_tokens=NEW_TOKENS, do_sample=False)


FULL_LENGTH_AT_LEAST = {"first-two-per-set": (FIRST_OF_EACH_SET, 5), "all-20": (ALL_PROMPTS, 15)}


@pytest.mark.parametrize("group", ["first-two-per-set", pytest.param("all-20", marks=pytest.mark.slow)])
def test_prompt_set(smollm2, group):
    """Most plain answers run the full 64 tokens (a prompt may end early with EOS), so that the equality below
    compares long continuations: at least 5 of the default run's 6, at least 15 of all 20."""
    _, encoded, plain = smollm2
    assert len(encoded) == 20
    indices, at_least = FULL_LENGTH_AT_LEAST[group]
    assert sum(plain[i].shape[1] - encoded[i].shape[1] == NEW_TOKENS for i in indices) >= at_least


@pytest.mark.parametrize("policy", ["whole", "threshold:0.5"])
@pytest.mark.parametrize(
    "oracle", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["random-draft", "oracle-draft"]
)
@pytest.mark.parametrize(
    "group", ["first-two-per-set", pytest.param("the-other-14", marks=pytest.mark.slow)]
)
def test_greedy_equality_on_smollm2(smollm2, policy, oracle, group):
    target, encoded, plain = smollm2
    config = GenerationConfig(max_new_tokens=NEW_TOKENS, do_sample=False, dspark_policy=policy)
    accepted = 0
    indices = PROMPT_GROUPS[group]
    for i in indices:
        ids, expected = encoded[i], plain[i]
        draft = random_smollm2_draft(target)
        if oracle:
            force_towards(draft, expected[0])
        out = target.generate(ids, assistant_model=draft, generation_config=config, attention_mask=torch.ones_like(ids))
        assert torch.equal(out, expected), f"speculative output differs from plain generate on prompt {i} (length {ids.shape[1]})"
        accepted += sum(s.accepted for s in draft.last_telemetry.steps)
    if oracle and policy == "whole":
        assert accepted > len(indices) * NEW_TOKENS / 4, f"only {accepted} draft tokens accepted"


# -- every policy accepts on the real target (default run) ------------------------------------------

POLICY_NEW_TOKENS = 40
POLICY_PROMPTS = SET_STARTS  # the first mt-bench, gsm8k and humaneval prompts
WRONG_EVERY = 3  # force_towards' default: slot k at position pos is wrong where (pos + k) % 3 == 0


POLICY_FACTORIES = {
    "whole": lambda block: "whole",
    "fixed:3": lambda block: "fixed:3",
    "threshold:0.5": lambda block: "threshold:0.5",
    "survival:0.5": lambda block: "survival:0.5",
    "hardware": lambda block: HardwareAware(profile=synthetic_profile(block), gate=False),
    "online": lambda block: OnlineAcceptance(profile=synthetic_profile(block), gate=False),
}


def force_confidently(draft: DSparkDraft, continuation: torch.Tensor) -> None:
    """``force_towards`` plus confidences that half know its schedule: slot ``k`` at position ``pos``
    gets a pre-sigmoid confidence of -8 where ``(pos + k) % 6 == 0`` (every other scheduled wrong slot)
    or past the continuation's end, and +8 elsewhere. Confidence-reading policies then verify right
    prefixes (acceptance) and, in some rounds, a confidently wrong slot too (a rejection, so the target's
    cache crop is exercised); the untrained head alone gives confidences near 0.5 and they might verify
    nothing. The confidence depends on the slot's position only, never on a drafted token."""
    calls = force_towards(draft, continuation, wrong_every=WRONG_EVERY)

    def confidence_logits(hidden, prev_ids):
        last = calls[-1]
        positions = last["positions"][0, -last["q_len"]:].tolist()[: hidden.shape[1]]
        doubt = [pos + 1 >= continuation.shape[0] or (pos + k) % (2 * WRONG_EVERY) == 0 for k, pos in enumerate(positions)]
        return torch.tensor([[-8.0 if d else 8.0 for d in doubt]], dtype=hidden.dtype, device=hidden.device)

    draft.confidence_logits = confidence_logits


@pytest.mark.parametrize("policy_name", list(POLICY_FACTORIES))
def test_every_policy_accepts_and_stays_greedy(smollm2, policy_name):
    """Each verification policy, on SmolLM2 with a draft (and confidences) forced towards the target's
    own continuation, accepts draft tokens (sum of ``StepRecord.accepted`` > 0), also rejects some
    verified ones (a round with ``verified > accepted``: the target's cache is cut back), and its output
    equals plain greedy generate token for token, on 3 prompts x 40 new tokens.

    Fails if ``DSparkCandidateGenerator.get_candidates`` proposes nothing (``return input_ids, None``
    for ``length > 0``: no token accepted), or if the target's cache is not cut back after a rejection
    (e.g. ``cache.crop`` made a no-op in ``integration.fit_checks.prepare_target_cache``: outputs differ)."""
    target, encoded, plain = smollm2
    block = random_smollm2_draft(target).config.block_size
    policy = POLICY_FACTORIES[policy_name](block)
    config = GenerationConfig(max_new_tokens=POLICY_NEW_TOKENS, do_sample=False, dspark_policy=policy)
    accepted, verified, rejecting_rounds = 0, 0, 0
    for i in POLICY_PROMPTS:
        ids, reference = encoded[i], plain[i]
        # Greedy decoding is deterministic, so plain generate's first 40 new tokens are the 64-token run's.
        expected = reference[:, : ids.shape[1] + POLICY_NEW_TOKENS]
        assert expected.shape[1] == ids.shape[1] + POLICY_NEW_TOKENS, f"prompt {i} ends before {POLICY_NEW_TOKENS} tokens"
        draft = random_smollm2_draft(target)
        force_confidently(draft, reference[0])
        out = target.generate(ids, assistant_model=draft, generation_config=config, attention_mask=torch.ones_like(ids))
        assert torch.equal(out, expected), f"{policy_name}: speculative output differs from plain generate on prompt {i}"
        steps = draft.last_telemetry.steps
        assert all(s.accepted <= s.verified <= s.proposed == block for s in steps)
        accepted += sum(s.accepted for s in steps)
        verified += sum(s.verified for s in steps)
        rejecting_rounds += sum(s.verified > s.accepted for s in steps)
    print(f"{policy_name}: accepted {accepted} of {verified} verified draft tokens; {rejecting_rounds} rounds rejected one")
    assert accepted > 0, f"{policy_name}: no draft token accepted ({verified} verified)"
    assert rejecting_rounds > 0, f"{policy_name}: no verified token was ever rejected: the cache crop went untested"
