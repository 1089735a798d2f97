"""Side-by-side comparison of verification policies: ``python -m dspark_hf.scheduling.compare``.

For every prompt, plain greedy generation (no draft) runs first, then every policy in turn (the order
rotates from prompt to prompt, so that drifts of a shared machine spread over all of them); each
speculative output is checked token for token against the plain one. Per dataset it prints tokens
per second, tau (tokens per verification round, bonus included), mean verified length and the
speed-up over plain generation, and marks the best fixed verification length; a JSON file keeps
everything. Prompts: the first ``--count`` of each file (the measurement split; calibration uses a
disjoint held-out split, see :mod:`dspark_hf.calibration.prompt_sets`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dspark_hf.scheduling.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", help="target: folder or Hub id (default: embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--draft", help='draft: folder, Hub id, or "random" (default: the shipped draft)')
    parser.add_argument("--datasets", default="mt-bench,gsm8k,humaneval")
    parser.add_argument("--datasets-dir", default=None)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--count", type=int, default=20, help="prompts per dataset (default 20)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--policies", default=None, help="comma-separated specs (default: whole, fixed:1..block, threshold:0.5, survival:0.5, hardware, online)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="dspark_compare.json")
    return parser


def default_policies(block_size: int) -> list[str]:
    return ["whole"] + [f"fixed:{n}" for n in range(1, block_size)] + ["threshold:0.5", "survival:0.5", "hardware", "online"]


def _generate(target, ids, draft, policy, max_new_tokens):
    import torch
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, dspark_policy=policy)
    kwargs = {"assistant_model": draft} if draft is not None else {}
    start = time.perf_counter()
    out = target.generate(ids, generation_config=config, attention_mask=torch.ones_like(ids), **kwargs)
    return out, time.perf_counter() - start


def run(args) -> dict:
    import torch

    import dspark_hf  # noqa: F401

    from ..calibration.prompt_sets import encode, load_prompts
    from ..cli.generate import load_draft, load_target
    from ..verification_policy import resolve_policy

    torch.set_num_threads(args.threads)
    target, tokenizer = load_target(args.target)
    draft = load_draft(args.draft, target)
    specs = [s.strip() for s in args.policies.split(",")] if args.policies else default_policies(draft.config.block_size)
    policies = {spec: resolve_policy(spec) for spec in specs}
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    prompts = {name: load_prompts(name, args.start, args.count, args.datasets_dir) for name in names}

    warm = encode(tokenizer, "Say hello.")
    _generate(target, warm, None, None, 8)
    for spec, policy in policies.items():  # warm-up; also lets "hardware"/"online" find or make a profile
        _generate(target, warm, draft, policy, 8)

    results = {"machine": {"threads": args.threads, "torch": torch.__version__}, "max_new_tokens": args.max_new_tokens,
               "draft": args.draft or "default", "datasets": {}}
    columns = ["plain", *specs]
    for name in names:
        stats = {c: {"tokens": 0, "seconds": 0.0, "rounds": 0, "emitted": 0, "verified": 0, "mismatches": 0} for c in columns}
        for index, prompt in enumerate(prompts[name]):
            ids = encode(tokenizer, prompt)
            reference, seconds = _generate(target, ids, None, None, args.max_new_tokens)
            new = reference.shape[1] - ids.shape[1]
            stats["plain"]["tokens"] += new
            stats["plain"]["seconds"] += seconds
            order = specs[index % len(specs):] + specs[: index % len(specs)]
            for spec in order:
                out, seconds = _generate(target, ids, draft, policies[spec], args.max_new_tokens)
                row = stats[spec]
                row["tokens"] += out.shape[1] - ids.shape[1]
                row["seconds"] += seconds
                row["mismatches"] += int(not torch.equal(out, reference))
                for step in draft.last_telemetry.steps:
                    row["rounds"] += 1
                    row["emitted"] += step.emitted
                    row["verified"] += step.verified
            print(f"\r{name}: {index + 1}/{len(prompts[name])} prompts", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        results["datasets"][name] = stats
        print(format_dataset(name, stats, specs))
        sys.stdout.flush()
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


def format_dataset(name: str, stats: dict, specs: list[str]) -> str:
    plain_tps = stats["plain"]["tokens"] / stats["plain"]["seconds"]
    fixed = [s for s in specs if s.startswith("fixed:") or s == "whole"]
    tps = {s: stats[s]["tokens"] / stats[s]["seconds"] for s in specs}
    best_fixed = max(fixed, key=tps.get) if fixed else None
    lines = [f"== {name}: plain {plain_tps:.2f} tokens/s ({stats['plain']['tokens']} tokens)",
             "policy           tokens/s   speed-up   tau    mean L   vs best fixed   exact"]
    for s in specs:
        row = stats[s]
        tau = row["emitted"] / row["rounds"] if row["rounds"] else 0.0
        mean_l = row["verified"] / row["rounds"] if row["rounds"] else 0.0
        mark = " <- best fixed" if s == best_fixed else ""
        ratio = tps[s] / tps[best_fixed] if best_fixed else float("nan")
        exact = "yes" if row["mismatches"] == 0 else f"NO ({row['mismatches']})"
        lines.append(f"{s:<16} {tps[s]:8.2f}   {tps[s] / plain_tps:7.2f}x   {tau:4.2f}   {mean_l:5.2f}    {ratio:7.3f}       {exact}{mark}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
