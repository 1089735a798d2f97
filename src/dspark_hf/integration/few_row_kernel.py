"""A compiled float32 ``nn.Linear`` for a few rows that reads the weight once at memory speed.

Why: a float32 verification forward of ``m`` new rows is, on a CPU, a pass over every weight of the
target, as a one-token step is; at 2-16 rows the arithmetic is still small next to reading the weights,
so it could cost about what one row costs. torch's BLAS does not get there on every CPU: on this
project's Intel Xeon without AMX (one thread, torch 2.13, MKL), the 211 linear layers and the LM head of
the bundled SmolLM2-135M took 41 ms for one row, 47 for 3, but 71 for 4, 79 for 6, 97 for 8 and 121 for 10 with
``F.linear``, and 98-106 ms at every row count weight-major (``W @ x.T``; measured 2026-12-07, run z,
``docs/measurements/2026-12-07e/few_rows.log``). A forward of 4-8 rows then costs 1.3-2x a one-token step,
and verifying a third or later drafted token rarely pays.

What: :func:`few_row_linear` computes ``x @ W.T (+ b)`` for ``m <= MAX_ROWS`` rows with a small C loop: for
each output feature it streams that weight row once and accumulates its dot product with all ``m`` input
rows (kept in cache) in ``m`` vector registers. The same layers, same machine: 59 ms at 4 rows, 60 at 6, 64
at 8, 72 at 10. It is compiled on first use with the system's C compiler (``$CC``, else ``cc``) for this machine
(``-O3 -march=native -funroll-loops``) into ``<dspark_hf cache>/kernels/``, keyed by a hash of its source, the flags, the
compiler and the CPU's model and instruction-set flags, and loaded with :mod:`ctypes` (no Python headers,
no torch headers, about a second to build).
Where there is no compiler, or the build fails, :func:`kernel_unavailable` says why and nothing uses it.

Exactness: like the weight-major product (:mod:`.linear_kernels`), it adds the same products in another
order than the BLAS, so its rows differ from ``F.linear``'s in the last bits of float32; it is offered to
float32 verification forwards only (never to plain decoding, never to row-by-row bf16 verification), at the
row counts :mod:`.weight_major` measures faster on the machine.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading

import torch

MAX_ROWS = 16

_SOURCE = r"""
#include <string.h>
#define LANES 16
typedef float vf __attribute__((vector_size(64)));
static inline vf load(const float* p) { vf v; memcpy(&v, p, sizeof v); return v; }
/* y[r * out + j] = sum_k x[r * in + k] * w[j * in + k] for r < M: each weight row is read once and meets
   all M input rows (which stay in cache) in M vector accumulators. */
#define ROWS(M) \
static void rows_##M(const float* w, const float* x, float* y, long out, long in) { \
    long vin = in - in % LANES; \
    for (long j = 0; j < out; j++) { \
        const float* wr = w + j * in; \
        vf acc[M]; \
        for (int r = 0; r < M; r++) acc[r] = (vf){0}; \
        for (long k = 0; k < vin; k += LANES) { \
            __builtin_prefetch(wr + k + 8 * in); /* the row 8 ahead: streams stay ahead of the loads */ \
            vf wv = load(wr + k); \
            for (int r = 0; r < M; r++) acc[r] += wv * load(x + r * in + k); \
        } \
        for (int r = 0; r < M; r++) { \
            float s = 0.0f; \
            for (int l = 0; l < LANES; l++) s += acc[r][l]; \
            for (long k = vin; k < in; k++) s += wr[k] * x[r * in + k]; \
            y[r * out + j] = s; \
        } \
    } \
}
ROWS(1) ROWS(2) ROWS(3) ROWS(4) ROWS(5) ROWS(6) ROWS(7) ROWS(8)
ROWS(9) ROWS(10) ROWS(11) ROWS(12) ROWS(13) ROWS(14) ROWS(15) ROWS(16)
typedef void (*rows_fn)(const float*, const float*, float*, long, long);
static const rows_fn TABLE[17] = {0, rows_1, rows_2, rows_3, rows_4, rows_5, rows_6, rows_7, rows_8,
                                  rows_9, rows_10, rows_11, rows_12, rows_13, rows_14, rows_15, rows_16};
