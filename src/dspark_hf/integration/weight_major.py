"""Which row counts of a float32 target's verification forwards run faster weight-major, measured here.

Why: a verification forward computes ``L + 1`` new rows where plain decoding computes one, and its cost
decides whether verifying drafted tokens pays. With transformers' ``nn.Linear`` (``F.linear``), MKL on this
project's AMD EPYC (one thread) computes 2 or 3 float32 rows as 2 or 3 matrix-vector products, so the
bundled SmolLM2-135M's forward over a 256-token cache took 64 ms for one new row, 97-105 ms for 2,
138-140 ms for 3 and 92-118 ms for 4; with its linear layers weight-major
(:func:`~dspark_hf.integration.linear_kernels.weight_major_linear`) the same forwards took 57, 73-92
and 78-81 ms, and from 7 rows on it was slower than ``F.linear`` (2026-12-04, ``docs/benchmarks.md``;
``scripts/ab_weight_major_forward.py`` repeats the comparison).
The crossing depends on the BLAS, the CPU, the model's shapes and the thread count, so it is measured.

What: :func:`measure_weight_major_rows` times the target's verification forward at each row count of
:data:`MEASURED_ROWS` both ways (interleaved, fresh cache copies, medians) and keeps the counts where
weight-major is faster by at least ``margin``; :func:`weight_major_rows_for` stores that per (model,
device, thread count, torch version) under ``<dspark_hf cache>/precision/`` and reads it back; and
:func:`weight_major_verification` applies it to a DSpark call (the generation hook does, for float32
targets on a CPU; the ``dspark_weight_major`` generation option turns it off or on).

One new row is measured too (since 2026-12-05, run l): inside a DSpark call a step that verifies no
drafted token (the drafting gate's plain rounds, a batch engine's plain steps at one request) is a
one-row forward over the cache, and MKL's matrix-vector product reads the weights slower than a
two-column GEMM does, so :func:`~dspark_hf.integration.linear_kernels.weight_major_linear` pads it to two
columns (the bundled SmolLM2's linear layers: 43.4 ms for one row with ``F.linear``, 33.4 ms padded).

Row-by-row (bf16) verification uses the same measurement for another purpose: there a layer runs
weight-major only at row counts where the product is probed bit-identical to plain decoding's one-row
``F.linear`` (:func:`~dspark_hf.integration.linear_rows.weight_major_exact_rows`), so exactness is kept and
only speed is measured (stored under a key ending ``__<dtype>__rows``; :func:`rows_weight_major_verification`).
Measured on this project's Intel Xeon (AMX, one thread, bundled SmolLM2 in bf16, 128-token cache): in
``docs/measurements/2026-12-07/``.

Exactness (float32): plain ``generate`` is never touched (no scope outside a DSpark call; prefills keep ``F.linear``
everywhere); inside a DSpark call the rows of the chosen counts, one-row steps included where one row is
chosen, change their order of float32 additions, as a batched GEMM already does to verification rows
(logits within ~1e-5 of the one-token steps'; greedy outputs identical, tested). A DSpark call whose
rounds all verify nothing is therefore no longer bit-identical in its logits to plain decoding on a machine
where one row is chosen, only equal in its tokens wherever the top two logits are further apart than
that rounding (the same condition every verification row has always had).
"""

from __future__ import annotations

import contextlib
import json
import statistics
from dataclasses import asdict, dataclass

import torch

from dspark_hf.integration.few_row_kernel import kernel_unavailable
from dspark_hf.integration.linear_rows import chunk_verification_linears, prime_invariant_rows, verification_forward
from dspark_hf.verification.row_mode import single_step_rows_active, weight_major_scope

MEASURED_ROWS = tuple(range(1, 17))  # 1-9 until run z; up to 16 since (the batch engine's packed steps, the compiled kernel's range)
_MEMORY: dict[str, frozenset[int]] = {}  # per key: the row counts chosen (weight-major or compiled)
_COMPILED: dict[str, frozenset[int]] = {}  # per key: those of them that run the compiled few-row kernel


