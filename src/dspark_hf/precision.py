"""Which dtypes the target and the draft run in: ``--dtype auto|float32|bfloat16|bfloat16-batched``.

The draft's dtype never changes the output (the target verifies every token); the target's does, because
a verification forward of ``L + 1`` rows must round as ``L + 1`` one-token steps would. The choices:

- ``float32``: target float32; draft bfloat16 where bf16 matmuls are fast (CPUs with AVX512-BF16 or AMX,
  GPUs with bf16), else float32. Identical to plain float32 ``generate`` in practice (rounding
  differences ~1e-6 rarely flip a token; every test of this library checks it).
- ``bfloat16``: target and draft bfloat16; verification forwards compute attention row by row and the
  linear layers in row chunks that this device rounds as single rows (probed per weight shape:
  :mod:`dspark_hf.integration.linear_rows`), so the output is bit-identical to plain bfloat16 ``generate``.
- ``bfloat16-batched`` (opt-in): bfloat16 with one batched verification forward: fastest, but its
  output differs from plain bfloat16 ``generate`` on some prompts (the bench reports the rate).
- ``auto`` (default): ``float32`` where bf16 is not fast. Where it is, on a CPU, whichever of ``float32`` and
  ``bfloat16`` runs the real target's forwards faster, timed once per model, device and thread count
  (:mod:`dspark_hf.integration.dtype_costs`: a CPU's flags do not tell; on one AMD EPYC with AVX512-BF16
  float32 was the faster). Without a target to time (and on GPUs): ``bfloat16`` where a 576 x 1536 bf16
  matmul keeps its rows for up to 9 rows (so verification needs few row chunks;
  :func:`~dspark_hf.integration.exact_verification.bf16_linear_rows_invariant`), else ``float32``.

:func:`resolve_precision` returns the choice and one line saying why; callers print it.
:func:`dspark_hf.loading.load_target_with_precision` loads a target, resolves ``--dtype`` on it and converts it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from dspark_hf.errors import UnsupportedUsageError

DTYPE_CHOICES = ("auto", "float32", "bfloat16", "bfloat16-batched")


@dataclass(frozen=True)
class Precision:
    """``name`` (one of :data:`DTYPE_CHOICES` but ``auto``), the two dtypes, whether verification forwards
    run row by row (the ``dspark_single_step_rows`` generation option), whether the output is expected to
    be identical to plain ``generate`` in ``target_dtype``, and why this one was chosen."""

    name: str
    target_dtype: torch.dtype
    draft_dtype: torch.dtype
    single_step_rows: bool
    identical: bool
    reason: str

    def describe(self) -> str:
        t = str(self.target_dtype).removeprefix("torch.")
        d = str(self.draft_dtype).removeprefix("torch.")
        rows = ", row-by-row verification (attention per row; layers weight-major where bit-identical and measured faster)" if self.single_step_rows else ""
        same = "identical to plain generate" if self.identical else "NOT always identical to plain generate"
        return f"dtype {self.name}: target {t}, draft {d}{rows} ({same}; {self.reason})"

    def generation_options(self) -> dict:
        """Keyword arguments for ``GenerationConfig`` that apply this choice to a DSpark call."""
        return {"dspark_single_step_rows": self.single_step_rows}


@functools.lru_cache(maxsize=None)
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def bf16_is_fast(device: str | torch.device = "cpu") -> bool:
    """bf16 matmuls run natively: a CUDA device with bf16 support, or a CPU with AVX512-BF16 / AMX-BF16."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())
    return False


@functools.lru_cache(maxsize=None)
def _rows_invariant(device: str) -> bool:
    from dspark_hf.integration.exact_verification import bf16_linear_rows_invariant

    return bf16_linear_rows_invariant(device=device)


def _measures(device: str, target) -> bool:
    """Whether ``auto`` times ``target`` (a float32 model on a CPU) instead of applying the fixed rule."""
    return (target is not None and device.startswith("cpu")
            and next(target.parameters()).dtype == torch.float32)


def resolve_precision(spec: str = "auto", device: str | torch.device = "cpu", target=None) -> Precision:
    """The :class:`Precision` for ``--dtype spec`` on ``device`` (see the module docstring).

    ``target``: the float32 target, on ``device``; with it, ``auto`` on a CPU with native bf16 picks the
    configuration measured faster for it (stored costs, else a measurement of a few seconds)."""
    if spec not in DTYPE_CHOICES:
        raise UnsupportedUsageError(f"--dtype must be one of {', '.join(DTYPE_CHOICES)}; got {spec!r}.")
    device = str(torch.device(device))
    fast = bf16_is_fast(device)
    draft_dtype = torch.bfloat16 if fast else torch.float32
    where = "this GPU" if device.startswith("cuda") else "this CPU"
    if spec == "float32":
        return Precision("float32", torch.float32, draft_dtype, False, True, "asked for")
    if spec == "bfloat16-batched":
        return Precision("bfloat16-batched", torch.bfloat16, torch.bfloat16, False, False,
                         "asked for: one batched verification forward rounds differently from one-token steps")
    if spec == "bfloat16":
        return Precision("bfloat16", torch.bfloat16, torch.bfloat16, True, True,
                         "asked for; verification rows computed as one-token steps compute them")
    if fast and _measures(device, target):
        from dspark_hf.integration.dtype_costs import configuration_costs

        costs = configuration_costs(target)
        measured = f"auto: measured faster on {where} ({costs.describe()}; bfloat16 with verification rows as one-token steps)"
        if costs.fastest() == "bfloat16":
            return Precision("bfloat16", torch.bfloat16, torch.bfloat16, True, True, measured)
        return Precision("float32", torch.float32, draft_dtype, False, True, measured)
    if fast and _rows_invariant(device):
        return Precision("bfloat16", torch.bfloat16, torch.bfloat16, True, True,
                         f"auto: {where} has native bf16, and verification rows are computed as one-token steps compute them "
                         "(attention row by row, linear layers in row chunks this device rounds as single rows)")
    why = "has no native bf16" if not fast else "splits even a 576 x 1536 bf16 matmul into chunks of fewer than 9 rows (slow exact verification)"
    return Precision("float32", torch.float32, draft_dtype, False, True, f"auto: {where} {why}")

