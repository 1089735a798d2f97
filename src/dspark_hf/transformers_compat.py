"""The few places where supported transformers releases differ, in one module.

transformers 5.24 renamed the cache keyword of model forwards and of the generation loop's
``model_kwargs`` from ``past_key_values`` to ``cache`` (the old name warns until 5.40) and dropped
``cache_position`` from decoder forwards. dspark_hf supports releases on both sides of that change, so
code that calls a transformers model, or reads the cache transformers hands a candidate generator,
goes through these helpers instead of naming either keyword.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from torch import nn

CACHE_KEYWORDS = ("cache", "past_key_values")


def generation_cache(model_kwargs: dict[str, Any] | None):
    """The target's cache in the generation loop's ``model_kwargs`` (``cache`` on transformers >= 5.24,
    ``past_key_values`` before), or ``None``."""
    for key in CACHE_KEYWORDS:
        if model_kwargs and model_kwargs.get(key) is not None:
            return model_kwargs[key]
    return None


@functools.lru_cache(maxsize=None)
def _forward_parameters(forward) -> frozenset[str]:
    return frozenset(inspect.signature(forward).parameters)


def forward_parameters(module: nn.Module) -> frozenset[str]:
    """Names of ``module.forward``'s parameters (cached per forward function)."""
    return _forward_parameters(type(module).forward)


def cache_keyword(module: nn.Module) -> str:
    """``"cache"`` where ``module.forward`` takes it (transformers >= 5.24), else ``"past_key_values"``."""
    return "cache" if "cache" in forward_parameters(module) else "past_key_values"


def cache_kwargs(module: nn.Module, cache, cache_position=None) -> dict[str, Any]:
    """Keyword arguments that hand ``cache`` (and ``cache_position``, where the forward still takes it)
    to ``module``'s forward under the name this transformers release uses."""
    kwargs: dict[str, Any] = {cache_keyword(module): cache}
    if cache_position is not None and "cache_position" in forward_parameters(module):
        kwargs["cache_position"] = cache_position
    return kwargs