@dataclass(frozen=True)
class WeightMajorRows:
    """Median seconds of a verification forward per row count, ``F.linear``, weight-major and (float32,
    where it builds here) the compiled few-row kernel, the row counts chosen (the faster of the other two
    faster than ``F.linear`` by at least the margin) and among them those that run compiled."""

    key: str
    torch: str
    rows: tuple[int, ...]
    measured: tuple[int, ...]
    linear_seconds: tuple[float, ...]
    weight_major_seconds: tuple[float, ...]
    note: str = ""
    compiled_rows: tuple[int, ...] = ()
    compiled_seconds: tuple[float, ...] = ()
    compiled_note: str = ""

    def describe(self) -> str:
        what = "row-by-row verification linears" if self.key.endswith("__rows") else "float32 verification linears"
        if self.note:
            return f"{what}: F.linear ({self.note})"
        if not self.rows:
            return f"{what}: F.linear at every row count (weight-major measured slower)"
        exact = " where bit-identical to one-row steps" if self.key.endswith("__rows") else ""
        if self.compiled_seconds:
            parts = " ".join(f"{n}:{1000 * a:.0f}/{1000 * b:.0f}/{1000 * c:.0f}" for n, a, b, c in
                             zip(self.measured, self.linear_seconds, self.weight_major_seconds, self.compiled_seconds))
            product_rows = [n for n in self.rows if n not in self.compiled_rows]
            kinds = ([f"compiled few-row kernel at {_ranges(self.compiled_rows)}"] if self.compiled_rows else []) + \
                ([f"weight-major at {_ranges(product_rows)}"] if product_rows else [])
            return f"{what}: {', '.join(kinds)} rows, F.linear elsewhere (ms F.linear/weight-major/compiled {parts})"
        parts = " ".join(
            f"{n}:{1000 * a:.0f}/{1000 * b:.0f}" for n, a, b in zip(self.measured, self.linear_seconds, self.weight_major_seconds)
        )
        return f"{what} weight-major at {_ranges(self.rows)} rows{exact} (ms F.linear/weight-major {parts})"


def _ranges(rows) -> str:
    rows = sorted(rows)
    spans, start = [], rows[0]
    for prev, cur in zip(rows, rows[1:] + [None]):
        if cur != prev + 1:
            spans.append(str(start) if start == prev else f"{start}-{prev}")
            start = cur
    return ",".join(spans)


def wants_weight_major(target, generation_config) -> bool:
    """Whether a DSpark call on ``target`` (not verifying row by row) may run weight-major verification
    linears: ``dspark_weight_major`` of the generation config (True / False), or by default a float32
    target on a CPU."""
    asked = getattr(generation_config, "dspark_weight_major", None)
    if asked is not None:
        return bool(asked)
    param = next(target.parameters())
    return param.dtype == torch.float32 and param.device.type == "cpu"


def wants_few_row_kernel(generation_config) -> bool:
    """Whether a DSpark call's float32 verification forwards may run the compiled few-row kernel at the row
    counts measured faster with it: ``dspark_few_row_kernel`` of the generation config (True / False, default
    True; False keeps the weight-major product or ``F.linear`` there, as before the kernel existed)."""
    asked = getattr(generation_config, "dspark_few_row_kernel", None)
    return True if asked is None else bool(asked)


def wants_exact_weight_major(target, generation_config) -> bool:
    """Whether a DSpark call on ``target`` that verifies row by row may run layers weight-major where that is
    bit-identical to one-row steps and measured faster: ``dspark_weight_major`` of the generation config
    (True / False), or by default a target on a CPU."""
    asked = getattr(generation_config, "dspark_weight_major", None)
    if asked is not None:
        return bool(asked)
    return next(target.parameters()).device.type == "cpu"


