"""EAGLE-3 drafts in ``generate()``: lossless (greedy and sampling), DeepSpec's cache protocol per round,
every policy that applies, telemetry, fit checks.

Targets: tiny random Qwen3 shaped as the EAGLE-3 fixture's pretend target (hidden 64, 8 layers, vocab
384: ``conftest.tiny_qwen3_target``) with each fixture draft, and the real SmolLM2-135M-Instruct
(float32) with a random EAGLE-3 draft shaped for it. A random draft is almost never accepted, so the
forced runs push the draft's chain logits towards the target's own greedy continuation except at
scheduled steps (:func:`force_chain_towards`): blocks are then partly accepted, which exercises the
target's cache crop, the draft cache crop and the extend with the verified rows.
"""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig, LogitsProcessorList, Qwen3Config, Qwen3ForCausalLM

from conftest import EAGLE3_FIXTURES_DIR, one_line, synthetic_profile, tiny_qwen3_target
from dspark_hf import DSparkDraft
from dspark_hf.drafting import block as block_module
from dspark_hf.batching.versions import check_batching_transformers
from dspark_hf.errors import CompatibilityError, TransformersVersionError, UnsupportedUsageError
from dspark_hf.models.eagle3 import Eagle3Config, Eagle3Draft
from dspark_hf.verification.policies import OnlineAcceptance
from test_sampling_distribution import (
    PROMPT, SAMPLES, Sampling, assert_paths_exercised, chi_square, chi_square_quantile, exact_joint, patch_everywhere,
    total_variation,
)

NEW_TOKENS = 40
FIXTURES = sorted(p.parent for p in EAGLE3_FIXTURES_DIR.glob("*/reference.safetensors"))
WRONG_EVERY = 3


def load_fixture_draft(folder) -> Eagle3Draft:
    return DSparkDraft.from_pretrained(folder, dtype=torch.float32).eval()


def force_chain_towards(draft: Eagle3Draft, continuation: torch.Tensor, wrong_every: int = WRONG_EVERY) -> list[dict]:
    """Make chain step ``k`` of a round starting at ``start`` propose ``continuation[pos + 1]``
    (``pos = start + k``), except where ``(pos + k) % wrong_every == 0`` (the next token id instead) or
    past the continuation's end. Records each chain's ``start``, ``h0`` and the draft cache's length."""
    original_propose, original_logits = draft.propose, draft.compute_logits
    chains: list[dict] = []

    def propose(h0, anchor, start, cache, steps=None, draw=None):
        chains.append({"start": start, "h0": h0.detach().clone(), "cache_length": cache.get_seq_length(), "step": 0})
        return original_propose(h0, anchor, start, cache, steps=steps, draw=draw)

    def compute_logits(hidden):
        logits = original_logits(hidden)
        chain = chains[-1]
        k = chain["step"]
        chain["step"] += 1
        pos = chain["start"] + k
        if pos + 1 < continuation.shape[0]:
            token = int(continuation[pos + 1])
            if (pos + k) % wrong_every == 0:
                token = (token + 1) % logits.shape[-1]
            logits[..., token] += 1e4
        return logits

    draft.propose, draft.compute_logits = propose, compute_logits
    return chains


def generate(target, ids, draft, policy="whole", new_tokens=NEW_TOKENS, **kwargs):
    config = GenerationConfig(max_new_tokens=new_tokens, do_sample=False, dspark_policy=policy, **kwargs)
    return target.generate(ids, assistant_model=draft, generation_config=config, attention_mask=torch.ones_like(ids))


def policy_for(name: str, block: int):
    return OnlineAcceptance(profile=synthetic_profile(block), gate=False) if name == "online" else name


# -- tiny Qwen3 targets with the fixture drafts ---------------------------------------------------------

