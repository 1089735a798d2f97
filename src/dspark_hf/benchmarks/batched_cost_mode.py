"""Cost mode for the batched engine: the throughput / per-user-speed frontier of a large target shape,
with acceptance scripted so that what is measured is the engine and its scheduler, not a draft's quality.

The target is a random-weight model of a named shape (:func:`.cost_mode.random_target`, e.g.
``qwen3-8b`` in bf16 on a GPU) and the draft an untrained DSpark draft shaped for it
(:func:`.cost_mode.random_draft_for`): every drafting round runs the real batched draft forward, so its
cost is paid in full. :class:`ScriptedAcceptance` then rewrites each drafted block after the forward:

- every position ``p`` of every prompt's continuation has a scripted confidence ``c(p) =
  sigmoid(logit(base) + spread * z(p))`` (``z`` standard normal, seeded per prompt), so requests pass
  through easy and hard stretches, as real text does;
- slot ``k`` of a block anchored before position ``n`` reports ``c(n + k)`` as its confidence and
  proposes the target's own greedy token at ``n + k`` when ``u(n + k) < c(n + k)`` (``u`` uniform, seeded
  per prompt), a wrong token otherwise; so the reported confidences are calibrated by construction, and
  a slot is accepted iff it and every slot before it were scripted right.

The scripted draws depend on the prompt and the position only, so every policy meets the same
acceptance and the comparison is of verification depths. Outputs are still verified by the target and
checked against plain continuous batching (the greedy continuations come from it), so a wrong engine shows
as mismatches. :func:`scripted_frontier` profiles the packed forward on the device (for the
hardware-aware policy), then runs :func:`.concurrency.bench_concurrency` under the script:
plain continuous batching, fixed lengths and the hardware-aware policy at each concurrency.
``scripts/gpu_frontier.py`` is its command line (issue 15's GPU goal: Qwen3-8B shape, bf16, R = 1..64).
"""

from __future__ import annotations

import math

import torch
from transformers import GenerationConfig

from dspark_hf.batching import processor as processor_module
from dspark_hf.drafting.block import DraftBlock


class ScriptedAcceptance:
    """Rewrites the engine's drafted blocks to scripted tokens and confidences (module docstring),
    while installed as a context manager. ``continuations[i]``: prompt ``i`` followed by the target's
    greedy tokens (at least ``max_new_tokens + block_size`` of them); ``base`` / ``spread``: the
    confidences' centre and spread on the logit scale. ``scripted`` records, per prompt, the number of
    leading slots scripted right in each block drafted for it (in drafting order)."""

    def __init__(self, prompts: list[list[int]], continuations: list[list[int]], *, base: float = 0.8, spread: float = 1.5,
                 seed: int = 0) -> None:
        if not 0.0 < base < 1.0:
            raise ValueError(f"base confidence must be in (0, 1), got {base}")
        self.prompt_length = {len(p) for p in prompts}
        self.index = {tuple(p): i for i, p in enumerate(prompts)}
        self.continuations = [list(c) for c in continuations]
        self.confidence, self.draw = [], []
        centre = math.log(base / (1.0 - base))
        for i, c in enumerate(self.continuations):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + i)
            z = torch.randn(len(c) + 64, generator=generator, dtype=torch.float64)
            self.confidence.append(torch.sigmoid(centre + spread * z))
            self.draw.append(torch.rand(len(c) + 64, generator=generator, dtype=torch.float64))
        self.scripted: dict[int, list[int]] = {}
        self._original = None

    def prompt_of(self, prefix: list[int]) -> int:
        for length in self.prompt_length:
            index = self.index.get(tuple(prefix[:length]))
            if index is not None:
                return index
        raise KeyError("a drafted request whose prompt is not scripted")

    def right(self, prompt: int, position: int) -> bool:
        """Whether a slot proposing position ``position`` of prompt ``prompt``'s continuation is scripted right."""
        return bool(self.draw[prompt][position] < self.confidence[prompt][position])

    def script(self, block: DraftBlock, prefix_ids: torch.Tensor) -> DraftBlock:
        """The scripted version of ``block``, drafted after ``prefix_ids`` ``[1, n]`` (the engine passes
        it on the host). The scripted tokens are chosen on the host and reach the device in one copy, with
        one scatter for their logits: no device read unless the continuation runs out."""
        prefix = prefix_ids[0].tolist()
        i = self.prompt_of(prefix)
        n, gamma = len(prefix), block.tokens.shape[1]
        continuation, confidence = self.continuations[i], self.confidence[i]
        vocab = block.logits.shape[-1]
        drafted = None
        chosen = []
        right_run, broken = 0, False
        for k in range(gamma):
            p = n + k
            if p < len(continuation):
                truth = continuation[p]
            else:
                drafted = block.tokens[0].tolist() if drafted is None else drafted
                truth = drafted[k]
            right = self.right(i, p)
            chosen.append(truth if right else (truth + 1) % vocab)
            if right and not broken:
                right_run += 1
            else:
                broken = True
        self.scripted.setdefault(i, []).append(right_run)
        tokens = torch.tensor([chosen], dtype=block.tokens.dtype, device=block.tokens.device)
        logits = torch.full_like(block.logits, -1e4)
        logits[0].scatter_(-1, tokens[0][:, None], 0.0)
        reported = confidence[n : n + gamma].to(device=block.tokens.device, dtype=torch.float32)
        return DraftBlock(tokens=tokens, logits=logits, confidences=reported)

    def __enter__(self) -> "ScriptedAcceptance":
        original = self._original = processor_module.draft_rounds

        def scripted(draft, contexts, features, prefixes, logits_processor=None, do_sample=False):
            blocks = original(draft, contexts, features, prefixes, logits_processor, do_sample)
            return [self.script(block, prefix) for block, prefix in zip(blocks, prefixes)]

        processor_module.draft_rounds = scripted
        return self

    def __exit__(self, *exc) -> None:
        processor_module.draft_rounds = self._original
        self._original = None


