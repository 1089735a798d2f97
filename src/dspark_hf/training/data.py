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
from typing import Any

from dspark_hf.errors import DataError
from dspark_hf.json_types import json_kind

__all__ = ["DataError", "Example", "check_record", "load_examples", "read_numbered_records", "read_records", "tokenize_record"]

ANSWER_KEYS = ("response", "answer", "completion")  # the names a prompt record may give its answer
RECORD_KEYS = ("prompt", "messages", "text", "input_ids")  # one of these makes a record
_SHAPES = "expected one of prompt, messages, text or input_ids"


@dataclass
class Example:
    """One training sequence: ``input_ids`` and ``assistant_mask`` (1 where a token is trained on)."""

    input_ids: list[int]
    assistant_mask: list[int]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_record(record: Any, where: str) -> None:
    """One :class:`DataError` line ``<where>: <what is wrong>`` unless ``record`` is one of the shapes of
    the module docstring with values of the right types (token ids are checked against the
    vocabulary by :func:`tokenize_record`, which knows it)."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: a record must be a JSON object, got {json_kind(record)}.")
    if not record:
        raise DataError(f"{where}: empty record; {_SHAPES}.")
    if not any(key in record for key in RECORD_KEYS):
        raise DataError(f"{where}: unknown record shape with keys {sorted(record)}; {_SHAPES}.")
    if "input_ids" in record:
        ids = record["input_ids"]
        if not isinstance(ids, list):
            raise DataError(f"{where}: input_ids must be a list of token ids, got {json_kind(ids)}.")
        if not ids:
            raise DataError(f"{where}: input_ids is empty.")
        for i, token in enumerate(ids):
            if not _is_int(token):
                raise DataError(f"{where}: input_ids[{i}] is {_shown(token)}; token ids are whole numbers.")
        if "assistant_mask" in record:
            mask = record["assistant_mask"]
            if not isinstance(mask, list):
                raise DataError(f"{where}: assistant_mask must be a list of 0 and 1, got {json_kind(mask)}.")
            if len(mask) != len(ids):
                raise DataError(f"{where}: assistant_mask has {len(mask)} values for {len(ids)} input_ids; they must match.")
            for i, m in enumerate(mask):
                if not (isinstance(m, (int, bool)) and m in (0, 1)):
                    raise DataError(f"{where}: assistant_mask[{i}] is {_shown(m)}; it must be 0 or 1.")
    for key in ("text", "prompt"):
        if key in record and not isinstance(record[key], str):
            raise DataError(f"{where}: {key} must be a string, got {json_kind(record[key])}.")
    if "prompt" in record:
        for key in ANSWER_KEYS:
            if record.get(key) is not None and not isinstance(record[key], str):
                raise DataError(f"{where}: {key} must be a string, got {json_kind(record[key])}.")
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list):
            raise DataError(f"{where}: messages must be a list of {{role, content}} objects, got {json_kind(messages)}.")
        if not messages:
            raise DataError(f"{where}: messages is empty; a chat needs at least one {{role, content}} turn.")
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                raise DataError(f"{where}: messages[{i}] must be an object with role and content, got {json_kind(message)}.")
            for key in ("role", "content"):
                if key not in message:
                    raise DataError(f"{where}: messages[{i}] has no {key}; each turn is {{\"role\": ..., \"content\": ...}}.")
                if not isinstance(message[key], str):
                    raise DataError(f"{where}: messages[{i}].{key} must be a string, got {json_kind(message[key])}.")


def read_numbered_records(path: str | Path) -> list[tuple[str, dict]]:
    """``(where, record)`` for every record of ``path`` (``where`` is ``<file>:<line>``), each checked
    by :func:`check_record`; a ``.txt`` file's documents become ``{"text"}`` records."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Training data file not found: {path}")
    if path.suffix == ".txt":
        text = path.read_text(encoding="utf-8")
        out, offset = [], 0
        for chunk in text.split("\n\n"):
            if chunk.strip():
                first_line = text.count("\n", 0, offset + len(chunk) - len(chunk.lstrip())) + 1
                out.append((f"{path}:{first_line}", {"text": chunk.strip()}))
            offset += len(chunk) + 2
        return out
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg}).") from None
            check_record(record, where)
            records.append((where, record))
    return records


