"""The cost curve of the packed forward: seconds of one speculative-batch step's target forward
against tokens per forward ``B``, for ``R`` requests at a time.

At batch 1 the hardware-aware policy reads a :class:`~dspark_hf.verification.scheduling.CostProfile`
of one sequence (``dspark profile``). In a continuous batch a step's forward carries ``R`` requests,
each ``[last, d_1 .. d_l]`` over its own paged cache, ``B = R + sum_r l_r`` tokens in all, and its cost
depends on ``R`` as well as on ``B`` (every request reads its own cache). :class:`PackedCostProfile`
holds one curve per measured ``R`` (``dspark profile --packed``); the engine schedules a step of ``R``
decoding requests on the curve of the nearest measured ``R`` at or above it (the largest beyond).

Measured as the engine runs it: ``R`` requests with ``context_length`` cached tokens each, prefilled
through transformers' own continuous-batching processor, then for each ``B`` the tokens spread evenly
over the requests, scheduled by transformers' scheduler into one packed forward that keeps the logits
of every row (as a verification step does), timed, and rewound (:func:`.paged_rewind.rewind_request`);
``warmup`` untimed and ``repeats`` timed forwards per ``B``, interleaved, median kept.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import GenerationConfig
from transformers.generation.configuration_utils import ContinuousBatchingConfig
from transformers.generation.continuous_batching.requests import RequestState

from dspark_hf.batching.paged_rewind import rewind_request
from dspark_hf.errors import DSparkError
from dspark_hf.integration.cpu_block_attention import packed_attention
from dspark_hf.integration.weight_major import float32_verification_mode, wants_weight_major, weight_major_forward
from dspark_hf.verification.row_mode import verification_mode
from dspark_hf.verification.scheduling.cost_profile import (
    CostProfile, ProfileMissingError, device_name, dtype_name, model_name, now_utc, profile_key, profile_path,
    write_json_atomically,
)

DEFAULT_REQUESTS = (1, 2, 4, 8, 16)
DEFAULT_EXTRA = (0, 1, 2, 3, 4, 5, 6, 7)  # drafted tokens per request on top of its last token


@dataclass
class PackedCostProfile:
    """One :class:`CostProfile` (tokens per forward -> seconds) per number of requests ``R``."""

    curves: dict[int, CostProfile] = field(default_factory=dict)

    @property
    def key(self) -> str:
        curve = next(iter(self.curves.values()))
        return packed_key(curve.key, curve.versions.get("attention", "dense"))

    def curve(self, requests: int) -> CostProfile:
        """The curve of the nearest measured ``R`` at or above ``requests`` (the largest beyond)."""
        measured = sorted(self.curves)
        return self.curves[next((r for r in measured if r >= requests), measured[-1])]

    def steps_per_second_for(self, requests: int):
        """``SPS(B)`` for a step of ``requests`` decoding requests."""
        return self.curve(requests).steps_per_second

    def to_dict(self) -> dict:
        return {"curves": {str(r): c.to_dict() for r, c in sorted(self.curves.items())}}

    @classmethod
    def from_dict(cls, data: dict) -> "PackedCostProfile":
        return cls({int(r): CostProfile.from_dict(c) for r, c in data["curves"].items()})


def packed_verification(target) -> str:
    """How the engine's packed verification forwards compute on ``target``: for a float32 target on a CPU
    (:func:`~dspark_hf.integration.weight_major.weight_major_forward`) ``"weight-major"``, or
    ``"weight-major-compiled"`` where the compiled few-row kernel was measured faster for some row count; else
    this thread's mode."""
    return float32_verification_mode(target) if wants_weight_major(target, None) else verification_mode()


def packed_key(curve_key: str, attention: str) -> str:
    """A packed profile's key: its curves' (model, device, dtype, verification) key, ``__packed``, and ``-bd``
    when it timed the CPU block-diagonal attention (:mod:`dspark_hf.integration.cpu_block_attention`), so a
    profile timed with the other attention is never read for this one (their costs differ by up to half
    at 16 requests)."""
    return curve_key + "__packed" + ("-bd" if attention == "block-diagonal" else "")


def packed_profile_path(target) -> Path:
    device = next(target.parameters()).device
    return profile_path(packed_key(profile_key(target, packed_verification(target)), packed_attention(device)))


def save_packed_profile(profile: PackedCostProfile, path: Path | None = None) -> Path:
    return write_json_atomically(profile.to_dict(), Path(path) if path is not None else profile_path(profile.key))


def load_packed_profile(path: Path | str) -> PackedCostProfile:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ProfileMissingError(f"No packed cost profile at {path}.")
    try:
        return PackedCostProfile.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError) as err:
        raise DSparkError(f"{path} is not a dspark packed cost profile ({err}); run `dspark profile --packed` again.") from err


def find_packed_profile(target) -> PackedCostProfile | None:
    """The stored packed profile for ``target`` on its device, dtype and thread count, or ``None``."""
    path = packed_profile_path(target)
    return load_packed_profile(path) if path.is_file() else None


