"""Training data: JSON Lines of prompts or chats, or plain text, turned into token ids and a loss mask.

Accepted records (one JSON object per line):

- ``{"prompt": "..."}`` — a single user turn with no answer yet (needs self-distillation);
  ``{"prompt": "...", "response": "..."}`` (or ``"answer"`` / ``"completion"``) — a turn and its answer;
- ``{"messages": [{"role": ..., "content": ...}, ...]}`` — a chat; assistant turns are trained on, and a
  chat that ends on a user turn needs self-distillation;
- ``{"input_ids": [...], "assistant_mask": [...]}`` — already tokenized (what self-distillation writes,
  next to its ``messages``); used as is;
- ``{"text": "..."}`` — raw text, every token trained on.

A ``.txt`` file holds raw-text documents separated by blank lines. Chats go through the tokenizer's chat
template; the trained span of each assistant turn is found by rendering the chat up to that turn with
and without it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dspark_hf.errors import DSparkError


ANSWER_KEYS = ("response", "answer", "completion")  # the names a prompt record may give its answer


class DataError(DSparkError, ValueError):
    """The training data cannot be read (missing file, bad JSON, unknown record shape)."""


@dataclass
class Example:
    """One training sequence: ``input_ids`` and ``assistant_mask`` (1 where a token is trained on)."""

    input_ids: list[int]
    assistant_mask: list[int]


def read_records(path: str | Path) -> list[dict]:
    """The records of a ``.jsonl``/``.json`` file or the documents of a ``.txt`` file (as ``{"text"}``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Training data file not found: {path}")
    if path.suffix == ".txt":
        docs = [d.strip() for d in path.read_text(encoding="utf-8").split("\n\n")]
        return [{"text": d} for d in docs if d]
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid JSON ({exc.msg}).") from None
    return records


def record_messages(record: dict) -> list[dict] | None:
    """The chat of a prompt/chat record (``None`` for raw text or pre-tokenized records)."""
    if "messages" in record:
        return list(record["messages"])
    if "prompt" in record:
        messages = [{"role": "user", "content": record["prompt"]}]
        answer = next((record[key] for key in ANSWER_KEYS if key in record), None)
        if answer is not None:
            messages.append({"role": "assistant", "content": answer})
        return messages
    return None


def needs_answer(record: dict) -> bool:
    """True when the record's chat ends on a user turn (self-distillation must answer it)."""
    if "input_ids" in record:
        return False
    messages = record_messages(record)
    return messages is not None and messages[-1]["role"] != "assistant"


def _template_ids(tokenizer, messages: list[dict], add_generation_prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
    if hasattr(out, "keys") and "input_ids" in out:  # BatchEncoding
        out = out["input_ids"]
    return list(out)


def tokenize_chat(tokenizer, messages: list[dict]) -> Example:
    """Token ids of the whole chat and a mask over the tokens of its assistant turns (their content and
    end-of-turn tokens, not the role header)."""
    if tokenizer.chat_template is None:
        raise DataError("The target's tokenizer has no chat template; pass raw text ({'text': ...}) instead.")
    ids = _template_ids(tokenizer, messages, add_generation_prompt=False)
    mask = [0] * len(ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _template_ids(tokenizer, messages[:i], add_generation_prompt=True)
        through = _template_ids(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if ids[: len(through)] != through or through[: len(before)] != before:
            raise DataError("The chat template does not render chats prefix by prefix; cannot find the assistant turns.")
        end = len(through)
        # The template may add a newline after the end-of-turn token: train up to the end-of-turn token.
        eos = tokenizer.eos_token_id
        if eos is not None and eos in through[len(before):]:
            end = len(before) + through[len(before):].index(eos) + 1
        for j in range(len(before), end):
            mask[j] = 1
    return Example(ids, mask)


def tokenize_record(tokenizer, record: dict) -> Example:
    """One record as an :class:`Example` (see the module docstring for the shapes)."""
    if "input_ids" in record:
        ids = [int(t) for t in record["input_ids"]]
        mask = [int(m) for m in record.get("assistant_mask", [1] * len(ids))]
        if len(mask) != len(ids):
            raise DataError("A record's assistant_mask and input_ids differ in length.")
        return Example(ids, mask)
    if "text" in record:
        ids = tokenizer(record["text"], add_special_tokens=True)["input_ids"]
        return Example(list(ids), [1] * len(ids))
    messages = record_messages(record)
    if messages is None:
        raise DataError(f"Unknown record shape with keys {sorted(record)}; expected prompt, messages, text or input_ids.")
    return tokenize_chat(tokenizer, messages)


def load_examples(tokenizer, path: str | Path, max_length: int | None = None, min_trained: int = 2) -> list[Example]:
    """Every record of ``path`` tokenized, cut to ``max_length`` tokens; sequences with fewer than
    ``min_trained`` trained tokens are dropped. Records that still need an answer raise: run
    self-distillation first."""
    examples = []
    for number, record in enumerate(read_records(path), 1):
        if needs_answer(record):
            raise DataError(
                f"{path}: record {number} is a prompt without an answer; add the answers (ideally the target's "
                "own) or let the target write them with dspark train --self-distill."
            )
        example = tokenize_record(tokenizer, record)
        if max_length:
            example = Example(example.input_ids[:max_length], example.assistant_mask[:max_length])
        if sum(example.assistant_mask) >= min_trained:
            examples.append(example)
    if not examples:
        raise DataError(f"{path} gave no sequence with trained tokens.")
    return examples
