"""The demo's logic without a browser: token provenance per round equals the telemetry, the streamed
tokens are the generated ones, Stop ends generate() early, prompt messages, model choice, rendering.

Tiny random Qwen3 target with the Qwen3 fixture draft, steered towards the target's own greedy
continuation (as in test_generate_greedy_tiny) so that rounds accept some, all or none of their
verified tokens; the tokenizer tests use the embedded SmolLM2 tokenizer.
"""

from __future__ import annotations

import html
import json
import re
import threading

import pytest
import torch
from transformers import AutoTokenizer

from conftest import FIXTURES_DIR, tiny_qwen3_target
from dspark_hf import DSparkDraft, StepRecord
from dspark_hf.demo import models as demo_models
from dspark_hf.demo.handlers import generation_config, policy_spec
from dspark_hf.demo.prompts import PromptError, prompt_ids
from dspark_hf.demo.provenance import BONUS, CORRECTION, DRAFT, LOOKUP, PLAIN, TARGET, PieceDecoder, Transcript, step_origins
from dspark_hf.demo.render import answer_html, stats_html, step_chart
from dspark_hf.demo.streaming import Finished, StreamingGeneration
from test_generate_greedy_tiny import force_towards

NEW_TOKENS = 40


def record(verified, accepted, emitted, step=0):
    return StepRecord(step=step, proposed=7, verified=verified, accepted=accepted, emitted=emitted,
                      confidences=None, draft_seconds=0.0, step_seconds=0.0)


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    from dspark_hf.bundled.target import default_target_dir

    return AutoTokenizer.from_pretrained(default_target_dir())


class IdTokenizer:
    """Stands in for a tokenizer for tiny random targets: token ``i`` decodes to ``"<i>"``."""

    all_special_ids: list[int] = []

    def decode(self, ids, skip_special_tokens=True):
        return "".join(f"<{int(i)}>" for i in ids)

    def convert_ids_to_tokens(self, i):
        return f"<{i}>"


def steered_run(policy, max_new_tokens=NEW_TOKENS, cancel=None, draft_hook=None, wrong_every=3):
    """(plain ids, prompt ids, draft, items streamed, Finished) for one steered speculative run."""
    target = tiny_qwen3_target()
    draft = DSparkDraft.from_pretrained(FIXTURES_DIR / "qwen3_dspark_vanilla", dtype=torch.float32).eval()
    ids = torch.randint(5, 300, (1, 10), generator=torch.Generator().manual_seed(5))
    plain = target.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)
    force_towards(draft, plain[0], wrong_every=wrong_every)
    if draft_hook is not None:
        draft_hook(draft)
    run = StreamingGeneration(target, ids, generation_config(max_new_tokens, 0.0, policy), draft=draft, cancel=cancel)
    items = list(run)
    return plain, ids, draft, items[:-1], items[-1]


def test_step_origins():
    assert step_origins(record(7, 3, 4)) == [DRAFT] * 3 + [CORRECTION]
    assert step_origins(record(2, 2, 3)) == [DRAFT, DRAFT, BONUS]
    assert step_origins(record(0, 0, 1)) == [TARGET]
    assert step_origins(record(5, 0, 1)) == [CORRECTION]


def test_lookup_rounds_show_their_tokens_as_prompt_lookup_tokens(smollm2_tokenizer):
    """A round that verified a prompt-lookup guess (``source == "lookup"``) shows its accepted tokens as
    lookup tokens, not draft tokens: kind, tooltip and a card of their own. Mutation run once:
    ``step_origins`` ignoring ``source``: fails."""
    from dspark_hf.demo.provenance import StepTokens

    guess = StepRecord(step=0, proposed=3, verified=3, accepted=2, emitted=3, confidences=None, draft_seconds=0.0,
                       step_seconds=0.0, source="lookup")
    assert step_origins(guess) == [LOOKUP, LOOKUP, CORRECTION]
    t = Transcript(smollm2_tokenizer)
    ids = smollm2_tokenizer("one two three four").input_ids
    t.add(StepTokens(None, ids[:1], [TARGET], elapsed=0.1))
    t.add(StepTokens(0, ids[1:4], step_origins(guess), guess, elapsed=0.2))
    page = answer_html(t, "ans")
    assert re.findall(r'<span class="tok (\w+)', page) == [TARGET, LOOKUP, LOOKUP, CORRECTION]
    assert "2 of 3 prompt-lookup tokens accepted" in page
    assert "tokens from prompt lookup" in stats_html(t)
    assert "tokens from prompt lookup" not in stats_html(Transcript(smollm2_tokenizer))