int dspark_few_row_linear(const float* w, const float* x, float* y, long out, long in, long m) {
    if (m < 1 || m > 16) return 1;
    TABLE[m](w, x, y, out, in);
    return 0;
}
"""
_FLAGS = ("-O3", "-march=native", "-funroll-loops", "-shared", "-fPIC") + (
    ("-mprefer-vector-width=512",) if platform.machine() in ("x86_64", "AMD64") else ())  # GCC's -march=native
# on recent Intel CPUs prefers 256-bit vectors; this keeps each 16-lane accumulator in one AVX-512 register
_LOCK = threading.Lock()
_STATE: dict[str, object] = {}


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc"))


def _cpu_identity() -> str:
    """The CPU's model name and instruction-set flags (``/proc/cpuinfo``; the platform's processor name elsewhere):
    a library built with ``-march=native`` on one CPU may use instructions another lacks, and a cache folder can
    outlive a machine (this project's has moved between an AMD EPYC and two kinds of Intel Xeon)."""
    try:
        with open("/proc/cpuinfo") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = ("model name", "flags", "Features", "CPU implementer", "CPU part")
    return "\n".join(sorted({line for line in lines if line.split(":")[0].strip() in wanted}))


def _library_path(compiler: str):
    from dspark_hf.cache_dir import cache_root

    identity = "\0".join((_SOURCE, " ".join(_FLAGS), os.path.realpath(compiler), platform.machine(), _cpu_identity()))
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return cache_root() / "kernels" / f"few_row_linear-{digest}.so"


def _build() -> ctypes.CDLL | str:
    """The loaded library, built first where it is not in the cache yet; a one-line reason where it cannot be."""
    compiler = _compiler()
    if compiler is None:
        return f"no C compiler ({os.environ.get('CC', 'cc')} not found)"
    path = _library_path(compiler)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            source = os.path.join(tmp, "few_row_linear.c")
            built = os.path.join(tmp, "few_row_linear.so")
            with open(source, "w") as handle:
                handle.write(_SOURCE)
            try:
                done = subprocess.run([compiler, *_FLAGS, source, "-o", built], capture_output=True, text=True, timeout=120)
            except (OSError, subprocess.TimeoutExpired) as err:
                return f"{compiler} failed ({type(err).__name__})"
            if done.returncode != 0:
                first = (done.stderr.strip().splitlines() or ["no message"])[0]
                return f"{compiler} failed: {first}"
            os.replace(built, path)  # atomic: another process loads a whole library or builds its own
    try:
        library = ctypes.CDLL(str(path))
    except OSError as err:
        return f"cannot load {path.name} ({err})"
    function = library.dspark_few_row_linear
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_long]
    function.restype = ctypes.c_int
    return library


def _library() -> ctypes.CDLL | str:
    """The library (or why there is none), built or refused once per process."""
    if "library" not in _STATE:
        with _LOCK:
            if "library" not in _STATE:
                _STATE["library"] = _build()
    return _STATE["library"]


def _kernel():
    """The kernel's function, or ``None`` where it is switched off or not built here (:func:`kernel_unavailable`)."""
    return None if kernel_unavailable() is not None else _library().dspark_few_row_linear


def kernel_unavailable() -> str | None:
    """``None`` where :func:`few_row_linear` runs here (building it on first call), else why not (one line)."""
    if os.environ.get("DSPARK_HF_FEW_ROW_KERNEL", "1") == "0":
        return "switched off by DSPARK_HF_FEW_ROW_KERNEL=0"
    library = _library()
    return library if isinstance(library, str) else None


def _takes(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the kernel's layout fits: float32 on a CPU, a contiguous 2-D weight, 1 to :data:`MAX_ROWS` rows."""
    return (
        x.dtype == weight.dtype == torch.float32
        and x.device.type == weight.device.type == "cpu"
        and weight.dim() == 2
        and weight.is_contiguous()
        and x.shape[-1] == weight.shape[1]
        and 1 <= x.numel() // max(x.shape[-1], 1) <= MAX_ROWS
    )


def few_row_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for an input of at most :data:`MAX_ROWS` rows (any leading shape), float32
    on a CPU, computed by the compiled kernel; ``F.linear`` itself for any other input or where the kernel is
    switched off or not built here."""
    kernel = _kernel() if _takes(x, weight) else None
    if kernel is None:
        return torch.nn.functional.linear(x, weight, bias)
    flat = x.reshape(-1, x.shape[-1]).contiguous()
    out = torch.empty(flat.shape[0], weight.shape[0], dtype=torch.float32)
    if kernel(weight.data_ptr(), flat.data_ptr(), out.data_ptr(), weight.shape[0], weight.shape[1], flat.shape[0]) != 0:
        raise RuntimeError(f"few_row_linear: the kernel refused {flat.shape[0]} rows (it takes 1 to {MAX_ROWS})")
    if bias is not None:
        out += bias
    return out.reshape(*x.shape[:-1], weight.shape[0])
