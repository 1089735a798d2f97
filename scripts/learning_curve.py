"""Held-out tau of every checkpoint of a training run: the learning curve (tau against answer tokens seen).

    python scripts/learning_curve.py --run runs/dspark --start 40 --num-prompts 5 --max-new-tokens 64 \
        --json docs/measurements/learning_curve_dspark.json

For each ``RUN/checkpoints/checkpoint-N`` (kept with ``dspark train --keep-checkpoints``) and the final
``RUN/draft``: greedy, whole-block verification, the first turns of records ``start ..`` of each benchmark
set (held out from the bench's prompts 0-19), pooled tau. Answer tokens seen at step N: N x batch size x
the mean answer tokens per training sequence (the run's data, as ``train_config.json`` names it), times
the run's processes. A run started with ``dspark train --init-from`` gets its starting draft as step 0 and
``--initial-tokens`` (what that draft had seen) added to every point. ``--steps`` limits the points.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def mean_answer_tokens(data: Path, max_length: int, tokenizer) -> float:
    """Trained tokens per sequence of ``data``: token records' masks as they are, other records (written
    answers, chats, text) tokenized as ``dspark train`` does."""
    from dspark_hf.training.data import load_examples

    counts = []
    for line in data.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            if "assistant_mask" not in record:
                counts = [sum(e.assistant_mask) for e in load_examples(tokenizer, data, max_length=max_length)]
                break
            counts.append(sum(record["assistant_mask"][:max_length]))
    return sum(counts) / len(counts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a dspark train --output-dir")
    parser.add_argument("--datasets", nargs="+", default=["mt-bench", "gsm8k", "humaneval"])
    parser.add_argument("--start", type=int, default=40)
    parser.add_argument("--num-prompts", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", required=True)
    parser.add_argument("--steps", default=None, help="comma-separated steps to measure (default: all)")
    parser.add_argument("--initial-tokens", type=int, default=0,
                        help="answer tokens the --init-from draft had seen before this run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import dspark_hf  # noqa: F401
    from dspark_hf.eval_prompts import datasets_dir
    from dspark_hf.loading import load_target
    from dspark_hf.models.dspark.modeling_dspark import DSparkDraft
    from dspark_hf.precision import resolve_precision
    from dspark_hf.training.evaluate_acceptance import first_turns, measure_tau
    from dspark_hf.training.trainer import draft_from_checkpoint

    run = Path(args.run)
    cfg = json.loads((run / "train_config.json").read_text())
    precision = resolve_precision(args.dtype)
    target, tokenizer = load_target(None, dtype=precision.target_dtype)
    per_sequence = mean_answer_tokens(Path(cfg["extra"]["data"]), cfg.get("max_length", 512), tokenizer)
    prompts = {name: first_turns(datasets_dir() / f"{name}.jsonl", args.num_prompts, args.start) for name in args.datasets}
    points = []
    checkpoints = sorted((run / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    entries = [(int(p.name.split("-")[1]), p) for p in checkpoints]
    if (run / "draft" / "config.json").is_file():
        entries.append((cfg.get("max_steps") or entries[-1][0], run / "draft"))
    init_from = cfg["extra"].get("init_from")
    if init_from:
        entries.insert(0, (0, init_from))
    wanted = None if args.steps is None else {int(s) for s in args.steps.split(",")}
    seen = set()
    for step, path in entries:
        if step in seen or (wanted is not None and step not in wanted):
            continue
        seen.add(step)
        if step == 0 and init_from:
            from dspark_hf.loading import load_draft

            draft = load_draft(None if init_from == "default" else init_from, target=target, dtype=precision.draft_dtype)
        elif path.name == "draft":
            draft = DSparkDraft.from_pretrained(path, dtype=precision.draft_dtype).eval()
        else:
            draft = draft_from_checkpoint(target, path).to(precision.draft_dtype).eval()
        emitted = rounds = 0
        per_set = {}
        for name, texts in prompts.items():
            result = measure_tau(target, tokenizer, draft, texts, args.max_new_tokens, "whole", progress=False)
            per_set[name] = result["tau"]
            emitted += result["emitted"]
            rounds += result["rounds"]
        seen_tokens = args.initial_tokens + round(step * cfg["batch_size"] * cfg.get("num_processes", 1) * per_sequence)
        point = {"step": step, "answer_tokens_seen": seen_tokens,
                 "tau": emitted / rounds, "tau_per_set": per_set, "source": str(path)}
        points.append(point)
        print(json.dumps(point), flush=True)
    out = {"run": str(run), "method": cfg["method"], "precision": precision.describe(), "start": args.start,
           "num_prompts": args.num_prompts, "max_new_tokens": args.max_new_tokens, "points": points}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
