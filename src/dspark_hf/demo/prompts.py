"""The prompt as the target sees it, and the two ways a demo prompt can be refused.

:func:`prompt_ids` applies the tokenizer's chat template (one user turn, generation prompt added) and
raises :class:`PromptError` with one line for an empty prompt or one too long for the demo's limit or
for the target's context window together with the tokens asked for.
"""

from __future__ import annotations

import torch

from dspark_hf.errors import DSparkError

DEFAULT_MAX_PROMPT_TOKENS = 1024


class PromptError(DSparkError, ValueError):
    """A prompt the demo does not run; the message says why and what to do."""


def encode_prompt(tokenizer, prompt: str, chat_template: bool = True) -> torch.Tensor:
    """``[1, n]`` ids of ``prompt``: one user turn through the chat template when the tokenizer has one
    (as ``dspark generate`` does), else the raw text."""
    if not chat_template or not getattr(tokenizer, "chat_template", None):
        return tokenizer(prompt, return_tensors="pt").input_ids
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]


def context_window(model) -> int | None:
    """The target's maximum number of positions, when its config states one."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return getattr(config, "max_position_embeddings", None)


def prompt_ids(tokenizer, prompt: str | None, *, max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS,
               max_new_tokens: int = 0, window: int | None = None) -> torch.Tensor:
    """The prompt's ids, or :class:`PromptError` if it is empty or longer than allowed.

    Allowed: at most ``max_prompt_tokens`` tokens (chat template included), and with ``window`` (the
    target's context length) at most ``window - max_new_tokens``.
    """
    if prompt is None or not prompt.strip():
        raise PromptError("The prompt is empty: type a question or an instruction first.")
    ids = encode_prompt(tokenizer, prompt)
    limit = max_prompt_tokens
    reason = "this demo accepts"
    if window is not None and window - max_new_tokens < limit:
        limit = max(0, window - max_new_tokens)
        reason = f"with {max_new_tokens} new tokens, the target's {window}-token context leaves room for"
    if ids.shape[1] > limit:
        raise PromptError(
            f"The prompt is too long: {ids.shape[1]} tokens with the chat template; {reason} at most {limit}. "
            "Shorten it."
        )
    return ids
