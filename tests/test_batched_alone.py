"""A request running alone in the batch engine is decided as ``generate(assistant_model=...)`` decides one
sequence (``SpeculativeBatchProcessor._solo_round``): the same policy calls, in the same order, with the same
arguments, learning from the same rounds; the policy's per-text state starts afresh for each request that
runs alone; the step gate of two requests is seeded from the batch-1 gate."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

from batched_support import fixture_draft, greedy_config, plain_greedy, prompts_of, small_cache
from conftest import synthetic_profile, tiny_qwen3_target
from dspark_hf.benchmarks.concurrency import serve
from dspark_hf.integration import weight_major
from dspark_hf.verification.policies import HardwareAware

NEW = 24


@pytest.fixture(scope="module")
def target():
    return tiny_qwen3_target()


class ScriptedPolicy(HardwareAware):
    """The hardware-aware policy on the synthetic cost curve (no timing), its gate and lookup choice replaced by
    a script of the round's index, every decision and every observed round logged."""

    def __init__(self, block_size: int) -> None:
        super().__init__(profile=synthetic_profile(block_size), gate=False)
        self.log: list[tuple] = []
        self._n = 0

    def __deepcopy__(self, memo):
        return self  # generate() deep-copies its generation config; the log must stay this object's

    def _start_text(self) -> None:
        super()._start_text()
        self.lookup_tokens = 3  # offered to lookup_length below (the real policy offers it only with its gate)
        self._n = 0

    def start_sequence(self) -> None:
        self.log.append(("start",))
        super().start_sequence()

    def should_draft(self) -> bool:
        self._n += 1
        choice = self._n % 3 != 0  # every third round plain
        self.log.append(("draft?", choice))
        return choice

    def lookup_length(self, ngram, available, drafting):
        length = min(available, 2) if self._n % 4 == 1 else 0  # rounds 1, 5, 9, ... verify a guess when there is one
        self.log.append(("lookup", ngram, available, drafting, length))
        self._lookup_ngram = ngram if length else None
        return length

    def verify_length(self, confidences, block_size):
        length = super().verify_length(confidences, block_size)  # Algorithm 1 on the synthetic curve
        self.log.append(("verify", length))
        return length

    def observe(self, record) -> None:
        self.log.append(("observe", record.source, record.proposed, record.verified, record.accepted, record.emitted))
        super().observe(record)


def batch_one(target, draft, prompt, policy, new=NEW):
    ids = torch.tensor([prompt])
    config = GenerationConfig(max_new_tokens=new, do_sample=False, eos_token_id=None, pad_token_id=0, dspark_policy=policy)
    out = target.generate(ids, assistant_model=draft, generation_config=config, attention_mask=torch.ones_like(ids))
    return out[0, len(prompt):].tolist()


def test_a_request_alone_is_decided_as_at_batch_one(target):
    """One request through ``generate_batch`` makes exactly the policy calls of a batch-1 ``generate`` of its
    prompt (gate, lookup choice with its n-gram size and guess length, verification length, then the
    observed round's source and counts), after one ``start_sequence``; both outputs are plain greedy's.
    Mutation run once: ``_alone`` always ``False`` (the engine's own one-request decisions, as before run ab):
    fails (the engine never calls the policy's gate: its log is empty)."""
    draft = fixture_draft()
    prompt = prompts_of([9], seed=71, low=5, high=12)[0]  # a small vocabulary: lookup guesses exist
    plain = plain_greedy(target, [prompt], NEW)[0]
    single = ScriptedPolicy(draft.config.block_size)
    assert batch_one(target, draft, prompt, single) == plain
    engine = ScriptedPolicy(draft.config.block_size)
    results = target.generate_batch(inputs=[prompt], generation_config=greedy_config(NEW, engine),
                                    continuous_batching_config=small_cache(), assistant_model=draft)
    assert [r.generated_tokens for r in results.values()] == [plain]
    assert engine.log[0] == ("start",) and engine.log.count(("start",)) == 1
    assert engine.log[1:] == single.log
    kinds = {entry[1] for entry in single.log if entry[0] == "observe"}
    assert kinds == {"draft", "lookup", "plain"}, single.log  # the script exercised all three kinds of round


