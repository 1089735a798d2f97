"""Draft vocabularies: which target tokens a reduced-vocabulary draft can propose.

A token-count file is a JSON object ``{"<target token id>": count, ...}`` (as ``dspark train --draft-vocab``
writes next to the draft, counted over the training answers). :func:`top_tokens` picks the ``K`` most
frequent (ties broken by the smaller id), always keeping the ``required`` ids (the end-of-turn tokens).
:func:`spread_to_vocabulary` puts a reduced draft's K logits back on the target's ids.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch

from dspark_hf.errors import DataError

TOKEN_COUNTS_NAME = "token_counts.json"


def spread_to_vocabulary(logits: torch.Tensor, ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Logits over a draft vocabulary ``[..., K]`` (target ids ``ids [K]``) -> over the target's ``[..., vocab_size]``,
    ``-inf`` (probability 0) outside it."""
    full = logits.new_full((*logits.shape[:-1], vocab_size), float("-inf"))
    full[..., ids.to(logits.device)] = logits
    return full


def count_tokens(sequences: Iterable[Iterable[int]]) -> Counter:
    counts: Counter = Counter()
    for tokens in sequences:
        counts.update(int(t) for t in tokens)
    return counts


def write_token_counts(counts: Counter, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps({str(k): int(v) for k, v in sorted(counts.items())}) + "\n", encoding="utf-8")
    return path


def read_token_counts(path: str | Path, vocab_size: int | None = None) -> Counter:
    """The counts of a token-count file; one :class:`DataError` line if it is missing or malformed."""
    path = Path(path)
    if path.is_dir():
        path = path / TOKEN_COUNTS_NAME
    if not path.is_file():
        raise DataError(f"No token-count file at {path}.")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a JSON token-count file ({err.__class__.__name__}: {err}).") from None
    if not isinstance(raw, dict) or not raw:
        raise DataError(f'{path}: a token-count file is a non-empty JSON object {{"<token id>": count}}.')
    counts: Counter = Counter()
    for key, value in raw.items():
        if not (isinstance(key, str) and key.isdigit()) or not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise DataError(f"{path}: entry {key!r}: {value!r} is not a token id with a count >= 0.")
        token = int(key)
        if vocab_size is not None and token >= vocab_size:
            raise DataError(f"{path}: token id {token} is outside the target's vocabulary of {vocab_size}.")
        counts[token] = value
    return counts


def end_of_turn_ids(model) -> list[int]:
    """``model.generation_config.eos_token_id`` as a list (empty when unset): the ids a vocabulary keeps."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        return []
    return list(eos) if isinstance(eos, (list, tuple)) else [eos]


def top_tokens(counts: Counter, k: int, required: Iterable[int] = ()) -> list[int]:
    """The ``k`` most frequent ids (``required`` ones always in), sorted by id."""
    if k < 1:
        raise DataError(f"--draft-vocab must be at least 1, got {k}.")
    keep = list(dict.fromkeys(int(t) for t in required))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    for token, _ in ranked:
        if len(keep) >= k:
            break
        if token not in keep:
            keep.append(token)
    return sorted(keep[:max(k, len(set(required)))])