@pytest.mark.parametrize("policy,wrong_every", [("whole", 3), ("fixed:2", 4)])
def test_streamed_rounds_equal_the_telemetry_and_the_output(policy, wrong_every):
    plain, ids, draft, items, finished = steered_run(policy, wrong_every=wrong_every)
    assert isinstance(finished, Finished) and finished.error is None and not finished.stopped
    telemetry = draft.last_telemetry
    prefill, rounds = items[0], items[1:]
    assert prefill.step is None and prefill.kinds == [TARGET] and len(prefill.token_ids) == telemetry.prefill_tokens
    assert [r.record for r in rounds] == telemetry.steps and len(rounds) > 1
    for r in rounds:
        assert r.step == r.record.step
        assert len(r.token_ids) == r.record.emitted
        assert r.kinds.count(DRAFT) == r.record.accepted
    streamed = [t for item in items for t in item.token_ids]
    assert streamed == finished.token_ids == plain[0, ids.shape[1]:].tolist()
    kinds = {k for r in rounds for k in r.kinds}
    if policy == "fixed:2":  # two verified slots: some rounds accept both (bonus), some reject one (correction)
        assert {DRAFT, CORRECTION, BONUS} <= kinds
    else:  # every steered block has a wrong slot: partial acceptance, never a bonus
        assert DRAFT in kinds and CORRECTION in kinds and BONUS not in kinds
    transcript = Transcript(IdTokenizer())
    for item in items:
        transcript.add(item)
    data = transcript.to_dict()
    assert data["token_ids"] == streamed
    assert [(s["step"], s["proposed"], s["verified"], s["accepted"], s["emitted"]) for s in data["steps"]] == [
        (s.step, s.proposed, s.verified, s.accepted, s.emitted) for s in telemetry.steps
    ]
    assert data["tau"] == pytest.approx(telemetry.tau) and data["prefill_tokens"] == telemetry.prefill_tokens


def test_nothing_verified_gives_target_tokens():
    plain, ids, draft, items, finished = steered_run("threshold:1.0", max_new_tokens=8)
    assert all(item.kinds == [TARGET] for item in items)
    assert finished.token_ids == plain[0, ids.shape[1]:].tolist()


def test_plain_generation_streams_one_token_per_item():
    target = tiny_qwen3_target()
    ids = torch.randint(5, 300, (1, 7), generator=torch.Generator().manual_seed(6))
    plain = target.generate(ids, max_new_tokens=12, do_sample=False)
    items = list(StreamingGeneration(target, ids, generation_config(12, 0.0)))
    assert [t for item in items[:-1] for t in item.token_ids] == plain[0, ids.shape[1]:].tolist()
    assert all(item.kinds == [PLAIN] and item.record is None for item in items[:-1])


def test_stop_set_inside_a_round_ends_generate_after_that_round():
    """The Stop event is checked after every round: set during round 3's drafting, generate returns
    with the prefill token and exactly three rounds."""
    cancel = threading.Event()

    def stop_in_round_3(draft):
        inner = draft.forward
        calls = []

        def forward(**kwargs):
            calls.append(1)
            if len(calls) == 3:
                cancel.set()
            return inner(**kwargs)

        draft.forward = forward

    plain, ids, draft, items, finished = steered_run("whole", cancel=cancel, draft_hook=stop_in_round_3)
    assert finished.stopped and finished.error is None
    assert len(draft.last_telemetry.steps) == 3 and len(items) == 4
    assert finished.token_ids == [t for item in items for t in item.token_ids]
    assert finished.token_ids == plain[0, ids.shape[1]: ids.shape[1] + len(finished.token_ids)].tolist()
    assert len(finished.token_ids) < NEW_TOKENS