def test_each_request_alone_starts_the_policys_text_state(target):
    """Served one at a time (a closed loop at one request in flight), every request starts the policy's
    per-text state once (its lookup estimates are its own, as a new ``generate`` call's are); outputs are plain
    greedy's. Mutation run once: ``_solo_round`` not calling ``start_sequence``: fails (one start, not three)."""
    draft = fixture_draft()
    prompts = prompts_of([7, 11, 9], seed=73, low=5, high=12)
    policy = ScriptedPolicy(draft.config.block_size)
    outputs, _, _ = serve(target, prompts, greedy_config(NEW, policy), draft=draft, in_flight=1)
    assert [o.generated_tokens for o in outputs] == plain_greedy(target, prompts, NEW)
    assert policy.log.count(("start",)) == 3


def test_two_requests_gate_is_seeded_from_the_batch_one_gate(target):
    """A step gate for two requests, with no packed gate measured, starts from the policy's batch-1 gate's
    measured tokens per drafting round (per request, times two) rather than from nothing. Mutation run once:
    the batch-1 gate left out of ``_seed_from_neighbour``'s candidates: fails (not seeded)."""
    from dspark_hf.batching.speculation import Speculation
    from dspark_hf.verification.scheduling.drafting_gate import kept_gates

    draft = fixture_draft()
    config = greedy_config(NEW, HardwareAware(profile=synthetic_profile(draft.config.block_size)))
    spec = Speculation(target, draft, config)
    single = spec.policy.gate
    assert single is not None
    for _ in range(single.warmup):
        single.observe(True, 3, 0.5)
    assert not [k for k in kept_gates(draft) if k[0] == "packed"]
    gate = spec.step_gate(2)
    assert gate.measured_tokens_per_round() == pytest.approx(6.0)
    spec.close()


def test_the_engine_reads_the_cost_profile_of_its_own_verification_forwards(target, monkeypatch):
    """A hardware-aware policy set up by the engine looks for the cost profile of the forwards the engine verifies
    with (weight-major float32 linears on a CPU: ``packed_verification``), as a batch-1 call does inside its
    verification context, not for transformers' plain forward's. Mutation run once: ``policy.setup`` outside the
    weight-major scope in ``Speculation.__init__`` (as before run ab): fails (the key ends in ``__float32``)."""
    from dspark_hf.batching.packed_profile import packed_verification
    from dspark_hf.batching.speculation import Speculation
    from dspark_hf.verification.scheduling import cost_profile

    draft = fixture_draft()
    looked_for = []

    def find(t):
        looked_for.append(cost_profile.profile_key(t))
        return synthetic_profile(draft.config.block_size)

    monkeypatch.setattr(cost_profile, "find_profile", find)
    # weight-major rows chosen whatever this machine's measurement of the tiny target chose (it may choose none)
    monkeypatch.setattr(weight_major, "_chosen_rows", lambda t: (frozenset({2, 3}), frozenset()))
    spec = Speculation(target, draft, greedy_config(NEW, HardwareAware()))
    spec.close()
    expected = cost_profile.profile_key(target, packed_verification(target))
    assert packed_verification(target) == "weight-major"
    assert looked_for == [expected], (looked_for, expected)


@pytest.mark.parametrize("rows, compiled, mode", [((), (), "batched"), ((2, 3), (), "weight-major"),
                                                  ((2, 3), (3,), "weight-major-compiled")])
def test_the_packed_verification_mode_is_the_one_its_scope_reports(target, monkeypatch, rows, compiled, mode):
    """``float32_verification_mode`` (the key of the engine's packed and batch-1 profiles) names the mode that
    ``weight_major_verification`` reports inside it, also where the measurement chose no row count. Mutation run
    once: the mode before run ab (``"weight-major"`` without chosen rows): fails for ``()`` (CI's fresh cache)."""
    from dspark_hf.verification.row_mode import verification_mode

    monkeypatch.setattr(weight_major, "_chosen_rows", lambda t: (frozenset(rows), frozenset(compiled)))
    assert weight_major.float32_verification_mode(target) == mode
    with weight_major.weight_major_verification(target):
        assert verification_mode() == mode
