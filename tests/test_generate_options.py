"""generate() options with a DSpark assistant give plain generate's output, token for token (float32).

A tiny random Qwen3 target with the fixture draft forced towards the target's own greedy continuation
(``test_generate_greedy_tiny.force_towards``: right except at scheduled slots), so rounds accept
several draft tokens and every option meets partial blocks. Stops that fall inside an accepted block
(custom ``StoppingCriteria``, ``stop_strings`` on the real SmolLM2) must end the output where plain
decoding ends it; streamers see the same tokens; concurrent calls on one target from several threads
each get their own features; a continued cache is refused in one line.
"""

from __future__ import annotations

import threading

import pytest
import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from conftest import tiny_qwen3_target
from dspark_hf.errors import UnsupportedUsageError
from dspark_hf.transformers_compat import cache_keyword
from test_generate_greedy_tiny import force_towards, load_draft

NEW_TOKENS = 40


@pytest.fixture(scope="module")
def setup():
    target = tiny_qwen3_target()
    ids = torch.randint(5, 300, (1, 11), generator=torch.Generator().manual_seed(5))  # 15 distinct stop positions
    plain = target.generate(ids, max_new_tokens=NEW_TOKENS + 8, do_sample=False)
    return target, ids, plain[0]


def forced_draft(continuation, wrong_every=5):
    draft = load_draft("qwen3_dspark_vanilla")
    force_towards(draft, continuation, wrong_every)
    return draft


class StopOnToken(StoppingCriteria):
    """Stops once ``token`` is the last token: a custom criterion that is a function of the ids."""

    def __init__(self, token: int) -> None:
        self.token = token

    def __call__(self, input_ids, scores, **kwargs):
        return input_ids[:, -1] == self.token


class Collect(BaseStreamer):
    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.ended = False

    def put(self, value):
        self.tokens.extend(value.reshape(-1).tolist())

    def end(self):
        self.ended = True


def _stop_positions(ids, continuation):
    """New-token indices 1..NEW_TOKENS-6 whose token first occurs there (a stop that fires exactly once)."""
    new = continuation[ids.shape[1]:].tolist()
    return [i for i in range(1, NEW_TOKENS - 6) if new[i] not in new[:i]]


def test_custom_stopping_criterion_inside_an_accepted_block(setup):
    """Every stop position of the continuation, as a custom StoppingCriteria: output equals plain's
    and at least one stop fell inside a block whose later draft tokens were accepted.

    Fails without the per-prefix stop check (``RoundStops.active`` returning False in
    integration/stopping.py, run once): DSpark then runs past the stop and the output differs from
    plain's at the first stop position tried."""
    target, ids, continuation = setup
    inside = 0
    for i in _stop_positions(ids, continuation):
        token = int(continuation[ids.shape[1] + i])
        criteria = StoppingCriteriaList([StopOnToken(token)])
        plain = target.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False, stopping_criteria=criteria)
        assert plain.shape[1] == ids.shape[1] + i + 1
        draft = forced_draft(continuation)
        out = target.generate(ids, assistant_model=draft, max_new_tokens=NEW_TOKENS, do_sample=False, stopping_criteria=criteria)
        assert torch.equal(out, plain), f"stop at new token {i}"
        steps = draft.last_telemetry.steps
        inside += any(s.verified > s.emitted for s in steps)
        assert sum(s.emitted for s in steps) + 1 == out.shape[1] - ids.shape[1]
    assert inside > 0


def test_streamer_sees_plain_tokens_and_stops_with_them(setup):
    """A streamer receives exactly plain generate's tokens (prompt, then the new ones), also when a stop
    falls inside a block. Fails when the streamer is not wrapped (``RoundStops.streamer`` returning
    ``streamer``, run once): it then receives one token past the stop."""
    target, ids, continuation = setup
    for i in _stop_positions(ids, continuation)[:6]:
        criteria = StoppingCriteriaList([StopOnToken(int(continuation[ids.shape[1] + i]))])
        plain_stream, spec_stream = Collect(), Collect()
        plain = target.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False, stopping_criteria=criteria, streamer=plain_stream)
        out = target.generate(
            ids, assistant_model=forced_draft(continuation), max_new_tokens=NEW_TOKENS, do_sample=False,
            stopping_criteria=criteria, streamer=spec_stream,
        )
        assert torch.equal(out, plain)
        assert spec_stream.tokens == plain_stream.tokens == plain[0].tolist()
        assert spec_stream.ended


def test_scores_and_cache_are_cut_at_the_stop(setup):
    """With ``return_dict_in_generate`` and ``output_scores`` the sequences, the number of scores and the
    cache length equal plain generate's when the stop falls inside a block."""
    target, ids, continuation = setup
    i = _stop_positions(ids, continuation)[4]
    criteria = StoppingCriteriaList([StopOnToken(int(continuation[ids.shape[1] + i]))])
    kwargs = dict(max_new_tokens=NEW_TOKENS, do_sample=False, stopping_criteria=criteria, return_dict_in_generate=True, output_scores=True)
    plain = target.generate(ids, **kwargs)
    out = target.generate(ids, assistant_model=forced_draft(continuation), **kwargs)
    assert torch.equal(out.sequences, plain.sequences)
    assert len(out.scores) == len(plain.scores) == i + 1
    for a, b in zip(out.scores, plain.scores):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    cache = getattr(out, "cache", None) or out.past_key_values
    plain_cache = getattr(plain, "cache", None) or plain.past_key_values
    assert cache.get_seq_length() == plain_cache.get_seq_length()