@torch.no_grad()
def measure_weight_major_rows(
    target, rows=MEASURED_ROWS, *, context_length: int = 128, warmup: int = 1, repeats: int = 5, margin: float = 0.05, seed: int = 0
) -> WeightMajorRows:
    """Time ``target``'s verification forward of each of ``rows`` new rows over a cache of ``context_length``
    tokens, with ``F.linear`` and weight-major linear layers, interleaved (per repeat, per row count, both
    kernels on fresh copies of one prefilled cache), after ``warmup`` untimed rounds; keep the row counts
    whose weight-major median is below ``(1 - margin)`` times ``F.linear``'s. A float32 target not verifying row by
    row is timed with the compiled few-row kernel too (:mod:`.few_row_kernel`, where it builds here): a row count
    goes to the faster of the two non-``F.linear`` kernels, kept where that one is below the margin, and is
    listed in ``compiled_rows`` where the compiled kernel is the one. A target whose forward does not run
    over a plain ``DynamicCache`` (DeepSeek-V4's compressed-attention layers need their own cache) is not
    measured: it keeps ``F.linear``, and the result says why."""
    from dspark_hf.verification.scheduling.profiler import PrefilledSequence

    chunk_verification_linears(target)
    rows = tuple(sorted({int(r) for r in rows if int(r) >= 1}))
    try:
        sequence = PrefilledSequence(target, rows, context_length=context_length, seed=seed)
    except (RuntimeError, TypeError, ValueError, AttributeError) as err:
        note = f"not measured: its forward over a DynamicCache failed ({type(err).__name__})"
        return WeightMajorRows(_key(target), torch.__version__, (), (), (), (), note)
    everything = frozenset(rows)
    kernels = [("linear", frozenset(), frozenset()), ("weight-major", everything, frozenset())]
    compiled_note = _compiled_unavailable(target)
    if compiled_note is None:
        kernels.append(("compiled", everything, everything))

    def forward(n: int, kernel_rows: frozenset, compiled: frozenset) -> float:
        with weight_major_scope(kernel_rows, compiled):
            return sequence.timed(n)

    times = {(n, name): [] for n in rows for name, _, _ in kernels}
    for round_ in range(warmup + repeats):
        for n in rows:
            shift = round_ % len(kernels)  # the first kernel of each row count takes turns
            for name, kernel_rows, compiled in kernels[shift:] + kernels[:shift]:
                seconds = forward(n, kernel_rows, compiled)
                if round_ >= warmup:
                    times[(n, name)].append(seconds)
    medians = {name: tuple(statistics.median(times[(n, name)]) for n in rows) for name, _, _ in kernels}
    linear, weight_major = medians["linear"], medians["weight-major"]
    compiled_seconds = medians.get("compiled", ())
    chosen, compiled_rows = [], []
    for i, n in enumerate(rows):
        best = min(weight_major[i], compiled_seconds[i]) if compiled_seconds else weight_major[i]
        if best < (1 - margin) * linear[i]:
            chosen.append(n)
            if compiled_seconds and compiled_seconds[i] < weight_major[i]:
                compiled_rows.append(n)
    return WeightMajorRows(_key(target), torch.__version__, tuple(chosen), rows, linear, weight_major,
                           compiled_rows=tuple(compiled_rows), compiled_seconds=compiled_seconds,
                           compiled_note=compiled_note or "")


def _compiled_unavailable(target) -> str | None:
    """Why the compiled few-row kernel is not timed for ``target`` here (``None``: it is): it serves float32
    verification forwards only, not row-by-row ones, and needs to build on this machine."""
    param = next(target.parameters())
    if single_step_rows_active():
        return "row-by-row verification"
    if param.dtype != torch.float32 or param.device.type != "cpu":
        return "not a float32 target on a CPU"
    return kernel_unavailable()


def _key(target) -> str:
    """``<model>__<device>`` (the CPU model with torch's thread count), as for the dtype costs; in a thread that
    verifies row by row, ``__<dtype>__rows`` after it (what is measured there is another forward)."""
    from dspark_hf.verification.scheduling.cost_profile import device_name, dtype_name, model_name

    param = next(target.parameters())
    key = f"{model_name(target)}__{device_name(param.device)}"
    return f"{key}__{dtype_name(param.dtype)}__rows" if single_step_rows_active() else key


def _path(key: str):
    from dspark_hf.cache_dir import cache_root

    return cache_root() / "precision" / f"{key}__weight_major.json"


