"""How a DSpark call's verification forwards compute, in one place for generation, profiling and ``--dtype auto``.

- bf16 / fp16 targets (or ``dspark_single_step_rows=True``): row by row, each row rounded as plain
  decoding's one-token step (:mod:`.exact_verification`), on a CPU (unless ``dspark_weight_major=False``)
  with layers weight-major at the row counts where that is bit-identical and measured faster
  (:func:`.weight_major.rows_weight_major_verification`);
- float32 targets on a CPU (unless ``dspark_weight_major=False``): linear layers weight-major, or with the
  compiled few-row kernel (:mod:`.few_row_kernel`; unless ``dspark_few_row_kernel=False``), at the row counts
  where each is measured faster on the machine (:mod:`.weight_major`);
- otherwise transformers' forward, unchanged.

A cost profile measured inside one of these contexts is stored under that mode's key
(:func:`dspark_hf.verification.row_mode.verification_mode`), so the hardware-aware policy reads the costs
of the forwards it will run.
"""

from __future__ import annotations

import contextlib

from dspark_hf.integration.exact_verification import single_step_rows, wants_single_step_rows
from dspark_hf.integration.weight_major import (
    rows_weight_major_verification,
    wants_exact_weight_major,
    wants_few_row_kernel,
    wants_weight_major,
    weight_major_verification,
)


def verification_context(target, generation_config=None, *, rows: bool | None = None):
    """The context a DSpark call on ``target`` verifies in: ``rows`` (when given) or the generation
    config's ``dspark_single_step_rows`` / the target's dtype decide row-by-row mode; otherwise weight-major
    float32 linears where :func:`~.weight_major.wants_weight_major` says so."""
    if rows is None:
        rows = wants_single_step_rows(target, generation_config)
    if rows:
        if wants_exact_weight_major(target, generation_config):
            return _rows_and_weight_major(target)
        return single_step_rows(target)
    if wants_weight_major(target, generation_config):
        return weight_major_verification(target, compiled=wants_few_row_kernel(generation_config))
    return contextlib.nullcontext()


@contextlib.contextmanager
def _rows_and_weight_major(target):
    with single_step_rows(target), rows_weight_major_verification(target):
        yield
