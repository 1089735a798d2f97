"""One timed ``generate`` call: wall seconds, time to first token and the target's forward count.

Timings bracket the call with ``torch.cuda.synchronize`` on CUDA devices. The time to first token is
taken when ``generate`` hands the first new token to its streamer (a plain streamer that only notes
the time; ``generate`` gives it the prompt first, which is skipped). Target forwards are counted with
a forward hook on the target module, removed after the call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from transformers.generation.streamers import BaseStreamer

from dspark_hf.telemetry import StepRecord


def synchronize(device: torch.device | str | None) -> None:
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


class FirstTokenClock(BaseStreamer):
    """Notes when the first new token arrives (the first ``put`` after the prompt's)."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.first_token_seconds: float | None = None
        self._saw_prompt = False

    def put(self, value) -> None:
        if not self._saw_prompt:
            self._saw_prompt = True
            return
        if self.first_token_seconds is None:
            self.first_token_seconds = time.perf_counter() - self.start

    def end(self) -> None:
        pass


@dataclass
class TimedRun:
    """What one call produced: ``output`` ``[1, n]`` ids (on CPU), ``new_tokens``, ``seconds``,
    ``first_token_seconds``, ``target_forwards`` and the per-round records (empty for plain decoding)."""

    output: torch.Tensor
    prompt_length: int
    seconds: float
    first_token_seconds: float | None
    target_forwards: int
    steps: list[StepRecord] = field(default_factory=list)

    @property
    def new_tokens(self) -> int:
        return int(self.output.shape[1] - self.prompt_length)


def timed_generate(target, input_ids: torch.Tensor, generation_config, **kwargs) -> TimedRun:
    """``target.generate(input_ids, generation_config=..., **kwargs)`` timed (see the module docstring)."""
    device = input_ids.device
    forwards = [0]
    handle = target.register_forward_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))
    try:
        synchronize(device)
        start = time.perf_counter()
        clock = FirstTokenClock(start)
        with torch.no_grad():
            out = target.generate(
                input_ids, generation_config=generation_config, attention_mask=torch.ones_like(input_ids), streamer=clock, **kwargs
            )
        synchronize(device)
        seconds = time.perf_counter() - start
    finally:
        handle.remove()
    return TimedRun(out.cpu(), int(input_ids.shape[1]), seconds, clock.first_token_seconds, forwards[0])