def make_decisive(target, scale: float = 64.0):
    """Make a random target's greedy choice robust to rounding, in place, at no change of cost: the token
    embeddings are scaled by ``scale`` (the residual stream is then dominated by the current token's
    embedding) and the LM head becomes a copy of them, so each step's greedy token is the current one,
    ahead of the next-best logit by far more than bf16 rounding moves a logit.

    Why: a random target's logits over a large vocabulary are nearly tied at the top (the best two of
    ~150k random logits are typically a few bf16 units apart), so in bf16 a verification forward of
    several tokens and a one-token step pick different greedy tokens within a few positions; from there
    the scripted continuation is off the target's path and nothing is accepted (seen on an H200 with the
    Qwen3-8B shape: tau 1.00 at concurrency 1 for every fixed length). Every layer still runs in full."""
    with torch.no_grad():
        embedding = target.get_input_embeddings().weight
        embedding.mul_(scale)
        head = target.get_output_embeddings()
        if head is not None and head.weight.data_ptr() != embedding.data_ptr():
            head.weight.copy_(embedding)
    return target


def greedy_continuations(target, prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
    """Each prompt followed by ``new_tokens`` greedy tokens of plain continuous batching."""
    from dspark_hf.batching.padded import workload_sized_config

    config = GenerationConfig(max_new_tokens=new_tokens, do_sample=False, eos_token_id=-1, pad_token_id=0)
    results = target.generate_batch(inputs=prompts, generation_config=config, progress_bar=False,
                                    continuous_batching_config=workload_sized_config(prompts, new_tokens, 0))
    return [list(p) + list(r.generated_tokens) for p, r in zip(prompts, results.values())]


def scripted_frontier(shape: str, *, device: str = "cpu", dtype: torch.dtype = torch.float32, concurrencies=(1, 2, 4, 8),
                      policies=("fixed:1", "fixed:3", "fixed:7", "hardware"), max_new_tokens: int = 128, prompt_length: int = 256,
                      base: float = 0.8, spread: float = 1.5, repeats: int = 1, block_size: int = 7, seed: int = 0,
                      profile_repeats: int = 5, log=print, on_level=None, decisive: bool = True) -> dict:
    """Profile the packed forward of a random ``shape`` target, then the load benchmark at each of
    ``concurrencies`` under :class:`ScriptedAcceptance`; returns :func:`.concurrency.bench_concurrency`'s
    report with the set-up and the packed profile added. ``on_level(partial_report)``, if given, gets the
    same report with the rows measured so far after each concurrency. ``decisive`` (default): the target goes
    through :func:`make_decisive`, so that in bf16 the scripted continuation stays the target's own path."""
    from dspark_hf.batching.packed_profile import profile_packed, save_packed_profile
    from dspark_hf.benchmarks.concurrency import bench_concurrency
    from dspark_hf.benchmarks.cost_mode import random_draft_for, random_target

    target = random_target(shape, device=device, dtype=dtype, seed=seed)
    if decisive:
        make_decisive(target)
    draft = random_draft_for(target, block_size=block_size, seed=seed)
    vocab = target.config.vocab_size
    generator = torch.Generator().manual_seed(seed)
    count = max(concurrencies)
    prompts = [torch.randint(0, vocab, (prompt_length,), generator=generator).tolist() for _ in range(count)]
    requests = sorted({c for c in concurrencies})
    log(f"profiling the packed forward of random-{shape} ({dtype}, {device}) for R = {requests}")
    profile = profile_packed(target, requests=requests, context_length=prompt_length, repeats=profile_repeats)
    profile_path = save_packed_profile(profile)
    log(f"continuations: {count} prompts x {max_new_tokens + block_size + 1} greedy tokens (plain continuous batching)")
    continuations = greedy_continuations(target, prompts, max_new_tokens + block_size + 1)
    setup = dict(shape=shape, decisive=decisive, base_confidence=base, confidence_spread=spread, prompt_length=prompt_length,
                 packed_profile=profile.to_dict(), packed_profile_path=str(profile_path))

    def level_done(partial: dict) -> None:
        if on_level is not None:
            on_level({**partial, **setup, "partial": True})

    with ScriptedAcceptance(prompts, continuations, base=base, spread=spread, seed=seed) as script:
        report = bench_concurrency(target, draft, prompts, list(concurrencies), list(policies), max_new_tokens=max_new_tokens,
                                   repeats=repeats, log=log, batch_one=False,  # the batch-1 path is not scripted
                                   on_level=level_done)
    report.update(**setup, scripted_blocks=sum(len(v) for v in script.scripted.values()))
    return report
