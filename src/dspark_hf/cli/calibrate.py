"""``dspark calibrate``: sequential temperature scaling of a draft's confidences.

Generates held-out prompts (by default prompts 40-59 of mt-bench, gsm8k and humaneval: disjoint from
the first 20 that the scheduling comparison measures) with whole-block verification, fits one
temperature per slot left to right minimising the ECE of the cumulative survival product, prints ECE,
AUROC and Brier per slot before and after, writes a reliability diagram (PNG) and a JSON report, and
stores ``confidence_temperatures`` in the draft folder's config.json (unless ``--no-store``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from dspark_hf.cli.validators import add_dtype_flag


def register(subparsers) -> None:
    parser = subparsers.add_parser("calibrate", help="fit per-slot confidence temperatures (STS) on held-out prompts")
    parser.add_argument("--target", help="target model: local folder or Hub id (default: embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--draft", help='draft folder or Hub id (default: the shipped draft), or "random" (nothing is stored)')
    parser.add_argument("--datasets", default="mt-bench,gsm8k,humaneval", help="prompt files (names in --datasets-dir)")
    parser.add_argument("--datasets-dir", default=None, help="folder of <name>.jsonl prompt files (default: $DSPARK_EVAL_DATASETS_DIR or ../shared/eval_datasets)")
    parser.add_argument("--start", type=int, default=None, help="first held-out prompt index per file (default 40)")
    parser.add_argument("--count", type=int, default=20, help="held-out prompts per file (default 20)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature of the calibration runs (0 = greedy, default)")
    parser.add_argument("--bins", type=int, default=15, help="ECE bins (default 15)")
    parser.add_argument("--out", default="dspark_calibration", help="folder for report.json and reliability.png")
    parser.add_argument("--no-store", action="store_true", help="do not write the temperatures into the draft's config.json")
    parser.add_argument("--threads", type=int, default=None)
    add_dtype_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    import dspark_hf  # noqa: F401

    from dspark_hf.verification.calibration.collect import collect_rounds
    from dspark_hf.eval_prompts import HELD_OUT_START, encode, load_prompts
    from dspark_hf.verification.calibration.report import format_table, per_slot_metrics, reliability_diagram
    from dspark_hf.verification.calibration.sts import fit_sequential_temperatures
    from dspark_hf.verification.calibration.temperatures import store_temperatures
    from dspark_hf.bundled.draft import DEFAULT_DRAFT_DIR
    from dspark_hf.cli.validators import check_draft_folder, check_shared_flags
    from dspark_hf.errors import UnsupportedUsageError
    from dspark_hf.loading import load_draft

    check_shared_flags(args)  # --threads, --max-new-tokens, --temperature
    if args.count < 1:
        raise UnsupportedUsageError(f"--count must be at least 1, got {args.count}.")
    check_draft_folder(args.draft)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = HELD_OUT_START if args.start is None else args.start
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    prompts = {name: load_prompts(name, start, args.count, args.datasets_dir) for name in names}
    from dspark_hf.loading import load_target_with_precision

    target, tokenizer, precision = load_target_with_precision(args.target, args.dtype)
    print(precision.describe())
    draft = load_draft(args.draft, target, dtype=precision.draft_dtype)
    ids = [encode(tokenizer, p) for name in names for p in prompts[name]]
    split = ", ".join(f"{name} {start}-{start + len(prompts[name]) - 1}" for name in names)
    print(f"held-out prompts: {split} ({len(ids)} prompts, {args.max_new_tokens} new tokens, "
          f"{'greedy' if args.temperature <= 0 else f'temperature {args.temperature}'})")
    began = time.perf_counter()
    data = collect_rounds(
        target, draft, ids, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
        progress=lambda i, n: print(f"\r  generated {i}/{n}", end="", flush=True),
    )
    print(f"\n{len(data)} drafting rounds in {time.perf_counter() - began:.0f} s")
    gamma = data.logits.shape[1]
    temperatures = fit_sequential_temperatures(data.logits, data.verified, data.accepted, bins=args.bins)
    before = per_slot_metrics(data.logits, data.verified, data.accepted, [1.0] * gamma, args.bins)
    after = per_slot_metrics(data.logits, data.verified, data.accepted, temperatures, args.bins)
    print(format_table(before, after, temperatures))
    from dspark_hf.verification.calibration.sts import DEFAULT_GRID

    edge = [k + 1 for k, t in enumerate(temperatures) if t in (min(DEFAULT_GRID), max(DEFAULT_GRID))]
    if edge:
        print(f"note: slot(s) {edge} ended at the edge of the temperature grid: their confidences are biased, not only "
              "over- or under-confident, and a temperature cannot fully fix that (retrain the confidence head).")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = reliability_diagram(
        data.logits, data.verified, data.accepted, temperatures, out / "reliability.png",
        title=f"survival a_k = prod c_i: before / after STS ({len(data)} rounds; {split})", bins=args.bins,
    )
    report = {"temperatures": temperatures, "held_out": split, "rounds": len(data), "max_new_tokens": args.max_new_tokens,
              "temperature": args.temperature, "bins": args.bins, "before": before, "after": after}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"reliability diagram: {png}\nreport: {out / 'report.json'}")
    folder = DEFAULT_DRAFT_DIR if args.draft is None else (Path(args.draft).expanduser() if args.draft != "random" else None)
    if args.no_store or folder is None or not (folder / "config.json").is_file():
        print("temperatures not stored" + ("" if args.no_store else " (no local draft folder)") + f": {[round(t, 3) for t in temperatures]}")
    else:
        print(f"stored confidence_temperatures in {store_temperatures(folder, temperatures)}")
    return 0