def test_stop_from_the_consumer_ends_a_long_run_early():
    target = tiny_qwen3_target()
    draft = DSparkDraft.from_pretrained(FIXTURES_DIR / "qwen3_dspark_vanilla", dtype=torch.float32).eval()
    ids = torch.randint(5, 300, (1, 10), generator=torch.Generator().manual_seed(7))
    run = StreamingGeneration(target, ids, generation_config(480, 0.0, "whole"), draft=draft)
    received = 0
    for item in run:
        if isinstance(item, Finished):
            break
        received += len(item.token_ids)
        if item.step == 1:
            run.stop()
    run.join(timeout=30)
    assert item.stopped and len(item.token_ids) == received < 480


def test_stop_before_start_leaves_only_the_prefill_token():
    target = tiny_qwen3_target()
    draft = DSparkDraft.from_pretrained(FIXTURES_DIR / "qwen3_dspark_vanilla", dtype=torch.float32).eval()
    ids = torch.randint(5, 300, (1, 10), generator=torch.Generator().manual_seed(8))
    cancel = threading.Event()
    cancel.set()
    items = list(StreamingGeneration(target, ids, generation_config(30, 0.0), draft=draft, cancel=cancel))
    assert items[-1].stopped and len(items[-1].token_ids) == 1 and len(items) == 2


def test_generate_errors_come_back_in_finished():
    target = tiny_qwen3_target()
    draft = DSparkDraft.from_pretrained(FIXTURES_DIR / "qwen3_dspark_vanilla", dtype=torch.float32).eval()
    ids = torch.randint(5, 300, (2, 10), generator=torch.Generator().manual_seed(9))  # a batch of 2: refused
    items = list(StreamingGeneration(target, ids, generation_config(5, 0.0), draft=draft))
    assert len(items) == 1 and items[0].token_ids is None and "one sequence" in str(items[0].error)


def test_empty_and_over_long_prompts_get_a_clear_message(smollm2_tokenizer):
    for empty in ("", "   \n ", None):
        with pytest.raises(PromptError, match="The prompt is empty"):
            prompt_ids(smollm2_tokenizer, empty)
    long_prompt = "word " * 50
    n = prompt_ids(smollm2_tokenizer, long_prompt).shape[1]
    with pytest.raises(PromptError, match=rf"too long: {n} tokens .* at most 20\. Shorten it"):
        prompt_ids(smollm2_tokenizer, long_prompt, max_prompt_tokens=20)
    with pytest.raises(PromptError, match=rf"{n} tokens .*100 new tokens.*150-token context.* at most 50\."):
        prompt_ids(smollm2_tokenizer, long_prompt, max_prompt_tokens=1000, max_new_tokens=100, window=150)
    ids = prompt_ids(smollm2_tokenizer, "Hello", max_prompt_tokens=1000, max_new_tokens=100, window=8192)
    assert smollm2_tokenizer.decode(ids[0]).endswith("<|im_start|>assistant\n")  # the chat template is applied


def test_pieces_concatenate_to_the_decoded_text(smollm2_tokenizer):
    text = "Naïve café 𝄞 漢字 costs 3€.\nNext line:\t«ok»"
    ids = smollm2_tokenizer(text).input_ids + [smollm2_tokenizer.eos_token_id]
    decoder = PieceDecoder(smollm2_tokenizer)
    pieces = decoder.add(ids[:5]) + decoder.add(ids[5:])
    assert len(pieces) == len(ids)
    assert "".join(pieces) == smollm2_tokenizer.decode(ids, skip_special_tokens=True) == text
    assert pieces[-1] == ""  # the special end token adds no text
    assert any(p == "" for p in pieces[:-1]), "the split characters should leave incomplete pieces"