OPTIONS = [
    {"repetition_penalty": 1.3},
    {"no_repeat_ngram_size": 2},
    {"min_new_tokens": 30, "eos_token_id": 7},
    {"bad_words_ids": [[17], [23, 29]]},
    {"suppress_tokens": [5, 6, 7]},
    {"max_length": 11 + 25},
    {"eos_token_id": [11, 12]},
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o))
def test_generate_options_keep_plain_output(setup, options):
    """Logits processors and length / EOS options (kept from the probe of options that already worked):
    equal to plain generate, with draft tokens accepted (the draft is forced towards the option's own
    plain continuation)."""
    target, ids, _ = setup
    kwargs = dict(max_new_tokens=NEW_TOKENS, do_sample=False)
    kwargs.update(options)
    if "max_length" in options:
        kwargs.pop("max_new_tokens")
    plain = target.generate(ids, **kwargs)
    draft = forced_draft(target.generate(ids, **{**kwargs, "max_new_tokens": NEW_TOKENS + 8, "max_length": None})[0])
    out = target.generate(ids, assistant_model=draft, **kwargs)
    assert torch.equal(out, plain)
    assert sum(s.accepted for s in draft.last_telemetry.steps) > 0


def test_concurrent_generate_calls_on_one_target(setup):
    """Two DSpark calls and a plain call on one target from three threads at once each give their
    sequential result. Fails without the tap's thread check (``TargetFeatureTap`` recording every
    thread's forwards, run once): the DSpark calls read the other calls' features and fail
    ("Sizes of tensors must match ...", as on main before the check)."""
    target, ids, continuation = setup
    other = torch.randint(5, 300, (1, 17), generator=torch.Generator().manual_seed(9))
    other_plain = target.generate(other, max_new_tokens=NEW_TOKENS, do_sample=False)
    plain = continuation[None, : ids.shape[1] + NEW_TOKENS]
    # The drafts are loaded before the threads start: the claim is about concurrent generate() calls
    # (transformers' from_pretrained keeps process-wide loading state and is not run concurrently here).
    draft_a, draft_b = forced_draft(continuation), forced_draft(other_plain[0])
    jobs = {
        "a": lambda: target.generate(ids, assistant_model=draft_a, max_new_tokens=NEW_TOKENS, do_sample=False),
        "b": lambda: target.generate(other, assistant_model=draft_b, max_new_tokens=NEW_TOKENS, do_sample=False),
        "c": lambda: target.generate(other, max_new_tokens=NEW_TOKENS, do_sample=False),
    }
    results, errors = {}, []
    barrier = threading.Barrier(len(jobs))

    def run(name):
        try:
            barrier.wait()
            for _ in range(3):
                results.setdefault(name, []).append(jobs[name]())
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(f"{name}: {type(err).__name__}: {err}")

    threads = [threading.Thread(target=run, args=(name,)) for name in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert all(torch.equal(r, plain) for r in results["a"])
    assert all(torch.equal(r, other_plain) for r in results["b"] + results["c"])


def test_continued_cache_is_refused(setup):
    """Continuing from a cache of an earlier call is refused in one line (the draft would lack the
    features of the cached positions and the output would differ from plain)."""
    target, ids, continuation = setup
    first = target.generate(ids, max_new_tokens=5, do_sample=False, return_dict_in_generate=True)
    cache = getattr(first, "cache", None) or first.past_key_values
    with pytest.raises(UnsupportedUsageError, match="cannot continue from a cache that already holds") as info:
        target.generate(
            first.sequences, assistant_model=forced_draft(continuation), max_new_tokens=5, do_sample=False,
            **{cache_keyword(target): cache},  # `cache=` from transformers 5.24, `past_key_values=` before
        )
    assert "\n" not in str(info.value)


def test_stop_strings_on_smollm2():
    """``stop_strings`` with the real SmolLM2 tokenizer: the output ends where plain generate's does,
    for stops that fall inside accepted blocks. Fails without the per-prefix stop check (seen on main
    before it: 29 vs 30 tokens with ``stop_strings=["."]``)."""
    from dspark_hf.bundled.target import load_default_target
    from dspark_hf.models.dspark.config_for_target import draft_config_for_target
    from dspark_hf import DSparkDraft

    target, tokenizer = load_default_target()
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "List three facts about the Moon, in short sentences."}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True,
    )["input_ids"]
    mask = torch.ones_like(ids)
    long = target.generate(ids, attention_mask=mask, max_new_tokens=60, do_sample=False)[0]
    torch.manual_seed(0)
    compared = 0
    for stop in [".", " the", "Moon"]:
        plain = target.generate(ids, attention_mask=mask, max_new_tokens=60, do_sample=False, stop_strings=[stop], tokenizer=tokenizer)
        if plain.shape[1] == long.shape[0]:
            continue  # this stop never occurs
        draft = DSparkDraft(draft_config_for_target(target.config, num_hidden_layers=1, markov_rank=16)).eval()
        force_towards(draft, long, wrong_every=7)
        out = target.generate(
            ids, attention_mask=mask, assistant_model=draft, max_new_tokens=60, do_sample=False, stop_strings=[stop], tokenizer=tokenizer
        )
        assert torch.equal(out, plain), stop
        compared += 1
    assert compared >= 2