def read_records(path: str | Path) -> list[dict]:
    """The records of a ``.jsonl``/``.json`` file or the documents of a ``.txt`` file (as ``{"text"}``),
    each checked (one ``<file>:<line>: ...`` line for the first bad one)."""
    return [record for _, record in read_numbered_records(path)]


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


def _template_ids(tokenizer, messages: list[dict], add_generation_prompt: bool, where: str = "record") -> list[int]:
    from jinja2 import TemplateError

    try:
        out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
    except TemplateError as err:
        raise DataError(f"{where}: the tokenizer's chat template refuses this chat: {err}") from None
    if hasattr(out, "keys") and "input_ids" in out:  # BatchEncoding
        out = out["input_ids"]
    return list(out)


def tokenize_chat(tokenizer, messages: list[dict], where: str = "record") -> Example:
    """Token ids of the whole chat and a mask over the tokens of its assistant turns (their content and
    end-of-turn tokens, not the role header)."""
    if tokenizer.chat_template is None:
        raise DataError(f"{where}: the target's tokenizer has no chat template; pass raw text ({{'text': ...}}) instead.")
    ids = _template_ids(tokenizer, messages, add_generation_prompt=False, where=where)
    mask = [0] * len(ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _template_ids(tokenizer, messages[:i], add_generation_prompt=True, where=where)
        through = _template_ids(tokenizer, messages[: i + 1], add_generation_prompt=False, where=where)
        if ids[: len(through)] != through or through[: len(before)] != before:
            raise DataError(f"{where}: the chat template does not render chats prefix by prefix; cannot find the assistant turns.")
        end = len(through)
        # The template may add a newline after the end-of-turn token: train up to the end-of-turn token.
        eos = tokenizer.eos_token_id
        if eos is not None and eos in through[len(before):]:
            end = len(before) + through[len(before):].index(eos) + 1
        for j in range(len(before), end):
            mask[j] = 1
    return Example(ids, mask)


def tokenize_record(tokenizer, record: dict, where: str = "record", vocab_size: int | None = None) -> Example:
    """One record as an :class:`Example` (see the module docstring for the shapes). ``where`` names the
    record in errors (``<file>:<line>``); pre-tokenized ids must lie in ``[0, vocab_size)``
    (default: the tokenizer's ``len``)."""
    check_record(record, where)
    if "input_ids" in record:
        ids = list(record["input_ids"])
        vocab = len(tokenizer) if vocab_size is None else vocab_size
        for i, token in enumerate(ids):
            if not 0 <= token < vocab:
                raise DataError(
                    f"{where}: input_ids[{i}] is {token}; token ids must lie in [0, {vocab - 1}] (the vocabulary has {vocab})."
                )
        mask = [int(m) for m in record.get("assistant_mask", [1] * len(ids))]
        return Example(ids, mask)
    if "text" in record:
        ids = tokenizer(record["text"], add_special_tokens=True)["input_ids"]
        return Example(list(ids), [1] * len(ids))
    return tokenize_chat(tokenizer, record_messages(record), where)


def load_examples(
    tokenizer, path: str | Path, max_length: int | None = None, min_trained: int = 2, vocab_size: int | None = None
) -> list[Example]:
    """Every record of ``path`` tokenized, cut to ``max_length`` tokens; sequences with fewer than
    ``min_trained`` trained tokens are dropped. Records that still need an answer raise: run
    self-distillation first. A bad record is one :class:`DataError` line ``<file>:<line>: ...``;
    ``vocab_size`` bounds pre-tokenized ids (default: the tokenizer's ``len``)."""
    examples = []
    for where, record in read_numbered_records(path):
        if needs_answer(record):
            raise DataError(
                f"{where}: a prompt without an answer; add the answers (ideally the target's "
                "own) or let the target write them with dspark train --self-distill."
            )
        example = tokenize_record(tokenizer, record, where, vocab_size)
        if max_length:
            example = Example(example.input_ids[:max_length], example.assistant_mask[:max_length])
        if sum(example.assistant_mask) >= min_trained:
            examples.append(example)
    if not examples:
        raise DataError(f"{path} gave no sequence with trained tokens.")
    return examples
