"""Training data: record shapes, assistant masks through the chat template, self-distillation with the
feature cache filled from the generation forwards."""

import json

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from dspark_hf.bundled.target import default_target_dir
from dspark_hf.training.data import DataError, load_examples, read_records, tokenize_record
from dspark_hf.training.self_distill import SamplingConfig, self_distill
from dspark_hf.training.target_outputs import FeatureCache, OnlineTargetOutputs


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(default_target_dir())


def tiny_answerer(tokenizer, layers: int) -> LlamaForCausalLM:
    """A seeded tiny random Llama over the SmolLM2 tokenizer's vocabulary (one thread), for self-distillation."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    return LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)).eval()


def test_chat_mask_covers_assistant_content_and_end_of_turn_only(tokenizer):
    record = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"},
                           {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye"}]}
    ex = tokenize_record(tokenizer, record)
    trained = [tokenizer.decode([t]) for t, m in zip(ex.input_ids, ex.assistant_mask) if m]
    assert "".join(trained) == "Hello there<|im_end|>Goodbye<|im_end|>"


def test_prompt_response_text_and_token_records(tokenizer, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": "Hi", "response": "Hello"},
        {"text": "plain text is trained everywhere"},
        {"input_ids": [1, 2, 3, 4], "assistant_mask": [0, 1, 1, 1]},
    ]))
    a, b, c = load_examples(tokenizer, path)
    assert tokenizer.decode([t for t, m in zip(a.input_ids, a.assistant_mask) if m]) == "Hello<|im_end|>"
    assert all(b.assistant_mask) and c.input_ids == [1, 2, 3, 4]
    txt = tmp_path / "d.txt"
    txt.write_text("first doc\n\nsecond doc\n")
    assert [r["text"] for r in read_records(txt)] == ["first doc", "second doc"]


def test_a_prompt_answer_may_be_named_response_answer_or_completion(tokenizer, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"prompt": "Hi", key: "Hello"}) + "\n" for key in ("response", "answer", "completion")))
    a, b, c = load_examples(tokenizer, path)
    assert a == b == c and tokenizer.decode([t for t, m in zip(a.input_ids, a.assistant_mask) if m]) == "Hello<|im_end|>"


def test_prompts_without_answers_ask_for_self_distillation(tokenizer, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "Hi"}) + "\n")
    with pytest.raises(DataError, match="--self-distill"):
        load_examples(tokenizer, path)


def test_self_distillation_writes_target_tokens_and_caches_generation_features(tokenizer, tmp_path):
    target = tiny_answerer(tokenizer, layers=3)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["Hi", "What is two plus two?", "Tell me a story."]))
    cache = FeatureCache(tmp_path / "cache", [0, 1], dtype=torch.float32)
    out = self_distill(target, tokenizer, prompts, tmp_path / "d.jsonl", SamplingConfig(max_new_tokens=6, batch_size=3),
                       feature_cache=cache, layer_ids=[0, 1])
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["index"] for line in lines) == [0, 1, 2]
    online = OnlineTargetOutputs(target, [0, 1])
    for line in lines:
        ids = line["input_ids"]
        prompt_len = len(tokenizer.apply_chat_template(line["messages"][:1], add_generation_prompt=True, return_dict=True)["input_ids"])
        assert line["assistant_mask"] == [0] * prompt_len + [1] * (len(ids) - prompt_len)
        # greedy: the answer is the target's own continuation
        expected = target.generate(torch.tensor([ids[:prompt_len]]), max_new_tokens=len(ids) - prompt_len, do_sample=False)
        assert expected[0].tolist() == ids
        cached, fresh = cache.get(ids), online(ids)
        # left-padded batched forwards vs one unpadded forward: float32, atol 1e-4; last position not stored
        torch.testing.assert_close(cached.features[:-1], fresh.features[:-1], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(cached.final_hidden[:-1], fresh.final_hidden[:-1], atol=1e-4, rtol=1e-4)
    # rerunning skips what is done
    self_distill(target, tokenizer, prompts, out, SamplingConfig(max_new_tokens=6, batch_size=3))
    assert len(out.read_text().splitlines()) == 3


def test_sharded_self_distillation_splits_the_prompts_and_a_plain_run_merges_them(tokenizer, tmp_path):
    """Two shards answer disjoint prompts (index modulo 2), skip what the main file already holds, and a
    run without a shard merges their lines (each index once, equal to an unsharded run's) and deletes
    the parts; a line cut short by a kill is answered again.
    Mutation run once: filtering on ``index % n == i`` removed (both shards answer every prompt) fails
    the disjointness assertion."""
    target = tiny_answerer(tokenizer, layers=2)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Count to {n}."}) + "\n" for n in range(5)))
    sampling = SamplingConfig(max_new_tokens=4, batch_size=1)
    whole = self_distill(target, tokenizer, prompts, tmp_path / "whole" / "d.jsonl", sampling)
    reference = {json.loads(line)["index"]: json.loads(line) for line in whole.read_text().splitlines()}

    out = tmp_path / "sd" / "d.jsonl"
    out.parent.mkdir()
    out.write_text(json.dumps(reference[0]) + "\n")  # answered before the shards started
    parts = [self_distill(target, tokenizer, prompts, out, sampling, shard=(i, 2)) for i in range(2)]
    answered = [sorted(json.loads(line)["index"] for line in part.read_text().splitlines()) for part in parts]
    assert answered == [[2, 4], [1, 3]]
    parts[1].write_text(parts[1].read_text() + '{"index": 9, "messa')  # a writer killed mid-line
    self_distill(target, tokenizer, prompts, out, sampling)
    merged = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["index"] for line in merged) == [0, 1, 2, 3, 4]
    assert {line["index"]: line for line in merged} == reference
    assert not list(out.parent.glob("d.part-*"))