def test_answer_html_shows_each_token_with_its_round_and_kind(smollm2_tokenizer):
    t = Transcript(smollm2_tokenizer)
    ids = smollm2_tokenizer("The sky is blue <b>").input_ids + [smollm2_tokenizer.eos_token_id]
    from dspark_hf.demo.provenance import StepTokens

    t.add(StepTokens(None, ids[:1], [TARGET], elapsed=0.1))
    t.add(StepTokens(0, ids[1:4], [DRAFT, DRAFT, CORRECTION], record(5, 2, 3, step=0), elapsed=0.2))
    t.add(StepTokens(1, ids[4:], [DRAFT] * (len(ids) - 5) + [BONUS], record(len(ids) - 5, len(ids) - 5, len(ids) - 4, step=1), elapsed=0.3))
    page = answer_html(t, "ans")
    assert "<b>" not in page and "&lt;b&gt;" in page  # model text is escaped
    steps = re.findall(r'<span class="dsp-step (even|odd)" data-step="([^"]+)"', page)
    assert steps == [("even", "prefill"), ("odd", "0"), ("even", "1")]
    kinds = re.findall(r'<span class="tok (\w+)', page)
    assert kinds == [TARGET, DRAFT, DRAFT, CORRECTION] + [DRAFT] * (len(ids) - 5) + [BONUS]
    assert 'class="tok bonus special"' in page and "&lt;|im_end|&gt;" in page
    data = json.loads(html.unescape(re.search(r'id="ans-data" hidden data-json="([^"]*)"', page).group(1)))
    assert data == json.loads(json.dumps(t.to_dict()))
    assert data["text"] == "The sky is blue <b>" and data["steps"][1]["kinds"][-1] == BONUS
    assert f">{t.tau:.2f}<" in stats_html(t)
    assert len(step_chart(t).axes[0].patches) == 3 * 2  # three bars per round


def test_policy_specs_resolve():
    from dspark_hf.verification.policies import resolve_policy

    specs = [policy_spec(n, 0.6, 4) for n in ("whole", "threshold", "survival", "fixed", "hardware", "online")]
    assert specs == ["whole", "threshold:0.6", "survival:0.6", "fixed:4", "hardware", "online"]
    for spec in specs:
        resolve_policy(spec)


def test_default_draft_is_the_shipped_one_when_present(monkeypatch):
    monkeypatch.setattr(demo_models, "shipped_draft_available", lambda: True)
    assert demo_models.resolve_names(None, None) == (None, None)
    assert demo_models.resolve_names(" ", "") == (None, None)
    assert demo_models.resolve_names("some/target", None) == ("some/target", "random")
    monkeypatch.setattr(demo_models, "shipped_draft_available", lambda: False)
    assert demo_models.resolve_names(None, None) == (None, "random")
    assert demo_models.resolve_names(None, "a/draft") == (None, "a/draft")


def test_shipped_draft_detection_follows_the_package_folder(monkeypatch, tmp_path):
    from dspark_hf.bundled import draft as embedded_draft

    monkeypatch.setattr(embedded_draft, "DEFAULT_DRAFT_DIR", tmp_path)
    assert not demo_models.shipped_draft_available()
    (tmp_path / "config.json").write_text("{}")
    assert demo_models.shipped_draft_available()


def test_registry_loads_once_and_keeps_the_most_recent_pairs():
    loads = []

    def loader(target, draft):
        loads.append((target, draft))
        return object()

    registry = demo_models.ModelRegistry(capacity=2, loader=loader)
    a = registry.get("t1", "d")
    assert registry.get("t1", "d") is a and loads == [("t1", "d")]
    registry.get("t2", "d")
    registry.get("t3", "d")  # evicts t1
    registry.get("t1", "d")
    assert loads == [("t1", "d"), ("t2", "d"), ("t3", "d"), ("t1", "d")]


