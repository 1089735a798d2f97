"""What the target's forwards cost in each configuration that keeps DSpark identical to plain ``generate``,
measured on this machine, for ``--dtype auto`` (:func:`dspark_hf.precision.resolve_precision`).

The two such configurations on a CPU with native bf16 are a float32 target, and a bfloat16 target whose
verification forwards run row by row (:func:`~dspark_hf.integration.exact_verification.single_step_rows`).
Which is faster depends on the CPU's kernels, not on its flags: on one AMD EPYC (AVX512-BF16, one thread)
the SmolLM2-135M target's one-token forward took 69 ms in float32 and 99 ms in bf16, and an 8-token
verification forward 119 ms against 231 ms; on an Intel Xeon bf16 was the faster of the two. So ``auto``
times both on the real target, once per (model, device, thread count), and keeps the result in
``<dspark_hf cache>/precision/``.

The score of a configuration is the summed median time of forwards of :data:`SCORED_TOKENS` new tokens
over a cache of ``context_length`` tokens: the one-token forward is what plain decoding and every
step's bonus token pay, the longer ones what verification pays. They are the row counts the default
(hardware-aware) policy verifies on a CPU: in run w's goal bench (60 prompts) 98.3 % of its 4,321
rounds verified 1-4 rows. Until run x (version 4) the score summed 1, 4 and 8 tokens, and on a 2-vCPU Intel
Xeon without AMX that picked bf16 row by row where float32 was faster at 2-3 rows (run w: float32 58.4 / 60.5
ms for 1 / 2 rows, bf16 57.0 / 68.6; level at 4 and 8); run x measured the default policy there at 20.1
tokens/s in float32 against 16.5 in bf16, with plain decoding at 15.0 and 14.5
(``docs/measurements/2026-12-07c/``).

The two configurations are timed interleaved (since version 6): timed one after the other, a slow spell of
that 2-vCPU host during the float32 half made float32's forwards 88 / 90 / 97 / 133 ms at one moment where
they had been 59 / 58 / 67 / 89 forty minutes earlier (bf16 56 / 69 / 78 / 89 and 58 / 72 / 80 / 93), and
``auto`` took bf16, the configuration the default policy runs 18 % slower in there.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from dspark_hf.cache_dir import cache_root

SCORED_TOKENS = (1, 2, 3, 4)
CONFIGURATIONS = ("float32", "bfloat16")  # bfloat16: exact, verification rows as one-token steps


@dataclass(frozen=True)
class ConfigurationCosts:
    """Median seconds per forward of ``tokens`` new tokens, per configuration name, and where they come from."""

    tokens: tuple[int, ...]
    seconds: dict[str, list[float]]
    key: str

    def score(self, name: str) -> float:
        return sum(self.seconds[name])

    def fastest(self) -> str:
        """The configuration with the lowest summed time (float32 on a tie: it needs no row chunks)."""
        return min(CONFIGURATIONS, key=lambda name: (self.score(name), CONFIGURATIONS.index(name)))

    def describe(self) -> str:
        slash = "/".join(str(t) for t in self.tokens)
        parts = [f"{name} {'/'.join(f'{1000 * s:.0f}' for s in self.seconds[name])} ms" for name in CONFIGURATIONS]
        return f"forwards of {slash} new tokens: " + ", ".join(parts)


def costs_key(target) -> str:
    from dspark_hf.verification.scheduling.cost_profile import device_name, model_name

    return f"{model_name(target)}__{device_name(next(target.parameters()).device)}"


COSTS_VERSION = 7  # 2: float32 timed with weight-major verification linears (:mod:`.weight_major`); 3: one-row steps too;
# 4: bfloat16 timed with its exact weight-major layers; 5: scored on 1-4 new tokens (was 1, 4, 8); 6: the two
# configurations timed interleaved (were timed one after the other), 7 repeats (were 5); 7: float32 with the compiled
# few-row kernel where it is measured faster (:mod:`.few_row_kernel`)


def costs_path(key: str) -> Path:
    return cache_root() / "precision" / f"{key}__v{COSTS_VERSION}.json"


@torch.no_grad()
def measure_configuration_costs(target, *, context_length: int = 128, warmup: int = 2, repeats: int = 7) -> ConfigurationCosts:
    """Time ``target`` (float32) as it verifies (weight-major linears where measured faster), and a bfloat16
    copy of it with row-by-row verification, interleaved (:func:`~dspark_hf.verification.scheduling.profiler.measure_interleaved`:
    per repeat and token count one forward of each, so that the machine's slow spells fall on both).

    The copy lives only for the call (nothing outside it keeps a reference); ``target`` is left unchanged."""
    from dspark_hf.integration.verification_forwards import verification_context
    from dspark_hf.integration.weight_major import weight_major_verification
    from dspark_hf.verification.scheduling import profiler

    if next(target.parameters()).dtype != torch.float32:
        raise ValueError("measure_configuration_costs needs the target in float32 (a bf16 copy is made from it).")
    bf16 = copy.deepcopy(target).to(torch.bfloat16)
    configurations = {
        # float32 as it verifies: weight-major linears where faster here
        "float32": profiler.TimedConfiguration(target, lambda: weight_major_verification(target)),
        # as a DSpark call verifies exact bf16: row by row, weight-major where exact and faster
        "bfloat16": profiler.TimedConfiguration(bf16, lambda: verification_context(bf16, rows=True)),
    }
    seconds = profiler.measure_interleaved(configurations, SCORED_TOKENS, context_length=context_length,
                                           warmup=warmup, repeats=repeats)
    return ConfigurationCosts(SCORED_TOKENS, seconds, costs_key(target))


def configuration_costs(target, *, measure=None) -> ConfigurationCosts:
    """The stored costs for ``target`` on this device and thread count, measured (and stored) when missing
    or unreadable (``measure``: what measures them, default :func:`measure_configuration_costs`)."""
    from dspark_hf.verification.scheduling.cost_profile import write_json_atomically

    key = costs_key(target)
    path = costs_path(key)
    try:
        data = json.loads(path.read_text())
        costs = ConfigurationCosts(tuple(data["tokens"]), {k: list(v) for k, v in data["seconds"].items()}, data["key"])
        if costs.tokens == SCORED_TOKENS and set(costs.seconds) >= set(CONFIGURATIONS) and costs.key == key:
            return costs
    except (OSError, ValueError, KeyError, TypeError):
        pass
    costs = (measure or measure_configuration_costs)(target)
    data = asdict(costs)
    data["tokens"] = list(costs.tokens)
    write_json_atomically(data, path)
    return costs