@pytest.mark.parametrize("folder", FIXTURES, ids=[p.name for p in FIXTURES])
def test_random_draft_greedy_equality(folder):
    """Unforced fixture draft: output == plain greedy generate; every round proposes ``ttt_length``."""
    target, draft = tiny_qwen3_target(), load_fixture_draft(folder)
    for seed in range(2):
        ids = torch.randint(5, 300, (1, 9 + 5 * seed), generator=torch.Generator().manual_seed(seed))
        plain = target.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)
        assert torch.equal(generate(target, ids, draft), plain)
        telemetry = draft.last_telemetry
        assert telemetry.new_tokens == plain.shape[1] - ids.shape[1]
        assert all(s.proposed == draft.config.ttt_length and s.confidences is None for s in telemetry.steps)


@pytest.mark.parametrize("folder", FIXTURES, ids=[p.name for p in FIXTURES])
@pytest.mark.parametrize("policy", ["whole", "fixed:3", "online"])
def test_forced_draft_greedy_equality_every_policy(folder, policy):
    """Forced fixture draft, each policy that applies to a draft without confidences: output == plain
    greedy generate, draft tokens accepted and verified ones rejected, telemetry and callback agree.

    Fails if the target's cache is not cut back after a rejection, or if the candidates are dropped
    (``return input_ids, None`` for every ``length`` in ``FeatureDraftCandidateGenerator.get_candidates``:
    nothing is accepted; run: ``assert accepted > 0`` fails)."""
    target, draft = tiny_qwen3_target(), load_fixture_draft(folder)
    ids = torch.randint(5, 300, (1, 11), generator=torch.Generator().manual_seed(1))
    plain = target.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)
    force_chain_towards(draft, plain[0])
    seen = []
    out = generate(target, ids, draft, policy_for(policy, draft.config.ttt_length), dspark_callback=seen.append)
    assert torch.equal(out, plain)
    telemetry = draft.last_telemetry
    steps = telemetry.steps
    accepted = sum(s.accepted for s in steps)
    print(f"{policy}: {telemetry.summary()}")
    assert accepted > 0, "no draft token accepted"
    assert any(s.verified > s.accepted for s in steps), "no verified draft token rejected"
    assert seen == steps and [s.step for s in steps] == list(range(len(steps)))
    assert telemetry.prefill_tokens + sum(s.emitted for s in steps) == out.shape[1] - ids.shape[1]
    assert all(s.accepted <= s.verified <= s.proposed == draft.config.ttt_length for s in steps)
    if policy == "fixed:3":
        assert all(s.verified <= 3 for s in steps) and telemetry.tau > 1.5


@pytest.mark.parametrize("policy", ["whole", "fixed:3"])
def test_draft_cache_follows_deepspec_protocol(policy):
    """Each round's chain starts from the right state: the draft cache holds exactly the committed
    positions (``start``), and ``h0`` equals an independent replay of DeepSpec's protocol on the same
    rounds: prefill with the prompt's features (row i: feature of position i, token i + 1), then per
    round crop to ``start`` and extend, unmasked, with the target features of the ``emitted`` verified
    rows and the committed tokens. With ``fixed:3`` the chain drafts 7 tokens and 3 are verified, so
    the cache must drop chain steps that were never verified.

    Fails if the crop is dropped (``draft.crop_cache(...)`` removed from
    ``drafting.eagle3_round.eagle3_round``: the cache holds the old chain, ``cache_length != start``),
    or if the extend pairs row i with token i instead of i + 1 (``prefix_ids[:, committed:-1]``: ``h0`` differs)."""
    target, draft = tiny_qwen3_target(), load_fixture_draft(FIXTURES[0])
    ids = torch.randint(5, 300, (1, 10), generator=torch.Generator().manual_seed(2))
    plain = target.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)
    chains = force_chain_towards(draft, plain[0])
    out = generate(target, ids, draft, policy)
    assert torch.equal(out, plain)
    steps = draft.last_telemetry.steps
    assert len(chains) == len(steps) and any(s.accepted > 0 for s in steps)
    with torch.no_grad():
        hidden = target(out, output_hidden_states=True).hidden_states
    features = torch.cat([hidden[i + 1] for i in draft.config.target_layer_ids], dim=-1)
    cache, committed = draft.new_cache(), 0
    starts = [ids.shape[1]]
    for s in steps[:-1]:
        starts.append(starts[-1] + s.emitted)
    for chain, start in zip(chains, starts):
        assert chain["start"] == start and chain["cache_length"] == start, (chain["start"], chain["cache_length"], start)
        draft.crop_cache(cache, committed)
        h = draft.extend_context(features[:, committed:start], out[:, committed + 1 : start + 1], torch.arange(committed, start)[None], cache)
        committed = start
        torch.testing.assert_close(chain["h0"].reshape(-1), h[0, -1], atol=1e-4, rtol=1e-4)