def stored_weight_major_rows(target) -> WeightMajorRows | None:
    """The stored measurement for ``target`` on this device, thread count and torch version that covers every
    row count of :data:`MEASURED_ROWS`, or ``None``."""
    key = _key(target)
    try:
        data = json.loads(_path(key).read_text())
        found = WeightMajorRows(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
    except (OSError, ValueError, TypeError):
        return None
    if found.key != key or found.torch != torch.__version__ or not set(MEASURED_ROWS) <= set(found.measured):
        return None  # another machine or torch, or measured before one row was (it is measured again)
    if "compiled_note" not in data or (found.compiled_rows and kernel_unavailable() is not None):
        return None  # measured before the compiled kernel was, or it chose a kernel that does not build here now
    return found


def weight_major_rows_for(target, *, measure=None) -> WeightMajorRows:
    """The row counts ``target``'s verification forwards compute weight-major on this machine: stored, or
    measured now (``measure``, default :func:`measure_weight_major_rows`; a few seconds for a 135M model)
    and stored."""
    from dspark_hf.verification.scheduling.cost_profile import write_json_atomically

    found = stored_weight_major_rows(target)
    if found is None:
        found = (measure or measure_weight_major_rows)(target)
        write_json_atomically(asdict(found), _path(found.key))
    _MEMORY[found.key] = frozenset(found.rows)
    _COMPILED[found.key] = frozenset(found.compiled_rows)
    return found


@contextlib.contextmanager
def weight_major_verification(target, rows=None, *, compiled: bool = True):
    """Within this block (this thread), ``target``'s float32 verification forwards run their linear layers
    weight-major at the row counts measured faster here (``rows`` overrides them), with the compiled few-row
    kernel at those measured faster with it (``compiled=False``: never); nothing else changes."""
    chunk_verification_linears(target)
    if rows is None:
        rows, compiled_here = _chosen_rows(target)
    else:
        compiled_here = _COMPILED.get(_key(target), frozenset())
    with weight_major_scope(rows, compiled_here if compiled else ()):
        yield


def _chosen_rows(target) -> tuple[frozenset[int], frozenset[int]]:
    """The row counts chosen for ``target`` here and those of them that run compiled: held for the process, else
    stored or measured now (:func:`weight_major_rows_for`)."""
    key = _key(target)
    if key in _MEMORY:
        return _MEMORY[key], _COMPILED.get(key, frozenset())
    found = weight_major_rows_for(target)
    return frozenset(found.rows), frozenset(found.compiled_rows)


def float32_verification_mode(target) -> str:
    """The verification mode (:func:`~dspark_hf.verification.row_mode.verification_mode`) that
    :func:`weight_major_verification` opens for ``target`` in this thread: ``"weight-major-compiled"`` where the
    measurement here chose the compiled kernel for some row count, ``"weight-major"`` where it chose only the
    weight-major product, and ``"batched"`` where it chose no row count (the scope then changes nothing, and
    reports that mode inside it); stored or measured now, as the context itself would. Until run ab it said
    ``"weight-major"`` for no row count too, so a cost profile keyed by it was not found from inside the scope
    (CI-like fresh caches, where a tiny test model's measurement chose nothing)."""
    rows, compiled = _chosen_rows(target)
    if not rows:
        return "batched"
    return "weight-major-compiled" if compiled else "weight-major"


@contextlib.contextmanager
def rows_weight_major_verification(target):
    """Within this block (this thread, already verifying row by row), ``target``'s layers run weight-major at
    the row counts measured faster here with it (stored or measured now), each layer only at the counts its
    probe found bit-identical to one-row steps (:mod:`dspark_hf.integration.linear_rows`)."""
    if not single_step_rows_active():
        raise RuntimeError("rows_weight_major_verification needs a row-by-row verification scope around it")
    with weight_major_verification(target):
        prime_invariant_rows(target)  # the weight-major probes, now that the scope lists row counts
        yield


@contextlib.contextmanager
def weight_major_forward(target):
    """One forward that verifies, for a caller that knows it does (the batch engine's packed forward of
    decoding requests only): weight-major linears at the measured row counts where
    :func:`wants_weight_major` says so (a float32 target on a CPU), else nothing changes."""
    if not wants_weight_major(target, None):
        yield
        return
    with weight_major_verification(target), verification_forward():
        yield