def _spread(tokens: int, requests: int) -> list[int]:
    """``tokens`` split over ``requests`` as evenly as possible (each at least 1)."""
    base, rest = divmod(tokens, requests)
    return [base + (1 if r < rest else 0) for r in range(requests)]


@torch.no_grad()
def measure_packed(
    target,
    requests: int,
    tokens: list[int],
    *,
    context_length: int = 256,
    warmup: int = 2,
    repeats: int = 5,
    seed: int = 0,
) -> list[float]:
    """Median seconds of one packed forward of ``B`` tokens (each of ``tokens``, ``>= requests``) over
    ``requests`` requests with ``context_length`` cached tokens each."""
    vocab = target.config.get_text_config().vocab_size
    generator = torch.Generator().manual_seed(seed)
    page = 16
    per_request = context_length + max(tokens) + 2
    config = ContinuousBatchingConfig(
        page_size=page, num_blocks=requests * (-(-per_request // page) + 1) + 4, max_batch_tokens=max(max(tokens), requests * context_length),
        max_requests_per_batch=requests, allow_block_sharing=False, use_async_batching=False, use_cuda_graph=False,
        max_blocks_per_request=0,
    )
    manager = target.init_continuous_batching(generation_config=GenerationConfig(max_new_tokens=10**6, do_sample=False, eos_token_id=-1),
                                              continuous_batching_config=config)
    processor = manager._create_batch_processor()
    try:
        states = []
        for r in range(requests):
            prompt = torch.randint(0, vocab, (context_length,), generator=generator).tolist()
            state = RequestState(request_id=f"profile_{r}", initial_tokens=prompt, max_new_tokens=10**6, eos_token_id=-1)
            processor.scheduler.add_waiting_request(state)
            states.append(state)
        while any(s.generated_len() == 0 for s in states):  # prefill (split as the token budget requires)
            processor.prepare_next_batch()
            processor._generation_step(target)
            processor.update_batch()
        model = target

        def forward(b: int) -> float:
            for state, q in zip(states, _spread(b, requests)):
                state.tokens_to_process = [state.generated_tokens[-1]] + torch.randint(0, vocab, (q - 1,), generator=generator).tolist()
            start_lengths = [s.position_offset for s in states]
            if not processor.prepare_next_batch() or len(processor.inputs_and_outputs.requests_in_batch) != requests:
                raise DSparkError(f"the packed forward of {b} tokens over {requests} requests did not fit the profiling cache")
            batch = processor.inputs_and_outputs.get_model_kwargs(use_padding=False)
            keep = torch.arange(b, device=target.device)
            batch["logits_indices"] = keep
            batch["logits_to_keep"] = keep
            if target.device.type == "cuda":
                torch.cuda.synchronize(target.device)
            t0 = time.perf_counter()
            with weight_major_forward(model):  # as the engine runs every step of decoding requests alone
                model(**batch).logits.float()
            if target.device.type == "cuda":
                torch.cuda.synchronize(target.device)
            seconds = time.perf_counter() - t0
            for state, length in zip(states, start_lengths):
                rewind_request(processor.cache, state, length)
                state.tokens_to_process = [state.generated_tokens[-1]]
            return seconds

        for _ in range(warmup):
            for b in tokens:
                forward(b)
        times: dict[int, list[float]] = {b: [] for b in tokens}
        for _ in range(repeats):
            for b in tokens:
                times[b].append(forward(b))
        return [statistics.median(times[b]) for b in tokens]
    finally:
        processor.reset()
        if manager._original_attn_impl is not None:  # the manager was never started, so never stopped
            target.set_attn_implementation(manager._original_attn_impl)
        manager.destroy()


def profile_packed(
    target, requests=DEFAULT_REQUESTS, extra=DEFAULT_EXTRA, *, context_length: int = 256, warmup: int = 2, repeats: int = 5,
) -> PackedCostProfile:
    """Measure one curve per ``R`` in ``requests``, at ``B = R + e`` and ``B = R * (1 + e)`` for ``e`` in
    ``extra``: every token count near ``R``, where the engine's steps mostly are and the cost need not be
    linear (weight-major row counts, :mod:`dspark_hf.integration.weight_major`), and whole blocks beyond."""
    import transformers

    param = next(target.parameters())
    curves = {}
    for r in sorted({int(r) for r in requests if int(r) >= 1}):
        tokens = sorted({t for e in extra if int(e) >= 0 for t in (r + int(e), r * (1 + int(e)))})
        seconds = measure_packed(target, r, tokens, context_length=context_length, warmup=warmup, repeats=repeats)
        curves[r] = CostProfile(
            model=model_name(target), device=device_name(param.device), dtype=dtype_name(param.dtype), tokens=tokens,
            target_seconds=seconds, context_length=context_length, repeats=repeats, warmup=warmup, created=now_utc(),
            verification=packed_verification(target),
            versions={"torch": torch.__version__, "transformers": transformers.__version__, "threads": torch.get_num_threads(),
                      "requests": r, "attention": packed_attention(param.device)},
        )
    return PackedCostProfile(curves)
