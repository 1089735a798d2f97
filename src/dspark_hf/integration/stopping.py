"""Stopping inside a drafted block: ``stop_strings`` and custom ``StoppingCriteria`` stay exact.

transformers' assisted-decoding loop appends a whole round (accepted draft tokens + the target's own
token) and only then asks the stopping criteria, on the full sequence. Plain ``generate`` asks after
every token, so a stop string completed by an accepted draft token in the middle of a round is seen
by plain decoding and missed by the loop (which then runs on). :class:`RoundStops` closes the gap:

- the candidate generator verifies no draft token past the first one that would stop generation
  (:meth:`RoundStops.first_stop` on the drafted continuation); the stopping token itself is still
  verified, and whether to verify it depends only on the tokens before it, so speculative sampling
  stays lossless;
- as a stopping criterion of the loop, it checks every prefix the round added and stops at the first
  that stops (so a round whose stopping draft token was accepted, followed by the target's bonus
  token, ends generation);
- :meth:`trim` cuts the returned sequences (and scores, logits, attentions, hidden states, cache) back
  to that first stop, and :meth:`streamer` passes a streamer only the tokens up to it.

EOS and ``max_length`` are handled by transformers itself and time limits (``max_time``) cannot be
replayed on prefixes, so those criteria are left to the loop. The others are called on prefixes of
drafted continuations as well as of the output; they should be functions of the token ids (as
``StopStringCriteria`` and most custom criteria are).
"""

from __future__ import annotations

from contextvars import ContextVar

import torch
from transformers.generation.stopping_criteria import (
    EosTokenCriteria,
    MaxLengthCriteria,
    MaxTimeCriteria,
    StoppingCriteria,
    StoppingCriteriaList,
)

_LOOP_HANDLED = (EosTokenCriteria, MaxLengthCriteria, MaxTimeCriteria)

# The RoundStops of the assisted-decoding call running in this thread / context, for the candidate
# generator made inside it (set and reset by the generation hook).
ACTIVE_STOPS: ContextVar["RoundStops | None"] = ContextVar("dspark_active_stops", default=None)


class RoundStops(StoppingCriteria):
    """The stopping criteria of one ``generate`` call that must be checked token by token."""

    def __init__(self, stopping_criteria: StoppingCriteriaList | None, prompt_length: int) -> None:
        self.criteria = StoppingCriteriaList([c for c in (stopping_criteria or []) if not isinstance(c, _LOOP_HANDLED)])
        self.prompt_length = prompt_length
        self.checked = prompt_length  # prefixes up to this length have been checked
        self.stop_at: int | None = None  # length of the output at the first stop

    @property
    def active(self) -> bool:
        return len(self.criteria) > 0

    def _stops(self, sequence: torch.LongTensor) -> bool:
        return bool(self.criteria(sequence, None).any())

    def first_stop(self, sequence: torch.LongTensor, start: int) -> int | None:
        """The smallest length ``k`` in ``start + 1 .. len(sequence)`` at which ``sequence[:, :k]`` stops
        generation, or ``None``."""
        for length in range(start + 1, sequence.shape[1] + 1):
            if self._stops(sequence[:, :length]):
                return length
        return None

    def observe(self, sequence: torch.LongTensor) -> int | None:
        """Check the prefixes ``sequence`` added since the last call; the first stop, once found, stays."""
        if self.stop_at is None and self.active and sequence.shape[1] > self.checked:
            self.stop_at = self.first_stop(sequence, self.checked)
        self.checked = max(self.checked, sequence.shape[1])
        return self.stop_at

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        stopped = self.observe(input_ids) is not None
        return torch.full((input_ids.shape[0],), stopped, dtype=torch.bool, device=input_ids.device)

    def streamer(self, streamer, input_ids: torch.LongTensor):
        """``streamer`` receiving only the tokens up to the first stop (``None`` stays ``None``)."""
        return None if streamer is None or not self.active else _StopAwareStreamer(streamer, self, input_ids)

    def trim(self, output):
        """``generate``'s output cut back to the first stop (unchanged when there was none)."""
        if self.stop_at is None:
            return output
        keep = self.stop_at
        if isinstance(output, torch.Tensor):
            return output[:, :keep] if output.shape[1] > keep else output
        if output.sequences.shape[1] <= keep:
            return output
        new_tokens = keep - self.prompt_length
        output.sequences = output.sequences[:, :keep]
        for name in ("scores", "logits", "attentions", "hidden_states"):
            value = getattr(output, name, None)
            if isinstance(value, tuple):
                setattr(output, name, value[:new_tokens])
        for name in ("cache", "past_key_values"):
            cache = getattr(output, name, None)
            if cache is not None and hasattr(cache, "crop"):
                excess = cache.get_seq_length() - (keep - 1)  # plain decoding caches all but the last token
                if excess > 0:
                    cache.crop(-excess)  # a negative count removes that many positions (every supported release)
        return output


class _StopAwareStreamer:
    """Forwards ``put`` to ``streamer`` up to the first stop, nothing after it; ``end`` as is."""

    def __init__(self, streamer, stops: RoundStops, input_ids: torch.LongTensor) -> None:
        self.streamer = streamer
        self.stops = stops
        self.sequence = input_ids.detach().cpu()

    def put(self, value: torch.Tensor) -> None:
        before = self.sequence.shape[1]
        if self.stops.stop_at is not None and before >= self.stops.stop_at:
            return
        tokens = value.detach().cpu().reshape(1, -1)
        self.sequence = torch.cat([self.sequence, tokens], dim=1)
        stop_at = self.stops.observe(self.sequence)
        if stop_at is not None:
            tokens = tokens[:, : max(0, stop_at - before)]
        if tokens.shape[1]:
            self.streamer.put(tokens)

    def end(self) -> None:
        self.streamer.end()
