"""The measurement loop: every method next to plain generation, interleaved in one process.

For a :class:`Suite` (one target, its methods, its encoded prompts):

1. preparation: every method's one-off measurements (:meth:`~.methods.Method.prepare`), untimed and
   whatever ``warmup`` says, so no timed call and no count of target forwards includes them; then
   warm-up: every method (plain included) runs ``warmup`` times on a short prompt, untimed;
2. per prompt, ``repeats`` passes over ``[plain, *methods]``; pass ``r`` of prompt ``i`` starts at a
   position rotated by ``i + r`` and odd passes run in reverse (A/B, B/A), so drifts of a shared
   machine spread over all methods instead of favouring one;
3. each method keeps, per prompt, its median-time run (time to first token: median over passes);
4. with greedy decoding, every output is compared with plain generation's (:mod:`.identity`).

Before each call the random seed is set from ``seed`` and the prompt's index in its file, so sampled
runs of the same prompt draw from the same stream. Prompt indices in results and mismatches count in
file order: ``first_index`` (``--start``) plus the position in the list.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass, field

import torch

from dspark_hf.benchmarks.identity import Mismatch, check_identity
from dspark_hf.benchmarks.methods import Method, Plain
from dspark_hf.benchmarks.timing import TimedRun


@dataclass
class Suite:
    """``prompts``: dataset name -> list of ``[1, n]`` input ids on the target's device; ``first_index``:
    the file index of each list's first prompt."""

    name: str
    target: object
    methods: list[Method]
    prompts: dict[str, list[torch.Tensor]]
    warmup_ids: torch.Tensor | None = None
    plain: Method = field(default_factory=Plain)
    first_index: int = 0


@dataclass
class PromptResult:
    """One method on one prompt: its median-time run and the time to first token over passes."""

    dataset: str
    prompt_index: int
    method: str
    run: TimedRun
    first_token_seconds: float | None


@dataclass
class SuiteResult:
    suite: Suite
    results: list[PromptResult]
    mismatches: list[Mismatch]


def pass_order(columns: list, prompt_index: int, repeat: int) -> list:
    """The order of pass ``repeat`` on prompt ``prompt_index`` (see the module docstring)."""
    shift = (prompt_index + repeat) % len(columns)
    order = columns[shift:] + columns[:shift]
    return order[::-1] if repeat % 2 else order


def _median_run(runs: list[TimedRun]) -> TimedRun:
    return sorted(runs, key=lambda r: r.seconds)[(len(runs) - 1) // 2]


def run_suite(suite: Suite, generation_config, *, repeats: int = 1, warmup: int = 1, seed: int = 0, greedy: bool = True,
              progress: bool = True) -> SuiteResult:
    """Measure every method of ``suite`` next to plain generation (see the module docstring)."""
    columns = [suite.plain, *suite.methods]
    for method in columns:
        method.prepare(suite.target, generation_config)
    if suite.warmup_ids is not None and warmup > 0:
        import copy

        short = copy.deepcopy(generation_config)
        short.max_new_tokens = min(16, generation_config.max_new_tokens or 16)
        for _ in range(warmup):
            for method in columns:
                torch.manual_seed(seed)
                method.run(suite.target, suite.warmup_ids, short)
    results: list[PromptResult] = []
    mismatches: list[Mismatch] = []
    total = sum(len(v) for v in suite.prompts.values())
    done = 0
    for dataset, prompts in suite.prompts.items():
        for index, ids in enumerate(prompts):
            number = suite.first_index + index
            runs: dict[str, list[TimedRun]] = {m.id: [] for m in columns}
            for repeat in range(repeats):
                for method in pass_order(columns, index, repeat):
                    torch.manual_seed(seed * 1_000_003 + number)
                    runs[method.id].append(method.run(suite.target, ids, generation_config))
            reference = runs[suite.plain.id][0]
            if greedy:
                for method in suite.methods:
                    for run in runs[method.id]:
                        mismatch = check_identity(dataset, number, method.id, reference.output, run.output, run.prompt_length)
                        if mismatch is not None:
                            mismatches.append(mismatch)
                            break
            for method in columns:
                chosen = _median_run(runs[method.id])
                ttfts = [r.first_token_seconds for r in runs[method.id] if r.first_token_seconds is not None]
                results.append(PromptResult(dataset, number, method.id, chosen, statistics.median(ttfts) if ttfts else None))
                for run in runs[method.id]:
                    if run is not chosen:
                        run.output = run.output[:, :0]  # keep memory flat: only the median run is kept whole
            done += 1
            if progress:
                print(f"\r{suite.name}: {done}/{total} prompts", end="", file=sys.stderr, flush=True)
    if progress and total:
        print(file=sys.stderr)
    return SuiteResult(suite, results, mismatches)
