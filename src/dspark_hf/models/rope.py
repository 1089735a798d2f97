"""Rotary position embeddings shared by the draft models (DSpark, EAGLE-3): inverse frequencies of a
config's ``rope_parameters`` / ``head_dim``, the cos/sin table, and their application to ``[B, heads, S, D]``."""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS


def inverse_frequencies(config) -> tuple[torch.Tensor, float]:
    """RoPE inverse frequencies of the draft's attention, and the attention scaling of its rope type."""
    params = config.rope_parameters
    rope_type = params.get("rope_type", "default")
    dim = config.head_dim
    base = float(params["rope_theta"])
    if rope_type == "default":
        return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim)), 1.0
    if rope_type == "proportional":
        # Gemma4 full attention: the first `partial_rotary_factor` of the angles rotate, with
        # frequencies of the full head dim; the rest have frequency 0 (identity).
        angles = int(params.get("partial_rotary_factor", 1.0) * dim // 2)
        rotated = 1.0 / (base ** (torch.arange(0, 2 * angles, 2, dtype=torch.float) / dim))
        inv_freq = torch.cat([rotated, torch.zeros(dim // 2 - angles)])
        return inv_freq / float(params.get("factor", 1.0)), 1.0
    # Scaled variants (linear, dynamic, yarn, llama3, longrope): transformers computes them.
    return ROPE_INIT_FUNCTIONS[rope_type](config, None)


class RotaryEmbedding(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        inv_freq, self.attention_scaling = inverse_frequencies(config)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    @torch.no_grad()
    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.to(position_ids.device)
        emb = torch.cat([freqs, freqs], dim=-1)
        return (emb.cos() * self.attention_scaling).to(dtype), (emb.sin() * self.attention_scaling).to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x [B, heads, S, D]``, ``cos``/``sin`` ``[B, S, D]``."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + rotate_half(x) * sin