def test_batch_of_two_and_padded_refusal():
    """A batch of two runs on the batching engine (each row plain batch-1 greedy ``generate``'s tokens;
    more in tests/test_batched_eagle3.py); padded single-sequence inputs are refused by the shared base,
    named for EAGLE-3, in one line."""
    target, draft = tiny_qwen3_target(), load_fixture_draft(FIXTURES[0])
    batch = torch.randint(5, 300, (2, 6), generator=torch.Generator().manual_seed(3))
    try:
        check_batching_transformers()
    except TransformersVersionError:  # `make test-compat` on an older release: the engine's version refusal
        with pytest.raises(TransformersVersionError) as err:
            target.generate(batch, assistant_model=draft, max_new_tokens=4, do_sample=False)
        one_line(err)
    else:
        out = target.generate(batch, assistant_model=draft, max_new_tokens=4, do_sample=False)
        for row in range(2):
            assert torch.equal(out[row : row + 1], target.generate(batch[row : row + 1], max_new_tokens=4, do_sample=False))
    ids = torch.randint(5, 300, (1, 6))
    mask = torch.ones_like(ids)
    mask[0, 0] = 0
    with pytest.raises(UnsupportedUsageError) as err:
        target.generate(ids, attention_mask=mask, assistant_model=draft, max_new_tokens=4, do_sample=False)
    assert "EAGLE-3 drafting does not support padded inputs" in one_line(err)


def small_qwen3(**overrides):
    cfg = dict(vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4,
               num_key_value_heads=2, head_dim=16, max_position_embeddings=512, tie_word_embeddings=False)
    return Qwen3ForCausalLM(Qwen3Config(**(cfg | overrides))).eval()


@pytest.mark.parametrize(
    "overrides,expected",
    [
        ({"hidden_size": 96}, "draft hidden size is 64, target hidden size is 96"),
        ({"vocab_size": 500}, "draft vocabulary size is 384, target vocabulary size is 500"),
        ({"num_hidden_layers": 12}, "draft target layer count (num_target_layers) is 8, target target layer count (num_target_layers) is 12"),
    ],
)
def test_fit_check_errors_are_one_line(overrides, expected):
    draft = load_fixture_draft(FIXTURES[0])
    with pytest.raises(CompatibilityError) as err:
        generate(small_qwen3(**overrides), torch.randint(5, 300, (1, 6)), draft, new_tokens=4)
    assert expected in one_line(err)


def test_target_layer_ids_out_of_range_is_one_line():
    draft = load_fixture_draft(FIXTURES[0])
    draft.config.target_layer_ids = [1, 2, 3, 5, 9]  # as if trained for a deeper target with the same count
    with pytest.raises(CompatibilityError) as err:
        generate(tiny_qwen3_target(), torch.randint(5, 300, (1, 6)), draft, new_tokens=4)
    text = one_line(err)
    assert "draft target_layer_ids is [1, 2, 3, 5, 9]" in text and "layers -1..7 (out of range: [9])" in text


# -- SmolLM2-135M-Instruct (float32) with an EAGLE-3 draft shaped for it -------------------------------

SMOLLM2_PROMPTS = (0, 7)  # the first mt-bench and gsm8k prompts
SMOLLM2_NEW_TOKENS = 32


