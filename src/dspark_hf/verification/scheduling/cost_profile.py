"""Profiled cost curves: the target's verification forwards per second against tokens per forward.

A :class:`CostProfile` is measured by :func:`dspark_hf.verification.scheduling.profiler.profile_target` (``dspark
profile``) on the machine that will generate, and stored as JSON under
``<dspark_hf cache>/profiles/``, one file per (model, device, dtype) key, where the cache is
:func:`dspark_hf.cache_dir.cache_root` (``$DSPARK_HF_CACHE``, else ``~/.cache/dspark_hf``).
The hardware-aware policy finds the file for its target with :func:`find_profile`.

The key names the model (its Hub id or folder name plus its shape), the device (GPU name, or the CPU
model, generation and kernel-relevant instruction sets, :func:`cpu_identity`, and torch's thread count: CPU
cost depends on all of them) and the dtype, so a profile is never reused on a machine or setting it was not
measured on.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import time
from bisect import bisect_left
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from dspark_hf.errors import DSparkError
from dspark_hf.verification.row_mode import verification_mode

PROFILE_VERSION = 1


class ProfileMissingError(DSparkError, FileNotFoundError):
    """No cost profile exists for this target, device and dtype."""


@dataclass
class CostProfile:
    """Median seconds of one target forward at each measured tokens-per-forward ``B`` (with a KV cache of
    ``context_length`` tokens), and the draft's median seconds per round (0 when not measured).

    ``steps_per_second(B)`` interpolates linearly in seconds between measured ``B`` and extrapolates
    the last segment's slope beyond the largest one (never below the largest measured time)."""

    model: str
    device: str
    dtype: str
    tokens: list[int]
    target_seconds: list[float]
    draft_seconds: float = 0.0
    context_length: int = 0
    repeats: int = 0
    warmup: int = 0
    created: str = ""
    versions: dict = field(default_factory=dict)
    version: int = PROFILE_VERSION
    verification: str = "batched"  # "rows": computed row by row; "weight-major": float32 linears weight-major (row_mode)

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.target_seconds) or not self.tokens:
            raise DSparkError("A cost profile needs one measured time per tokens-per-forward value.")
        order = sorted(range(len(self.tokens)), key=self.tokens.__getitem__)
        self.tokens = [int(self.tokens[i]) for i in order]
        self.target_seconds = [float(self.target_seconds[i]) for i in order]

    @property
    def key(self) -> str:
        return compose_key(self.model, self.device, self.dtype, self.verification)

    def step_seconds(self, tokens: int) -> float:
        """Seconds of one target forward over ``tokens`` tokens."""
        xs, ys = self.tokens, self.target_seconds
        if tokens <= xs[0] or len(xs) == 1:
            return ys[0] if tokens <= xs[0] else ys[-1]
        i = bisect_left(xs, tokens)
        if i < len(xs) and xs[i] == tokens:
            return ys[i]
        if i == len(xs):  # beyond the largest measured B: continue the last slope
            slope = max(0.0, (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]))
            return ys[-1] + slope * (tokens - xs[-1])
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        return y0 + (y1 - y0) * (tokens - x0) / (x1 - x0)

    def steps_per_second(self, tokens: int) -> float:
        """``SPS(B)``: verification forwards per second at ``B`` tokens per forward."""
        return 1.0 / max(self.step_seconds(tokens), 1e-12)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CostProfile":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def _sanitise(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "unknown"


def model_name(target) -> str:
    """The target's Hub id or folder name, and its shape (type, layers, hidden size)."""
    cfg = target.config.get_text_config() if hasattr(target.config, "get_text_config") else target.config
    source = str(getattr(target.config, "_name_or_path", "") or getattr(target, "name_or_path", "") or "model")
    name = Path(source).name if os.path.isabs(source) or Path(source).expanduser().exists() else source.replace("/", "--")
    return _sanitise(f"{name}-{cfg.model_type}-L{cfg.num_hidden_layers}-H{cfg.hidden_size}")


