"""The output of one drafting forward, shared by every draft model (DSpark, DFlash, DeepSeek-V4)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class DSparkBlockOutput(ModelOutput):
    """``last_hidden_state`` ``[B, Q, H]`` after the final norm; ``logits`` ``[B, Q, V]`` base logits
    (before the sequential head; Gemma4: after soft-capping)."""

    last_hidden_state: torch.Tensor | None = None
    logits: torch.Tensor | None = None