def test_random_draft_is_the_same_every_time_and_leaves_the_rng_alone():
    target = tiny_qwen3_target()
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a, b = demo_models.random_draft(target.config), demo_models.random_draft(target.config)
    assert torch.equal(torch.rand(3), expected_next)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def test_dspark_demo_refuses_a_missing_draft_in_one_line(tmp_path, capsys):
    from dspark_hf.cli import main

    assert main(["demo", "--draft", str(tmp_path / "nope"), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"dspark demo: error: No draft checkpoint at {tmp_path / 'nope'}: the path does not exist."]


@pytest.fixture(scope="module")
def tiny_smollm2_shaped(smollm2_tokenizer):
    """A tiny random Llama with SmolLM2's vocabulary, so the real tokenizer and chat template apply."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(smollm2_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=6,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      eos_token_id=smollm2_tokenizer.eos_token_id, bos_token_id=smollm2_tokenizer.bos_token_id)
    target = LlamaForCausalLM(cfg).eval()
    registry = demo_models.ModelRegistry()
    registry.put(None, "random", demo_models.LoadedModels(target, smollm2_tokenizer, demo_models.random_draft(target.config),
                                                          "tiny", "random"))
    return registry, target


def run_handler(handlers, session, prompt, compare=False, max_tokens=10, policy="whole", temperature=0.0):
    from types import SimpleNamespace

    request = SimpleNamespace(session_hash=session)
    handlers.arm(request)
    return list(handlers.generate(prompt, policy, 0.5, 3, temperature, max_tokens, compare, [None, "random"], request))


def final_state(outputs):
    return re.search(r'data-state="(\w+)">([^<]*)<', outputs[-1][0]).groups()


def test_handler_streams_the_answer_and_compares_with_plain_decoding(tiny_smollm2_shaped, smollm2_tokenizer):
    from dspark_hf.demo.handlers import DemoHandlers

    registry, target = tiny_smollm2_shaped
    handlers = DemoHandlers(registry)
    outputs = run_handler(handlers, "s1", "Hello there", compare=True)
    state, message = final_state(outputs)
    assert state == "done" and "Same tokens as plain decoding" in message
    ids = prompt_ids(smollm2_tokenizer, "Hello there")
    plain = target.generate(ids, max_new_tokens=10, do_sample=False)[0, ids.shape[1]:].tolist()
    answer = json.loads(html.unescape(re.search(r'data-json="([^"]*)"', outputs[-1][1]).group(1)))
    assert answer["token_ids"] == plain
    assert [s["emitted"] for s in answer["steps"]] == [s.emitted for s in registry.get(None, "random").draft.last_telemetry.steps]
    assert sum(o[0].count('data-state="running"') for o in outputs) >= 2  # it streamed
    state, message = final_state(run_handler(handlers, "s1", "Hello there", policy="threshold", temperature=0.8))
    assert state == "done" and "threshold:0.5, sampling at temperature 0.8" in message


def test_handler_messages_for_bad_prompts_and_an_early_stop(tiny_smollm2_shaped):
    from types import SimpleNamespace

    from dspark_hf.demo.handlers import DemoHandlers

    registry, _ = tiny_smollm2_shaped
    handlers = DemoHandlers(registry, max_prompt_tokens=60)
    assert final_state(run_handler(handlers, "s1", "  ")) == ("error", "The prompt is empty: type a question or an instruction first.")
    state, message = final_state(run_handler(handlers, "s1", "word " * 40))
    assert state == "error" and "The prompt is too long" in message and "at most 60" in message
    # Stop clicked while the run waited in the queue: it ends before generating; other sessions are unaffected.
    request = SimpleNamespace(session_hash="s2")
    handlers.arm(request)
    handlers.stop(SimpleNamespace(session_hash="s2"))
    outputs = list(handlers.generate("Hi", "whole", 0.5, 3, 0.0, 10, False, [None, "random"], request))
    assert final_state(outputs) == ("stopped", "Stopped before it started.")
    assert final_state(run_handler(handlers, "s3", "Hi"))[0] == "done"
