"""Acceptance of a draft: tau (mean tokens added per verification forward, counting the target's own
correction or bonus token, as :attr:`GenerationTelemetry.tau`) on benchmark prompts.

Each prompt is the first turn of a record's ``turns`` with the chat template applied; generation is
greedy with the given verification policy (default: the whole block). Per data set and overall, tau is
pooled over all drafting rounds (total emitted tokens / total rounds).

    python -m dspark_hf.training.evaluate_acceptance --draft runs/dspark/draft \
        --datasets mt-bench gsm8k humaneval --num-prompts 20 --max-new-tokens 128 --json tau.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dspark_hf.eval_prompts import datasets_dir

def first_turns(path: str | Path, count: int, start: int = 0) -> list[str]:
    """The first turns of records ``start .. start + count - 1`` of a benchmark file."""
    prompts, index = [], 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            if index >= start:
                prompts.append(json.loads(line)["turns"][0])
            index += 1
            if len(prompts) == count:
                break
    return prompts


@torch.no_grad()
def measure_tau(target, tokenizer, draft, prompts: list[str], max_new_tokens: int = 128, policy: str = "whole",
                progress: bool = True) -> dict:
    """Greedy speculative generation of every prompt; returns pooled tau, per-slot survival (the share of
    rounds that verified slot ``k`` whose first ``k`` drafted tokens were all accepted), the histogram of
    accepted draft tokens per round, and per-prompt records."""
    from dspark_hf.benchmarks.metrics import per_slot_acceptance
    from tqdm.auto import tqdm
    from transformers import GenerationConfig

    import dspark_hf  # noqa: F401  (installs the generation hook)

    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, dspark_policy=policy)
    rows, emitted, rounds, new_tokens, start = [], 0, 0, 0, time.perf_counter()
    steps = []
    bar = tqdm(prompts, desc="tau", unit="prompt", disable=not progress, dynamic_ncols=True)
    for prompt in bar:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
        target.generate(ids, assistant_model=draft, generation_config=config, attention_mask=torch.ones_like(ids))
        telemetry = draft.last_telemetry
        steps.extend(telemetry.steps)
        steps_emitted = sum(s.emitted for s in telemetry.steps)
        emitted += steps_emitted
        rounds += len(telemetry.steps)
        new_tokens += telemetry.new_tokens
        rows.append({"tau": telemetry.tau, "rounds": len(telemetry.steps), "new_tokens": telemetry.new_tokens})
        bar.set_postfix(tau=f"{emitted / max(rounds, 1):.3f}", tok_s=f"{new_tokens / (time.perf_counter() - start):.1f}")
    histogram = [0] * (draft.config.block_size + 1)
    for step in steps:
        histogram[min(step.accepted, draft.config.block_size)] += 1
    return {"tau": emitted / rounds if rounds else 0.0, "rounds": rounds, "emitted": emitted,
            "per_slot_acceptance": per_slot_acceptance(steps, draft.config.block_size), "accepted_histogram": histogram,
            "prompts": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure a draft's tau on benchmark prompts (greedy).")
    parser.add_argument("--draft", help="draft folder or Hub id (default: the shipped default draft)")
    parser.add_argument("--target", help="target folder or Hub id (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--datasets", nargs="+", default=["mt-bench", "gsm8k", "humaneval"])
    parser.add_argument("--datasets-dir", default=None, help="folder of <name>.jsonl (default: $DSPARK_EVAL_DATASETS_DIR or ../shared/eval_datasets)")
    parser.add_argument("--num-prompts", type=int, default=20)
    parser.add_argument("--start", type=int, default=0, help="first record of each set (e.g. 40: held out from the bench's 0-19)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "bfloat16-batched"],
                        help="as for dspark generate (tau does not depend on the draft's dtype)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--policy", default="whole")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from dspark_hf.loading import load_draft
    from dspark_hf.loading import load_target_with_precision

    target, tokenizer, precision = load_target_with_precision(args.target, args.dtype)
    draft = load_draft(args.draft, target, dtype=precision.draft_dtype)
    results, emitted, rounds = {}, 0, 0
    for name in args.datasets:
        prompts = first_turns(datasets_dir(args.datasets_dir) / f"{name}.jsonl", args.num_prompts, args.start)
        result = measure_tau(target, tokenizer, draft, prompts, args.max_new_tokens, args.policy)
        results[name] = result
        emitted += result["emitted"]
        rounds += result["rounds"]
        slots = " ".join("-" if v is None else f"{v:.3f}" for v in result["per_slot_acceptance"])
        print(f"{name}: tau {result['tau']:.3f} over {result['rounds']} rounds ({len(prompts)} prompts); "
              f"survival per slot {slots}", flush=True)
    overall = emitted / rounds if rounds else 0.0
    print(f"all: tau {overall:.3f}; mean of data sets {sum(r['tau'] for r in results.values()) / len(results):.3f}")
    if args.json:
        summary = {
            "draft": args.draft or "default", "policy": args.policy, "max_new_tokens": args.max_new_tokens,
            "num_prompts": args.num_prompts, "start": args.start, "precision": precision.describe(), "tau_all": overall,
            "tau": {k: v["tau"] for k, v in results.items()}, "details": results,
        }
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