def device_name(device: torch.device | str) -> str:
    """GPU name, or the CPU's identity (:func:`cpu_identity`) with torch's intra-op thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return _sanitise(f"cuda-{torch.cuda.get_device_name(device)}")
    if device.type == "cpu":
        return _sanitise(f"cpu-{_cpu_model()}-{torch.get_num_threads()}threads")
    return _sanitise(device.type)


# CPU features that change which kernels torch runs, so what a forward costs and how its rows round.
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16", "asimd", "sve", "sve2")


def cpu_identity(cpuinfo: str) -> str:
    """The CPU named by ``/proc/cpuinfo`` text: its model name, ``f<family>m<model>`` where given, and those of
    :data:`KERNEL_FLAGS` it has. A model name alone does not identify the machine a measurement holds for:
    virtual machines report generic names, and this project measured two hosts both named "Intel(R) Xeon(R)
    Processor", one with AMX (a bf16 forward of 8 new rows about 70 ms) and one without (about 120 ms), on
    which cost profiles and the ``auto`` dtype's choice differ. ``""`` when the text names no model."""
    first = cpuinfo.split("\n\n", 1)[0]
    fields = {}
    for line in first.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            fields.setdefault(name.strip().lower(), value.strip())
    model = fields.get("model name") or fields.get("cpu model") or ""
    if not model:
        return ""
    family, number = fields.get("cpu family"), fields.get("model")
    generation = f" f{family}m{number}" if family and number else ""
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    kernels = " ".join(f for f in KERNEL_FLAGS if f in flags)
    return f"{model}{generation}" + (f" {kernels}" if kernels else "")


@functools.lru_cache(maxsize=1)
def _cpu_model() -> str:
    """This CPU's :func:`cpu_identity` (read once per process: keys are built on every batch-engine step), else
    the platform's processor name."""
    try:
        identity = cpu_identity(Path("/proc/cpuinfo").read_text())
    except OSError:
        identity = ""
    return identity or platform.processor() or platform.machine()


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


_KEY_SUFFIX = {"batched": "", "rows": "__rows", "rows-weight-major": "__rows_wm", "weight-major": "__wm",
               "weight-major-compiled": "__wmc"}


def compose_key(model: str, device: str, dtype: str, verification: str = "batched") -> str:
    """``<model>__<device>__<dtype>``, with ``__rows`` for row-by-row verification (``__rows_wm`` with
    weight-major layers where bit-identical), ``__wm`` for weight-major float32 verification linears and ``__wmc``
    where some row counts use the compiled few-row kernel (:func:`~dspark_hf.verification.row_mode.verification_mode`)."""
    return f"{model}__{device}__{dtype}" + _KEY_SUFFIX.get(verification, f"__{_sanitise(verification)}")


def profile_key(target, verification: str | None = None) -> str:
    """The (model, device, dtype, verification) key of ``target`` as it stands now (device of its
    parameters, its dtype, torch's current thread count; ``__rows`` when this thread verifies row by row and
    ``__wm`` when its float32 verification linears run weight-major, :mod:`dspark_hf.verification.row_mode`:
    both change what a verification forward costs). ``verification`` names the mode instead of this thread's."""
    param = next(target.parameters())
    mode = verification_mode() if verification is None else verification
    return compose_key(model_name(target), device_name(param.device), dtype_name(param.dtype), mode)


def profiles_dir() -> Path:
    """``<dspark_hf cache>/profiles``."""
    from dspark_hf.cache_dir import cache_root

    return cache_root() / "profiles"


def profile_path(key: str) -> Path:
    return profiles_dir() / f"{key}.json"


def write_json_atomically(data: dict, path: Path) -> Path:
    """Write ``data`` as indented JSON at ``path`` through a staging file, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(f".{os.getpid()}.tmp")
    staging.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(staging, path)
    return path


def save_profile(profile: CostProfile, path: Path | None = None) -> Path:
    """Write ``profile`` as JSON (atomically) at ``path`` or its key's place; return the path."""
    return write_json_atomically(profile.to_dict(), Path(path) if path is not None else profile_path(profile.key))


def load_profile(path: Path | str) -> CostProfile:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ProfileMissingError(f"No cost profile at {path}.")
    try:
        return CostProfile.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as err:
        raise DSparkError(f"{path} is not a dspark cost profile ({err}); delete it and run `dspark profile` again.") from err


def find_profile(target) -> CostProfile:
    """The stored profile for ``target`` on its current device, dtype and thread count; a
    :class:`ProfileMissingError` naming the command that makes one otherwise."""
    key = profile_key(target)
    path = profile_path(key)
    if not path.is_file():
        raise ProfileMissingError(
            f"No cost profile for {key} (looked for {path}); run `dspark profile --target <this model>` on this machine "
            f"with the same dtype and --threads {torch.get_num_threads()}."
        )
    return load_profile(path)


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
