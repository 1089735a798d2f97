"""Prompt sets for ``dspark bench``: JSON Lines files whose lines are ``{"turns": [...]}``.

A set is named either by a file name in the prompt folder (``gsm8k`` -> ``<folder>/gsm8k.jsonl``; the
folder is ``--datasets-dir``, else ``$DSPARK_EVAL_DATASETS_DIR``, else ``shared/eval_datasets``
beside the checkout) or by a path to a ``.jsonl`` file. Only the first turn is used, with the chat
template applied (:func:`dspark_hf.eval_prompts.encode`).
"""

from __future__ import annotations

from pathlib import Path

from dspark_hf.eval_prompts import encode, load_prompts
from dspark_hf.errors import DSparkError


def load_prompt_set(spec: str, limit: int | None = None, folder: str | None = None, start: int = 0) -> tuple[str, list[str]]:
    """``(name, first turns)`` of at most ``limit`` prompts, from the one at index ``start`` (0-based, in
    file order), of a set name or a ``.jsonl`` path."""
    path = Path(spec).expanduser()
    if spec.endswith(".jsonl") or path.is_file():
        if not path.is_file():
            raise DSparkError(f"No prompt file {path}.")
        name, folder = path.stem, str(path.parent)
    else:
        name = spec
    try:
        prompts = load_prompts(name, start, limit, folder)
    except (KeyError, IndexError, ValueError, TypeError) as err:
        raise DSparkError(f"Prompt set {spec!r} is not JSON Lines of {{\"turns\": [...]}} ({type(err).__name__}: {err}).") from None
    if not prompts:
        raise DSparkError(f"Prompt set {spec!r} has no prompts" + (f" from index {start}." if start else "."))
    return name, prompts


def encode_prompts(tokenizer, prompts: list[str], device=None) -> list:
    """``[1, n]`` input ids per prompt (single user turn, chat template when the tokenizer has one)."""
    return [encode(tokenizer, p).to(device) if device is not None else encode(tokenizer, p) for p in prompts]


__all__ = ["encode_prompts", "load_prompt_set"]
