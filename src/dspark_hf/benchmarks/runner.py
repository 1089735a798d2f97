"""The two benchmark runs behind ``dspark bench``, as Python functions that return the report dict.

- :func:`bench_prompts`: real prompts on a target with its DSpark drafts and the baselines;
- :func:`bench_cost`: cost mode (:mod:`.cost_mode`).

Both run inside :func:`.settings.preserved_settings`: torch's thread count (set to ``threads`` while
measuring), its random state and the drafts' policies and online estimates are as before afterwards.
Output files are written by the caller (:func:`write_outputs`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import GenerationConfig

from dspark_hf.benchmarks import prompt_runs
from dspark_hf.benchmarks import report as report_mod
from dspark_hf.benchmarks.methods import AssistantModel, DSpark, PlainOnDSparkKernels, PromptLookup, has_confidence_head
from dspark_hf.benchmarks.prompt_sets import encode_prompts
from dspark_hf.benchmarks.session import Suite, run_suite
from dspark_hf.benchmarks.settings import preserved_settings


def generation_config(max_new_tokens: int, temperature: float = 0.0) -> GenerationConfig:
    """The shared config: greedy, or plain temperature sampling (no top-k / top-p)."""
    if temperature > 0:
        return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
    return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False)


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


def bench_prompts(
    target,
    tokenizer,
    drafts: dict,
    prompt_sets: dict[str, list[str]],
    *,
    policies: list[str] = ("whole",),
    dflash_policies: list[str] | None = None,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    prompt_lookup_tokens: int | None = 10,
    pair: tuple | None = None,
    repeats: int = 1,
    warmup: int = 1,
    seed: int = 0,
    threads: int | None = 1,
    start: int = 0,
    target_name: str = "target",
    command: str = "",
    progress: bool = True,
    precision: str | None = None,
    generation_options: dict | None = None,
    linear_ablation: bool = False,
    plain_kernels: bool = False,
) -> dict:
    """Measure every draft under every policy, prompt lookup (unless ``prompt_lookup_tokens`` is
    ``None``) and, when ``pair = (pair_target, pair_tokenizer, assistant, name)`` is given, assisted
    generation on that pair, each next to plain generation of its own target. ``start``: the file index
    of each set's first prompt (``--start``), used for prompt indices and per-prompt seeds. Drafts
    without a confidence head (DFlash, EAGLE-3) run under ``dflash_policies``; by default ``policies`` less those
    that read confidences and would only repeat whole-block verification (:func:`confidence_free`).
    With a ``fixed:L`` policy among ``policies`` the report carries ``policy_comparison``. The
    report's ``prompt_runs`` (per-prompt records, :mod:`.prompt_runs`) go to ``runs.jsonl.gz``, not
    to ``bench.json``. ``linear_ablation``: every DSpark method runs a second time with transformers'
    ``F.linear`` in its verification forwards (``dspark_weight_major=False``, id suffix ``+F.linear``), to show
    what the weight-major kernels (:mod:`dspark_hf.integration.weight_major`) add, and for a float32 target a third time
    without the compiled few-row kernel (``dspark_few_row_kernel=False``, suffix ``+no-few-row``), to show what
    that kernel adds over the weight-major product. ``plain_kernels``: plain
    generation inside the verification context too (:class:`~.methods.PlainOnDSparkKernels`), to show what the
    kernels give without drafting."""
    greedy = temperature <= 0
    config = generation_config(max_new_tokens, temperature)
    for key, value in (generation_options or {}).items():  # e.g. dspark_single_step_rows (--dtype)
        setattr(config, key, value)
    with preserved_settings(drafts.values(), threads=threads):
        device = _device_of(target)
        methods = []
        if prompt_lookup_tokens:
            methods.append(PromptLookup(prompt_lookup_tokens))
        if plain_kernels:
            methods.append(PlainOnDSparkKernels())
        for name, draft in drafts.items():
            has_confidences = has_confidence_head(draft)
            mine = policies if has_confidences else (confidence_free(policies) if dflash_policies is None else dflash_policies)
            for policy in dict.fromkeys(mine):
                methods.append(DSpark(draft, name, policy))
                if linear_ablation:
                    methods.append(DSpark(draft, name, policy, options={"dspark_weight_major": False}, suffix="+F.linear"))
                    if next(target.parameters()).dtype == torch.float32:
                        methods.append(DSpark(draft, name, policy, options={"dspark_few_row_kernel": False}, suffix="+no-few-row"))
        suites = [Suite(
            target_name, target, methods,
            {name: encode_prompts(tokenizer, prompts, device) for name, prompts in prompt_sets.items()},
            warmup_ids=encode_prompts(tokenizer, ["Say hello."], device)[0], first_index=start,
        )]
        if pair is not None:
            pair_target, pair_tokenizer, assistant, assistant_name = pair
            pair_device = _device_of(pair_target)
            pair_methods = [AssistantModel(assistant, assistant_name)]
            if prompt_lookup_tokens:
                pair_methods.append(PromptLookup(prompt_lookup_tokens))
            suites.append(Suite(
                f"{pair_target.config._name_or_path and Path(str(pair_target.config._name_or_path)).name or 'pair'} (baseline pair)",
                pair_target, pair_methods,
                {name: encode_prompts(pair_tokenizer, prompts, pair_device) for name, prompts in prompt_sets.items()},
                warmup_ids=encode_prompts(pair_tokenizer, ["Say hello."], pair_device)[0], first_index=start,
            ))
        results = [run_suite(s, config, repeats=repeats, warmup=warmup, seed=seed, greedy=greedy, progress=progress) for s in suites]
        machine = report_mod.machine_info(device, next(target.parameters()).dtype)
    settings = {
        "max_new_tokens": max_new_tokens, "temperature": temperature, "start": start, "limit": max(len(p) for p in prompt_sets.values()),
        "datasets": list(prompt_sets), "policies": list(policies),
        "dflash_policies": None if dflash_policies is None else list(dflash_policies), "drafts": list(drafts),
        "prompt_lookup_num_tokens": prompt_lookup_tokens, "baseline_pair": pair[3] if pair else None,
        "repeats": repeats, "warmup": warmup, "seed": seed, "threads": threads, "precision": precision,
    }
    report = report_mod.build_report(results, settings=settings, machine=machine, command=command, greedy=greedy)
    report["prompt_runs"] = prompt_runs.records(results)
    return report


def confidence_free(policies) -> list[str]:
    """``policies`` without those that verify the whole block when a draft has no confidences
    (``needs_confidences``: ``threshold``, ``survival``); ``hardware`` and ``online`` stay (they
    estimate acceptance online for such drafts)."""
    from dspark_hf.verification.policies import resolve_policy

    return [p for p in policies if not resolve_policy(p).needs_confidences]


def bench_cost(
    *,
    target_shape: str = "tiny",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    draft=None,
    draft_name: str = "random",
    block_size: int = 7,
    lengths: list[int] | None = None,
    policies: list[str] = ("fixed:L",),
    prompt_length: int = 128,
    prompts: int = 3,
    max_new_tokens: int = 64,
    repeats: int = 3,
    warmup: int = 1,
    seed: int = 0,
    threads: int | None = 1,
    profile_dir: Path | str | None = None,
    command: str = "",
    progress: bool = True,
) -> dict:
    """Cost mode (see :mod:`.cost_mode`); ``lengths`` default to ``0 .. block_size``."""
    from dspark_hf.benchmarks import cost_mode

    with preserved_settings([draft] if draft is not None else [], threads=threads):
        target = cost_mode.random_target(target_shape, device, dtype, seed)
        if draft is None:
            draft = cost_mode.random_draft_for(target, block_size=block_size, seed=seed + 1)
        else:
            draft = draft.to(device=_device_of(target), dtype=dtype)
        block = draft.config.block_size
        lengths = list(range(block + 1)) if lengths is None else [int(x) for x in lengths]
        config = generation_config(max_new_tokens)
        ids = cost_mode.random_prompts(target.config.vocab_size, prompts, prompt_length, seed, _device_of(target))
        forced = cost_mode.ForcedProposals(draft).install()
        try:
            methods = [cost_mode.ForcedDSpark(draft, draft_name, forced, length, policy)
                       for policy in dict.fromkeys(policies) for length in dict.fromkeys(lengths)]
            cost_mode.precompute_continuations(target, ids, config, forced)
            suite = Suite("cost", target, methods, {"random": ids}, warmup_ids=ids[0])
            result = run_suite(suite, config, repeats=repeats, warmup=warmup, seed=seed, greedy=True, progress=progress)
            rows = cost_mode.cost_results(result, methods)
            profiles = []
            if profile_dir is not None:
                profiles = cost_mode.profile_methods(target, [suite.plain, *methods], ids[0], config, Path(profile_dir))
        finally:
            forced.remove()
        machine = report_mod.machine_info(_device_of(target), dtype)
    plain = [r for r in result.results if r.method == suite.plain.id]
    from dspark_hf.benchmarks import metrics

    flags = [f"GREEDY MISMATCH: {m.describe()}" for m in result.mismatches]
    flags += [f"tau not exactly L + 1 for {r['method']} (tau {r['tau']})" for r in rows if not r["tau_exact"]]
    return {
        "schema": report_mod.SCHEMA,
        "mode": "cost",
        "created": report_mod.now_utc(),
        "command": command,
        "machine": machine,
        "settings": {"max_new_tokens": max_new_tokens, "repeats": repeats, "warmup": warmup, "seed": seed, "threads": threads,
                     "policies": list(policies), "lengths": lengths},
        "cost": {
            "target_shape": target_shape, "target_parameters": sum(p.numel() for p in target.parameters()),
            "draft": draft_name, "block_size": block, "markov_rank": draft.config.markov_rank,
            "prompt_length": prompt_length, "prompts": prompts, "max_new_tokens": max_new_tokens, "repeats": repeats,
            "plain": {"tokens_per_second": metrics.spread(metrics.tokens_per_second(r.run.new_tokens, r.run.seconds) for r in plain),
                      "seconds": metrics.spread(r.run.seconds for r in plain)},
            "results": rows,
            "profiles": profiles,
        },
        "mismatches": [{"suite": suite.name, **m.to_dict()} for m in result.mismatches],
        "flags": flags,
        "files": {},
    }


def write_outputs(report: dict, out: Path | str, plots: bool = True) -> dict:
    """``bench.json``, ``bench.md`` and the PNGs in ``out``; returns ``report["files"]``."""
    from dspark_hf.benchmarks.plots import write_plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out / "bench.json"), "markdown": str(out / "bench.md"), "plots": []}
    runs = report.pop("prompt_runs", None)
    if runs is not None:
        files["runs"] = str(prompt_runs.write_runs(runs, out / prompt_runs.RUNS_FILE))
    if plots:
        files["plots"] = [str(p) for p in write_plots(report, out)]
    report["files"] = files
    (out / "bench.md").write_text(report_mod.markdown(report))
    report_mod.write_json(report, out / "bench.json")
    return files


def print_flags(report: dict) -> None:
    for flag in report["flags"]:
        print(f"FLAG: {flag}", file=sys.stderr)
