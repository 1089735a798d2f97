"""Fine-tuning data: JSON Lines of prompts with answers, or chats, as token ids with an answer mask.

One JSON object per line:

- ``{"prompt": "...", "answer": "..."}`` (``"response"`` or ``"completion"`` also name the answer);
- ``{"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}, ...]}``.

Both go through the tokenizer's chat template; every assistant turn's tokens (as the template renders
them after the generation prompt, up to and including the end-of-turn token) are the ones trained on. Without a chat template, prompt and answer are
concatenated as plain text (answer tokens trained on). Best results come from answers the target itself
wrote for the new domain's prompts (the reference recipe regenerates them with the target).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import DSparkError

ANSWER_KEYS = ("answer", "response", "completion")


class FinetuneDataError(DSparkError, ValueError):
    """The fine-tuning data cannot be read: missing file, bad JSON, a record with no answer."""


@dataclass
class Example:
    """One sequence: ``input_ids`` and ``assistant_mask`` (1 on the tokens trained on)."""

    input_ids: list[int]
    assistant_mask: list[int]


def record_chat(record: dict, where: str) -> list[dict]:
    """The chat of a record, ending on an assistant turn."""
    if "messages" in record:
        messages = list(record["messages"])
    elif "prompt" in record:
        answer = next((record[k] for k in ANSWER_KEYS if k in record), None)
        if answer is None:
            raise FinetuneDataError(f"{where}: a prompt without an answer; add \"answer\" (ideally the target's own).")
        messages = [{"role": "user", "content": record["prompt"]}, {"role": "assistant", "content": answer}]
    else:
        raise FinetuneDataError(f"{where}: expected \"prompt\" + \"answer\" or \"messages\", got keys {sorted(record)}.")
    if not any(m.get("role") == "assistant" for m in messages):
        raise FinetuneDataError(f"{where}: the chat has no assistant turn to train on.")
    return messages


def _render(tokenizer, messages: list[dict], generation_prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def tokenize_chat(tokenizer, messages: list[dict], where: str = "record") -> Example:
    """Token ids of the chat and the mask of its assistant turns."""
    if not getattr(tokenizer, "chat_template", None):
        text_ids: list[int] = []
        mask: list[int] = []
        for m in messages:
            part = tokenizer(m["content"], add_special_tokens=False)["input_ids"]
            text_ids += part
            mask += [int(m["role"] == "assistant")] * len(part)
        return Example(text_ids, mask)
    ids = _render(tokenizer, messages, False)
    mask = [0] * len(ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], True)
        start, end = len(before), len(_render(tokenizer, messages[: i + 1], False))
        if end > len(ids) or start > end or ids[:start] != before:
            raise FinetuneDataError(
                f"{where}: the chat template does not render this chat turn by turn; give one prompt and answer per line."
            )
        eos = tokenizer.eos_token_id  # generation stops at end-of-turn: what the template adds after it is not trained
        if eos is not None and eos in ids[start:end]:
            end = ids.index(eos, start, end) + 1
        mask[start:end] = [1] * (end - start)
    return Example(ids, mask)


def load_finetune_examples(tokenizer, path: str | Path, max_length: int = 1024) -> list[Example]:
    """Every record of a ``.jsonl`` file, tokenized and cut to ``max_length`` tokens; records left with
    fewer than two answer tokens are dropped (no block can be anchored on them)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FinetuneDataError(f"No fine-tuning data at {path}.")
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise FinetuneDataError(f"{path}:{number}: not valid JSON ({err.msg}).") from None
        example = tokenize_chat(tokenizer, record_chat(record, f"{path}:{number}"), f"{path}:{number}")
        example = Example(example.input_ids[:max_length], example.assistant_mask[:max_length])
        if sum(example.assistant_mask) >= 2:
            examples.append(example)
    if not examples:
        raise FinetuneDataError(f"{path} holds no record with at least two answer tokens.")
    return examples
