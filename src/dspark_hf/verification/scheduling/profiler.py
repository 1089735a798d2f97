"""Measuring a :class:`CostProfile`: the target's seconds per verification forward against tokens per
forward ``B``, and the draft's seconds per drafting round, on the machine and settings in use.

Each ``B`` is timed as it runs in generation: one forward of ``B`` new tokens on top of a KV cache
holding ``context_length`` tokens (a fresh copy of the prefilled cache, made outside the timed
region, for every forward), after ``warmup``
untimed forwards, ``repeats`` timed ones, median kept. The ``B`` values are measured in an
interleaved order (round robin over ``B`` per repeat), so that a slow spell of a shared machine
spreads over all of them instead of bending one part of the curve.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
from dataclasses import dataclass
from typing import Callable, ContextManager, Mapping, Sequence

import torch

from dspark_hf.drafting.round import DraftContext, draft_round
from dspark_hf.transformers_compat import cache_kwargs
from dspark_hf.verification.row_mode import verification_mode
from dspark_hf.verification.scheduling.cost_profile import CostProfile, device_name, dtype_name, model_name, now_utc

DEFAULT_TOKENS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 24, 32)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], None], device: torch.device) -> float:
    _synchronize(device)
    start = time.perf_counter()
    fn()
    _synchronize(device)
    return time.perf_counter() - start


class PrefilledSequence:
    """One sequence of ``context_length`` random tokens prefilled into a ``DynamicCache`` once, and
    forwards of ``n`` random new tokens (``n`` in ``counts``) at the positions after it, each over a
    fresh copy of that cache (:meth:`fresh_cache`, made by the caller outside any timed region). What
    both cost measurements time: the cost profile's forwards (:func:`measure_target`) and the
    weight-major row counts (:func:`dspark_hf.integration.weight_major.measure_weight_major_rows`).
    Building it runs the prefill, so a target whose forward does not run over a plain ``DynamicCache``
    raises here."""

    def __init__(self, target, counts: Sequence[int], *, context_length: int, seed: int = 0) -> None:
        from transformers import DynamicCache

        self.target = target
        self.device = next(target.parameters()).device
        vocab = target.config.get_text_config().vocab_size
        generator = torch.Generator().manual_seed(seed)
        context = torch.randint(0, vocab, (1, context_length), generator=generator).to(self.device)
        self.cache = DynamicCache(config=target.config)
        with torch.no_grad():
            target(input_ids=context, use_cache=True, **cache_kwargs(target, self.cache))
        self.inputs = {n: torch.randint(0, vocab, (1, n), generator=generator).to(self.device) for n in counts}
        self.positions = {n: torch.arange(context_length, context_length + n, device=self.device)[None] for n in counts}

    def fresh_cache(self):
        """A copy of the prefilled cache, for one forward."""
        return copy.deepcopy(self.cache)

    @torch.no_grad()
    def forward(self, n: int, past) -> None:
        """The forward of ``n`` new tokens over ``past`` (a :meth:`fresh_cache`)."""
        self.target(input_ids=self.inputs[n], position_ids=self.positions[n], use_cache=True,
                    **cache_kwargs(self.target, past, self.positions[n][0]))

    def timed(self, n: int) -> float:
        """Seconds of :meth:`forward` of ``n`` tokens on a fresh cache (the copy made before the clock starts)."""
        past = self.fresh_cache()
        return _timed(lambda: self.forward(n, past), self.device)


@torch.no_grad()
def measure_target(
    target, tokens: Sequence[int] = DEFAULT_TOKENS, *, context_length: int = 256, warmup: int = 3, repeats: int = 9, seed: int = 0
) -> list[float]:
    """Median seconds of one target forward for each ``B`` in ``tokens``."""
    configuration = TimedConfiguration(target, contextlib.nullcontext)
    return measure_interleaved({"target": configuration}, tokens, context_length=context_length, warmup=warmup,
                               repeats=repeats, seed=seed)["target"]


@dataclass(frozen=True)
class TimedConfiguration:
    """A model and the scope its forwards run in (entered around each forward, outside the clock), for
    :func:`measure_interleaved`: e.g. a float32 target in its weight-major scope, a bf16 copy in the
    row-by-row one. Scopes are per thread, not per model, so two of them are never open at once."""

    model: torch.nn.Module
    scope: Callable[[], ContextManager]


def measure_interleaved(
    configurations: Mapping[str, TimedConfiguration],
    tokens: Sequence[int],
    *,
    context_length: int = 256,
    warmup: int = 3,
    repeats: int = 9,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Median seconds of one forward of each ``B`` in ``tokens``, per configuration, all timed in one
    interleaved order: per repeat, per ``B``, one forward of every configuration, the first of them taking
    turns from repeat to repeat. A slow spell of the machine (on a shared 2-vCPU host one configuration's
    one-token forward measured 59 ms in one minute and 88 ms forty minutes later, docs/benchmarks.md run x)
    then falls on every configuration alike instead of on whichever was being timed, and cannot by itself
    decide which one is faster."""
    tokens = list(tokens)
    names = list(configurations)
    sequences = {}
    for name in names:
        with configurations[name].scope():  # the prefill runs in the configuration's own scope
            sequences[name] = PrefilledSequence(configurations[name].model, tokens, context_length=context_length, seed=seed)
    for _ in range(warmup):
        for b in tokens:
            for name in names:
                with configurations[name].scope():
                    sequences[name].forward(b, sequences[name].fresh_cache())
    times: dict[str, dict[int, list[float]]] = {name: {b: [] for b in tokens} for name in names}
    for repeat in range(repeats):
        order = names[repeat % len(names):] + names[: repeat % len(names)]
        for b in tokens:
            for name in order:
                with configurations[name].scope():
                    times[name][b].append(sequences[name].timed(b))
    return {name: [statistics.median(times[name][b]) for b in tokens] for name in names}


