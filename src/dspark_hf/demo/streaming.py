"""One ``generate()`` call in a worker thread, observed round by round and stoppable.

:class:`StreamingGeneration` runs ``target.generate`` (speculative with a DSpark draft, or plain
without one) in a daemon thread and hands what it produces to the caller through a queue: iterating
yields one :class:`~.provenance.StepTokens` per drafting round (the prefill token first), as soon as
the round is verified, then one :class:`Finished`.

How the rounds are observed: transformers passes each round's accepted tokens to the ``streamer``
(``put``) and then calls the candidate generator's ``update_candidate_strategy``, which hands the
round's :class:`~dspark_hf.telemetry.StepRecord` to ``generation_config.dspark_callback``; the tokens
that arrived just before a record are that round's tokens. Plain generation yields one token per step.

:meth:`StreamingGeneration.stop` sets an event that a ``StoppingCriteria`` checks after every round,
so ``generate`` itself ends at the next round boundary (the thread does not run on in the background).
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from dspark_hf.telemetry import StepRecord
from dspark_hf.demo.provenance import PLAIN, TARGET, StepTokens, step_origins


@dataclass
class Finished:
    """The end of a run: the generated ids (``None`` after an error), wall seconds, whether the Stop
    event ended it early, and the error raised inside ``generate`` if any."""

    token_ids: list[int] | None
    seconds: float
    stopped: bool
    error: BaseException | None = None


class CancelCriterion(StoppingCriteria):
    """Stops ``generate`` at the next round boundary once ``event`` is set; remembers that it did."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event
        self.fired = False

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        stop = self.event.is_set()
        self.fired = self.fired or stop
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class _RoundRelay(BaseStreamer):
    """Pairs the tokens ``generate`` streams with the round records of the DSpark callback."""

    def __init__(self, emit, speculative: bool, started: float) -> None:
        self.emit = emit
        self.speculative = speculative
        self.started = started
        self.seen_prompt = False
        self.seen_prefill = False
        self.pending: list[int] = []

    def _now(self) -> float:
        return time.perf_counter() - self.started

    def put(self, value) -> None:
        ids = [int(t) for t in value.reshape(-1).tolist()]
        if not self.seen_prompt:  # generate() streams the prompt first
            self.seen_prompt = True
            return
        if not self.speculative:
            for token in ids:
                self.emit(StepTokens(step=None, token_ids=[token], kinds=[PLAIN], elapsed=self._now()))
        elif not self.seen_prefill:  # the target's token from the prompt: no drafting round yet
            self.seen_prefill = True
            self.emit(StepTokens(step=None, token_ids=ids, kinds=[TARGET] * len(ids), elapsed=self._now()))
        else:
            self.pending.extend(ids)

    def on_round(self, record: StepRecord) -> None:
        tokens, self.pending = self.pending, []
        kinds = step_origins(record)
        if len(kinds) != len(tokens):
            raise RuntimeError(f"round {record.step}: telemetry says {len(kinds)} tokens, the streamer got {len(tokens)}")
        self.emit(StepTokens(step=record.step, token_ids=tokens, kinds=kinds, record=record, elapsed=self._now()))

    def end(self) -> None:
        pass

    # generate() deep-copies its generation config, callback included; a bound method would copy this
    # relay (and its queue) with it, so the relay itself is the callback and copies as itself.
    __call__ = on_round

    def __deepcopy__(self, memo) -> "_RoundRelay":
        return self


class StreamingGeneration:
    """``target.generate(input_ids, ...)`` in a worker thread; iterate to follow it.

    ``generation_config`` is copied; with a ``draft`` its ``dspark_callback`` is replaced by this
    object's relay (the draft's ``last_telemetry`` is filled as usual). The thread starts on the first
    iteration (or :meth:`start`). Iterating yields :class:`StepTokens` then one :class:`Finished`; an
    error inside ``generate`` is reported in ``Finished.error``, not raised in the worker.
    """

    def __init__(self, target, input_ids: torch.Tensor, generation_config: GenerationConfig, draft=None,
                 cancel: threading.Event | None = None) -> None:
        self.target = target
        self.input_ids = input_ids
        self.draft = draft
        self.cancel = cancel or threading.Event()
        self.config = copy.deepcopy(generation_config)
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    def stop(self) -> None:
        """Ask ``generate`` to stop after the round in progress."""
        self.cancel.set()

    def start(self) -> "StreamingGeneration":
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="dspark-demo-generate", daemon=True)
            self._thread.start()
        return self

    def __iter__(self) -> Iterator[StepTokens | Finished]:
        self.start()
        while True:
            item = self._queue.get()
            yield item
            if isinstance(item, Finished):
                return

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _work(self) -> None:
        started = time.perf_counter()
        relay = _RoundRelay(self._queue.put, speculative=self.draft is not None, started=started)
        criterion = CancelCriterion(self.cancel)
        kwargs = {}
        if self.draft is not None:
            self.config.dspark_callback = relay
            kwargs["assistant_model"] = self.draft
        try:
            with torch.no_grad():
                out = self.target.generate(
                    self.input_ids,
                    generation_config=self.config,
                    attention_mask=torch.ones_like(self.input_ids),
                    streamer=relay,
                    stopping_criteria=StoppingCriteriaList([criterion]),
                    **kwargs,
                )
            tokens = out[0, self.input_ids.shape[1]:].tolist()
            self._queue.put(Finished(tokens, time.perf_counter() - started, stopped=criterion.fired))
        except BaseException as err:  # reported to the consumer, which shows it
            self._queue.put(Finished(None, time.perf_counter() - started, stopped=criterion.fired, error=err))
