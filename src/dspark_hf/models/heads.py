"""The sequential (Markov) heads and the confidence head of a DSpark draft.

The parallel backbone gives base logits for every slot of the block at once. A sequential head then
adds, slot by slot, a bias that depends on the token drawn in the previous slot, so that the block is
drawn left to right from corrected logits ``base_k + bias(prev_k, h_k)`` with ``prev_0`` the anchor.

Three heads, named as in the released checkpoints (``markov_head.*``):

- ``vanilla``: ``bias = W2 @ W1[prev]`` (a rank-``r`` bigram table);
- ``gated``: the embedding is scaled by ``sigmoid(gate_proj([h_k ; W1[prev]]))``;
- ``rnn``: a GRU-like state ``s_k`` over the block, ``joint_proj([s_{k-1} ; W1[prev] ; h_k])`` gives the
  gate, the candidate state and the output that ``W2`` projects to the bias.

The confidence head (``confidence_head.proj``) maps ``[h_k ; W1[prev_k]]`` (or ``h_k`` alone) to one
logit: ``sigmoid`` of it estimates the probability that slot ``k`` survives verification given that all
earlier slots did. It depends on ``prev_k`` but never on the token drawn in slot ``k`` itself.
"""

from __future__ import annotations

import torch
from torch import nn


class SequentialHead(nn.Module):
    """Base class: the vanilla rank-``r`` Markov head.

    Contract: :meth:`step` returns the bias for one slot (``[..., vocab]``) and the recurrent state to
    pass to the next slot (``None`` for stateless heads); :meth:`teacher_forced` returns the biases of a
    whole block given its previous tokens (training, and checks against the reference).
    """

    head_type = "vanilla"

    def __init__(self, vocab_size: int, rank: int, hidden_size: int, output_size: int | None = None) -> None:
        super().__init__()
        self.rank = rank
        self.markov_w1 = nn.Embedding(vocab_size, rank)  # indexed by the previous token's (target) id
        self.markov_w2 = nn.Linear(rank, output_size or vocab_size, bias=False)  # one bias per output logit

    def prev_embedding(self, prev_ids: torch.Tensor) -> torch.Tensor:
        return self.markov_w1(prev_ids.long())

    def initial_state(self, like: torch.Tensor) -> torch.Tensor | None:
        return None

    def step(
        self, prev_ids: torch.Tensor, hidden: torch.Tensor, state: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.markov_w2(self.prev_embedding(prev_ids)), None

    def teacher_forced(self, prev_ids: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Biases for ``prev_ids [..., K]`` and ``hidden [..., K, H]``; stateless heads vectorise."""
        return self.step(prev_ids, hidden, None)[0]


class GatedSequentialHead(SequentialHead):
    head_type = "gated"

    def __init__(self, vocab_size: int, rank: int, hidden_size: int, output_size: int | None = None) -> None:
        super().__init__(vocab_size, rank, hidden_size, output_size)
        self.gate_proj = nn.Linear(hidden_size + rank, rank)

    def step(self, prev_ids, hidden, state):
        prev = self.prev_embedding(prev_ids)
        gate = torch.sigmoid(self.gate_proj(torch.cat([hidden, prev], dim=-1))).to(prev.dtype)
        return self.markov_w2(gate * prev), None


class RNNSequentialHead(SequentialHead):
    head_type = "rnn"

    def __init__(self, vocab_size: int, rank: int, hidden_size: int, output_size: int | None = None) -> None:
        super().__init__(vocab_size, rank, hidden_size, output_size)
        self.joint_proj = nn.Linear(2 * rank + hidden_size, 3 * rank)

    def initial_state(self, like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros(*like.shape[:-1], self.rank)

    def step(self, prev_ids, hidden, state):
        if state is None:
            state = self.initial_state(hidden)
        joint = self.joint_proj(torch.cat([state, self.prev_embedding(prev_ids), hidden], dim=-1))
        gate_raw, candidate_raw, output_raw = joint.chunk(3, dim=-1)
        gate = torch.sigmoid(gate_raw)
        new_state = gate * state + (1.0 - gate) * torch.tanh(candidate_raw)
        return self.markov_w2(torch.tanh(output_raw)), new_state

    def teacher_forced(self, prev_ids, hidden):
        state = self.initial_state(hidden[..., 0, :])
        biases = []
        for k in range(prev_ids.shape[-1]):
            bias, state = self.step(prev_ids[..., k], hidden[..., k, :], state)
            biases.append(bias)
        return torch.stack(biases, dim=-2)


SEQUENTIAL_HEADS: dict[str, type[SequentialHead]] = {
    "vanilla": SequentialHead,
    "gated": GatedSequentialHead,
    "rnn": RNNSequentialHead,
}


def build_sequential_head(config) -> SequentialHead | None:
    """The head ``config`` asks for, or ``None`` for the DFlash variant (``markov_rank == 0``). Its biases
    cover the draft's output vocabulary (``draft_vocab_size`` when set)."""
    if config.markov_rank == 0:
        return None
    output = getattr(config, "draft_vocab_size", None)
    return SEQUENTIAL_HEADS[config.markov_head_type](config.vocab_size, config.markov_rank, config.hidden_size, output)


class ConfidenceHead(nn.Module):
    """``proj: Linear(H [+ r] -> 1)``; returns pre-sigmoid logits ``[...]`` in float32."""

    def __init__(self, input_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(input_dim, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(features).squeeze(-1).float()
