"""Cost mode: the speculative loop's overhead measured apart from draft quality.

The target is a random-weight model with a named shape (:data:`TARGET_SHAPES`, e.g. ``qwen3-8b``: a
``Qwen3Config`` with Qwen3-8B's widths and depth, random init, in the dtype and on the device asked
for). The draft runs its real forward every round (its cost is paid in full), but its proposals are
overridden (:class:`ForcedProposals`): the first ``L`` slots propose the target's own precomputed
greedy continuation and the rest propose a deliberately wrong token. The target therefore accepts
exactly ``L`` tokens per round and adds ``L + 1``: tau is ``L + 1`` by construction, and the measured
speed-up over plain ``generate`` (interleaved, :mod:`.session`) set beside the ideal ``L + 1`` shows
what drafting, the larger verification forward and the loop cost.

Policies: ``fixed:L`` (default; verify exactly the ``L`` forced-correct tokens) or any spec, e.g.
``whole`` (verify the whole block; the target then also pays for the rejected tail).
"""

from __future__ import annotations

import copy
import statistics
from pathlib import Path

import torch

from dspark_hf.errors import UnsupportedUsageError
from dspark_hf.benchmarks.methods import DSpark
from dspark_hf.benchmarks.timing import TimedRun

# Widths and depths of the Qwen3 family (config.json of each release); "tiny" is for tests and CPU smoke runs.
TARGET_SHAPES: dict[str, dict] = {
    "tiny": dict(vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, tie_word_embeddings=False),
    "qwen3-0.6b": dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
    "qwen3-1.7b": dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
    "qwen3-4b": dict(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
    "qwen3-8b": dict(vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=128, tie_word_embeddings=False),
    "qwen3-14b": dict(vocab_size=151936, hidden_size=5120, intermediate_size=17408, num_hidden_layers=40,
                      num_attention_heads=40, num_key_value_heads=8, head_dim=128, tie_word_embeddings=False),
}


def shape_config(shape: str):
    """The ``Qwen3Config`` of a named shape (no special tokens: generation never stops early)."""
    from transformers import Qwen3Config

    if shape not in TARGET_SHAPES:
        raise UnsupportedUsageError(f"Unknown --target-shape {shape!r}; choose one of {', '.join(TARGET_SHAPES)}.")
    return Qwen3Config(**TARGET_SHAPES[shape], max_position_embeddings=40960, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
                       bos_token_id=None, eos_token_id=None, pad_token_id=None)


def random_target(shape: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0):
    """A randomly initialised target of ``shape``, built directly on ``device`` in ``dtype``."""
    from transformers import Qwen3ForCausalLM

    config = shape_config(shape)
    config._name_or_path = f"random-{shape}"
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen3ForCausalLM._from_config(config, dtype=dtype)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = None
    model.generation_config.bos_token_id = None
    return model.eval()


def random_draft_for(target, block_size: int = 7, markov_rank: int = 32, seed: int = 0):
    """An untrained DSpark draft shaped for ``target``, on its device and dtype (the real draft cost)."""
    from dspark_hf.models.dspark.config_for_target import draft_config_for_target
    from dspark_hf.models.dspark.modeling_dspark import DSparkDraft

    param = next(target.parameters())
    torch.manual_seed(seed)
    with torch.device(param.device):
        draft = DSparkDraft(draft_config_for_target(target.config, block_size=block_size, markov_rank=markov_rank))
    return draft.to(param.dtype).eval()


def random_prompts(vocab_size: int, count: int, length: int, seed: int = 0, device="cpu") -> list[torch.Tensor]:
    """``count`` prompts of ``length`` random ids (the top id, the draft's mask token, left out)."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab_size - 1, (1, length), generator=generator).to(device) for _ in range(count)]


class ForcedProposals:
    """Overrides a draft's block logits so that slot ``k`` proposes ``continuation[pos + 1]`` for
    ``k < length`` and a different token for ``k >= length``, after the real forward has run.

    ``continuations`` maps a prompt (its ids as a tuple) to the target's full greedy output for it;
    :meth:`select` picks the one in use. Installed on the draft instance by :meth:`install`, removed by
    :meth:`remove`."""

    BIG = 1e4

    def __init__(self, draft) -> None:
        self.draft = draft
        self.length = 0
        self.continuations: dict[tuple, torch.Tensor] = {}
        self.current: torch.Tensor | None = None
        self._original = None

    def select(self, input_ids: torch.Tensor) -> None:
        self.current = self.continuations[tuple(input_ids[0].tolist())].to(next(self.draft.parameters()).device)

    def install(self) -> "ForcedProposals":
        if self._original is not None:
            return self
        original = self.draft.forward
        self._original = original
        self._own = self.draft.__dict__.get("forward")  # an instance-level forward installed by someone else

        def forward(*args, **kwargs):
            out = original(*args, **kwargs)
            if self.current is not None and out.logits is not None:
                self._force(out.logits, kwargs["position_ids"], kwargs["input_ids"].shape[1])
            return out

        self.draft.forward = forward
        return self

    def remove(self) -> None:
        if self._original is not None:
            if self._own is None:
                self.draft.__dict__.pop("forward", None)
            else:
                self.draft.forward = self._own
            self._original = None

    def _force(self, logits: torch.Tensor, position_ids: torch.Tensor, q_len: int) -> None:
        """On the logits' device, with no host synchronisation: slot ``k`` at position ``p`` gets
        ``continuation[p + 1]`` (``k < length``) or that token plus one (``k >= length``)."""
        device = logits.device
        continuation = self.current
        if continuation.device != device:
            continuation = self.current = continuation.to(device)
        following = (position_ids[0, -q_len:].to(device) + 1).clamp(max=continuation.shape[0] - 1)
        right = continuation[following]
        slots = torch.arange(q_len, device=device)
        tokens = torch.where(slots < self.length, right, (right + 1) % logits.shape[-1])
        logits.fill_(-self.BIG)
        logits[0, slots, tokens] = self.BIG


class ForcedDSpark(DSpark):
    """DSpark with :class:`ForcedProposals` of length ``L`` under one policy (``fixed:L`` by default)."""

    kind = "dspark-forced"

    def __init__(self, draft, draft_name: str, forced: ForcedProposals, length: int, policy: str = "fixed:L") -> None:
        spec = policy[:-1] + str(length) if policy.endswith(":L") else policy
        super().__init__(draft, draft_name, spec, id=f"forced-L{length}:{policy}")
        self.policy_template = policy
        self.label = f"forced L={length} / {spec}"
        self.forced = forced
        self.length = int(length)

    def run(self, target, input_ids, generation_config) -> TimedRun:
        self.forced.length = self.length
        self.forced.select(input_ids)
        return super().run(target, input_ids, generation_config)

    def describe(self) -> dict:
        return {**super().describe(), "forced_length": self.length, "policy_template": self.policy_template}


@torch.no_grad()
def precompute_continuations(target, prompts: list[torch.Tensor], generation_config, forced: ForcedProposals) -> None:
    """The target's greedy output for every prompt (plus room for the last round's look-ahead)."""
    config = copy.deepcopy(generation_config)
    config.max_new_tokens = generation_config.max_new_tokens + 1
    config.do_sample = False
    for ids in prompts:
        out = target.generate(ids, generation_config=config, attention_mask=torch.ones_like(ids))
        forced.continuations[tuple(ids[0].tolist())] = out[0].cpu()


def tau_is_exact(steps, length: int) -> bool:
    """Every round added ``L + 1`` tokens (the last one may be cut by the token budget)."""
    if not steps:
        return False
    return all(s.emitted == length + 1 for s in steps[:-1]) and 1 <= steps[-1].emitted <= length + 1


def cost_results(suite_result, methods: list[ForcedDSpark]) -> list[dict]:
    """One row per (policy, L): tau, ideal L + 1, speed-up spread, efficiency, per-round seconds."""
    from dspark_hf.benchmarks import metrics

    plain = [r for r in suite_result.results if r.method == suite_result.suite.plain.id]
    plain_pairs = [(r.run.new_tokens, r.run.seconds) for r in plain]
    out = []
    for method in methods:
        mine = [r for r in suite_result.results if r.method == method.id]
        steps = [s for r in mine for s in r.run.steps]
        full = [s for r in mine for s in r.run.steps[:-1]]  # each call's last round may be cut by the budget
        pairs = [(r.run.new_tokens, r.run.seconds) for r in mine]
        speedup = metrics.spread(metrics.paired_speedups(pairs, plain_pairs)) or {}
        ideal = method.length + 1
        mismatches = sum(1 for m in suite_result.mismatches if m.method == method.id)
        out.append({
            "method": method.id,
            "policy": method.policy_template,
            "policy_spec": method.policy_spec,
            "length": method.length,
            "tau": metrics.tau(full) if full else metrics.tau(steps),
            "tau_all_rounds": metrics.tau(steps),
            "tau_exact": all(tau_is_exact(r.run.steps, method.length) for r in mine),
            "ideal_speedup": ideal,
            "speedup": {**speedup, "aggregate": metrics.aggregate_speedup(pairs, plain_pairs)},
            "efficiency": speedup["median"] / ideal if speedup.get("median") else None,
            "tokens_per_second": metrics.spread(metrics.tokens_per_second(t, s) for t, s in pairs),
            "round_seconds": statistics.median(s.step_seconds for s in steps) if steps else None,
            "draft_seconds_per_round": statistics.median(s.draft_seconds for s in steps) if steps else None,
            "verified_ratio": metrics.verified_ratio(steps),
            "rounds": len(steps),
            "identical": mismatches == 0,
        })
    return out


def profile_methods(target, methods, prompt: torch.Tensor, generation_config, folder: Path, row_limit: int = 25) -> list[str]:
    """One ``generate`` per method under ``torch.profiler`` (CPU, and CUDA when on a GPU); writes the
    operator table sorted by self time to ``folder/profile_<method>.txt``. Returns the file paths."""
    from torch.profiler import ProfilerActivity, profile

    device = prompt.device
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for method in methods:
        with profile(activities=activities) as prof:
            method.run(target, prompt, generation_config)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in method.id)
        path = folder / f"profile_{safe}.txt"
        path.write_text(f"{method.label}\n\n" + prof.key_averages().table(sort_by=sort, row_limit=row_limit) + "\n")
        paths.append(str(path))
    return paths