@torch.no_grad()
def measure_draft(draft, target, *, context_length: int = 256, new_context: int = 3, warmup: int = 3, repeats: int = 9, seed: int = 0) -> float:
    """Median seconds of one greedy drafting round (:func:`dspark_hf.drafting.round.draft_round`, the
    function generation runs): ``new_context`` new context rows into a context already holding
    ``context_length`` positions, the block forward, drawing the block and the confidences."""
    if draft.config.embeddings_from_target and not draft._bound_target:
        draft.bind_target_embeddings(target)
    device = next(draft.parameters()).device
    cfg = draft.config
    width = len(cfg.target_layer_ids) * cfg.target_hidden_size
    dtype = next(draft.parameters()).dtype
    generator = torch.Generator().manual_seed(seed)
    prefilled = DraftContext(draft)
    prefix = torch.randint(0, cfg.vocab_size, (1, context_length + new_context + 1), generator=generator).to(device)
    draft_round(draft, prefilled, torch.randn(1, context_length, width, generator=generator).to(device, dtype), prefix[:, : context_length + 1])
    features = torch.randn(1, new_context, width, generator=generator).to(device, dtype)

    def round_(context: DraftContext) -> None:
        draft_round(draft, context, features, prefix)

    for _ in range(warmup):
        round_(prefilled.copy())
    times = []
    for _ in range(repeats):
        context = prefilled.copy()
        times.append(_timed(lambda: round_(context), device))
    return statistics.median(times)


def profile_target(
    target,
    draft=None,
    *,
    tokens: Sequence[int] = DEFAULT_TOKENS,
    context_length: int = 256,
    warmup: int = 3,
    repeats: int = 9,
) -> CostProfile:
    """Measure ``target`` (and ``draft``, when given) on their current device, dtype and thread count."""
    tokens = sorted({int(b) for b in tokens if int(b) >= 1})
    param = next(target.parameters())
    seconds = measure_target(target, tokens, context_length=context_length, warmup=warmup, repeats=repeats)
    draft_seconds = (
        measure_draft(draft, target, context_length=context_length, warmup=warmup, repeats=repeats) if draft is not None else 0.0
    )
    import transformers

    return CostProfile(
        model=model_name(target),
        device=device_name(param.device),
        dtype=dtype_name(param.dtype),
        tokens=tokens,
        target_seconds=seconds,
        draft_seconds=draft_seconds,
        context_length=context_length,
        repeats=repeats,
        warmup=warmup,
        created=now_utc(),
        versions={"torch": torch.__version__, "transformers": transformers.__version__, "threads": torch.get_num_threads()},
        verification=verification_mode(),
    )