def smollm2_eagle3_draft(target) -> Eagle3Draft:
    """A random EAGLE-3 draft shaped for SmolLM2 (hidden 576, 30 layers, vocab 49,152), chain of 5."""
    tcfg = target.config
    torch.manual_seed(0)
    config = Eagle3Config(
        vocab_size=tcfg.vocab_size, hidden_size=tcfg.hidden_size, intermediate_size=tcfg.intermediate_size,
        num_attention_heads=tcfg.num_attention_heads, num_key_value_heads=tcfg.num_key_value_heads,
        head_dim=tcfg.hidden_size // tcfg.num_attention_heads, rms_norm_eps=tcfg.rms_norm_eps,
        max_position_embeddings=tcfg.max_position_embeddings, num_target_layers=tcfg.num_hidden_layers,
        target_layer_ids=[1, 8, 15, 22, 28], ttt_length=5,
    )
    return Eagle3Draft(config).eval()


@pytest.fixture(scope="module")
def smollm2():
    from dspark_hf.bundled.target import load_default_target
    from test_generate_greedy_smollm2 import benchmark_prompts

    target, tokenizer = load_default_target()
    prompts = benchmark_prompts()
    encoded = [
        tokenizer.apply_chat_template([{"role": "user", "content": prompts[i]}], add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
        for i in SMOLLM2_PROMPTS
    ]
    plain = [target.generate(ids, max_new_tokens=SMOLLM2_NEW_TOKENS, do_sample=False, attention_mask=torch.ones_like(ids)) for ids in encoded]
    return target, encoded, plain


@pytest.mark.parametrize("policy", ["whole", "fixed:3", "online"])
def test_smollm2_forced_draft_greedy_equality(smollm2, policy):
    """SmolLM2 with a forced EAGLE-3 draft: output == plain greedy generate token for token, draft
    tokens accepted and verified ones rejected (telemetry), on 2 prompts x 32 new tokens.

    Fails if the candidates are dropped (``return input_ids, None`` for every ``length`` in
    ``FeatureDraftCandidateGenerator.get_candidates``: nothing accepted), or if the tap's features are
    not cut to the verified rows (``features = self.tap.features()`` without the slice: the round after
    a rejection gets more rows than committed positions and ``eagle3_round`` raises). Greedy output
    does not depend on the draft cache, which ``test_draft_cache_follows_deepspec_protocol`` checks."""
    target, encoded, plain = smollm2
    accepted = rejecting = 0
    for ids, expected in zip(encoded, plain):
        draft = smollm2_eagle3_draft(target)
        force_chain_towards(draft, expected[0])
        out = generate(target, ids, draft, policy_for(policy, draft.config.ttt_length), new_tokens=SMOLLM2_NEW_TOKENS)
        assert torch.equal(out, expected), f"{policy}: speculative output differs from plain generate"
        steps = draft.last_telemetry.steps
        accepted += sum(s.accepted for s in steps)
        rejecting += sum(s.verified > s.accepted for s in steps)
    print(f"{policy}: accepted {accepted}, rounds with a rejection {rejecting}")
    assert accepted > 0 and rejecting > 0


# -- sampling: the exact output distribution ----------------------------------------------------------

def sampling_pair():
    """A tiny target (vocabulary 6, 6 layers: EAGLE-3 reads five, never the last) and a random EAGLE-3
    draft for it (``lm_head`` std 0.2: its distributions are neither flat nor the target's, and about half
    of the verified draft tokens are accepted)."""
    torch.manual_seed(1234)
    target = Qwen3ForCausalLM(
        Qwen3Config(vocab_size=6, hidden_size=32, intermediate_size=64, num_hidden_layers=6, num_attention_heads=2,
                    num_key_value_heads=1, head_dim=16, max_position_embeddings=64, tie_word_embeddings=False)
    ).eval()
    with torch.no_grad():
        target.lm_head.weight.mul_(6.0)
    draft = Eagle3Draft(
        Eagle3Config(vocab_size=6, hidden_size=32, intermediate_size=64, num_attention_heads=2, num_key_value_heads=1,
                     head_dim=16, max_position_embeddings=64, num_target_layers=6, target_layer_ids=[0, 1, 2, 3, 4], ttt_length=3)
    ).eval()
    with torch.no_grad():
        draft.lm_head.weight.normal_(0, 0.2, generator=torch.Generator().manual_seed(5))
    return target, draft


def eagle3_counts(target, draft, samples: int = SAMPLES, sampling: Sampling = Sampling()):
    config = sampling.generation_config("whole")
    counts: dict[tuple[int, ...], int] = {}
    stats = {"accepted": 0, "rejected": 0, "deep": 0}
    for _ in range(samples):
        out = target.generate(PROMPT, assistant_model=draft, generation_config=config)
        seq = tuple(out[0, PROMPT.shape[1]:].tolist())
        counts[seq] = counts.get(seq, 0) + 1
        for step in draft.last_telemetry.steps:
            stats["accepted"] += step.accepted
            stats["rejected"] += step.verified > step.accepted
            stats["deep"] += step.verified >= 2 and step.accepted >= 1
    return counts, stats


def misreporting_draw_token(tvs: list[float] | None = None, report_unprocessed: bool = False):
    """``draw_token`` drawing as the real one; records the TV between the processed distribution and the
    unprocessed one, and (``report_unprocessed``) reports the latter instead of what the token was drawn from."""
    original = block_module.draw_token

    def draw(logits, sequence, logits_processor, do_sample):
        token, reported = original(logits, sequence, logits_processor, do_sample)
        if tvs is not None:
            tvs.append(total_variation(reported, logits.float()))
        return token, (logits.float() if report_unprocessed else reported)

    return draw


@pytest.fixture(scope="module")
def eagle3_sampling():
    target, draft = sampling_pair()
    joint = exact_joint(target)
    assert abs(sum(joint.values()) - 1.0) < 1e-4
    return target, draft, joint


def test_sampling_matches_target_distribution(eagle3_sampling, monkeypatch):
    """Speculative sampling with an EAGLE-3 draft at temperature 0.6, top-k 3, top-p 0.8: the first four
    generated tokens follow the target's exact joint distribution (chi-square, 1,000 samples, bound at
    1 - 1e-4; measured chi2 given in docs/eagle3.md). The logits processors move the draft's drawn
    distribution (TV >= 0.1 on average), so reporting the unprocessed one is caught
    (``test_misreported_distribution_is_rejected``).

    Fails if the chain reports the draft's raw logits instead of the processed ones it drew from
    (``return token, logits`` in ``draw`` of ``drafting.eagle3_round.eagle3_round``: chi2 far above the
    bound), or draws greedily while reporting the distribution (``do_sample`` passed as ``False``)."""
    target, draft, joint = eagle3_sampling
    tvs: list[float] = []
    patch_everywhere(monkeypatch, block_module.draw_token, misreporting_draw_token(tvs))
    torch.manual_seed(7)
    counts, stats = eagle3_counts(target, draft)
    stat, df = chi_square(counts, joint, SAMPLES)
    mean_tv = sum(tvs) / len(tvs)
    print(f"EAGLE-3 sampling: chi2={stat:.1f} df={df} bound={chi_square_quantile(df):.1f} {stats}; processors TV {mean_tv:.3f}")
    assert_paths_exercised(stats)
    assert stat < chi_square_quantile(df), f"chi2={stat:.1f} with df={df} exceeds the 1e-4 bound"
    assert mean_tv >= 0.1, f"the logits processors move the drawn distribution too little: {mean_tv:.3f}"


def test_misreported_distribution_is_rejected(eagle3_sampling, monkeypatch):
    """Negative control: the same draws, but the chain reports the unprocessed distribution; the same
    chi-square test must reject it."""
    target, draft, joint = eagle3_sampling
    patch_everywhere(monkeypatch, block_module.draw_token, misreporting_draw_token(report_unprocessed=True))
    torch.manual_seed(7)
    counts, stats = eagle3_counts(target, draft)
    stat, df = chi_square(counts, joint, SAMPLES)
    print(f"EAGLE-3 misreporting: chi2={stat:.1f} df={df} bound={chi_square_quantile(df):.1f} {stats}")
    assert_paths_exercised(stats)
    assert stat > chi_square_quantile(df), f"misreporting went undetected: chi2={stat:.1f}, df={df}"
