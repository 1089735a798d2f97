"""The greedy identity check: a speculative output must equal plain greedy generation token for token."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass
class Mismatch:
    """Where a method's output left plain generation's: ``first_difference`` is the index among the new
    tokens (``None`` when one output is a strict prefix of the other), with both lengths."""

    dataset: str
    prompt_index: int
    method: str
    first_difference: int | None
    expected_tokens: int
    got_tokens: int

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        where = f"at new token {self.first_difference}" if self.first_difference is not None else "in length"
        return (f"{self.method} differs from plain generation on {self.dataset} prompt {self.prompt_index} {where} "
                f"({self.got_tokens} vs {self.expected_tokens} new tokens)")


def compare_outputs(expected: torch.Tensor, got: torch.Tensor, prompt_length: int) -> tuple[bool, int | None]:
    """``(identical, first differing new-token index or None)`` of two ``[1, n]`` output id tensors."""
    a, b = expected[0, prompt_length:].cpu(), got[0, prompt_length:].cpu()
    if a.shape == b.shape and torch.equal(a, b):
        return True, None
    n = min(a.numel(), b.numel())
    diff = (a[:n] != b[:n]).nonzero()
    return False, int(diff[0, 0]) if diff.numel() else None


def check_identity(dataset: str, prompt_index: int, method: str, expected, got, prompt_length: int) -> Mismatch | None:
    """``None`` when ``got`` equals ``expected``, else the :class:`Mismatch` to report and flag."""
    same, first = compare_outputs(expected, got, prompt_length)
    if same:
        return None
    return Mismatch(dataset, prompt_index, method, first, int(expected.shape[1] - prompt_length), int(got.shape[1] - prompt_length))
