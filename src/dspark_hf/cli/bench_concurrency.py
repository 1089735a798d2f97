"""``dspark bench --concurrency 1,2,4,8,16 [--arrival-rate R]``: the load benchmark of batched DSpark
(:mod:`dspark_hf.benchmarks.concurrency`), plain continuous batching against DSpark with each of
``--policies`` (default ``fixed:3,threshold:0.5,hardware``), outputs checked against plain."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def concurrency_levels(text: str) -> list[int]:
    from dspark_hf.cli.int_ranges import parse_int_ranges
    from dspark_hf.errors import UnsupportedUsageError

    try:
        values = parse_int_ranges(text)
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise UnsupportedUsageError(f"--concurrency takes request counts >= 1 such as 1,2,4,8,16; got {text!r}.")
    return values


def serving_dtypes(name: str | None, device) -> tuple:
    """(target dtype, draft dtype) of the load benchmark. The packed verification forward is not
    computed row by row, so the target runs float32 unless ``--dtype bfloat16`` / ``bfloat16-batched``
    asks for bf16 (output then not guaranteed identical to plain batch-1 decoding); the draft's dtype
    never changes the output, so it runs bf16 wherever bf16 is fast (:func:`dspark_hf.precision.resolve_precision`)."""
    import torch

    from dspark_hf.precision import resolve_precision

    if name in ("bfloat16", "bfloat16-batched"):
        return torch.bfloat16, torch.bfloat16
    return torch.float32, resolve_precision("float32", device).draft_dtype


def run_concurrency(args) -> int:
    import torch

    import dspark_hf  # noqa: F401
    from dspark_hf.benchmarks.concurrency import bench_concurrency, concurrency_markdown, frontier_plot
    from dspark_hf.benchmarks.prompt_sets import encode_prompts, load_prompt_set
    from dspark_hf.benchmarks.report import machine_info
    from dspark_hf.errors import UnsupportedUsageError
    from dspark_hf.loading import load_draft, load_target

    levels = concurrency_levels(args.concurrency)
    if args.arrival_rate is not None and args.arrival_rate <= 0:
        raise UnsupportedUsageError(f"--arrival-rate must be > 0 requests per second, got {args.arrival_rate}.")
    if args.draft and len(args.draft) > 1:
        raise UnsupportedUsageError("--concurrency takes at most one --draft.")
    device = torch.device(args.device or "cpu")
    dtype, draft_dtype = serving_dtypes(args.dtype, device)
    torch.set_num_threads(args.threads)
    target, tokenizer = load_target(args.target)
    target = target.to(device=device, dtype=dtype).eval()
    draft = load_draft(args.draft[0] if args.draft else None, target).to(device=device, dtype=draft_dtype).eval()
    prompts = []
    for name in [n.strip() for n in args.datasets.split(",") if n.strip()]:
        _, texts = load_prompt_set(name, args.limit, args.datasets_dir, start=args.start)
        prompts += [ids[0].tolist() for ids in encode_prompts(tokenizer, texts)]
    policies = [p.strip() for p in (args.policies or "fixed:3,threshold:0.5,hardware").split(",") if p.strip()]
    names = [str(d).removeprefix("torch.") for d in (dtype, draft_dtype)]
    print(f"concurrency {levels} on {device} (target {names[0]}, draft {names[1]}, {args.threads} threads), {len(prompts)} prompts, "
          f"policies {policies}", file=sys.stderr)
    report = bench_concurrency(target, draft, prompts, levels, policies, max_new_tokens=args.max_new_tokens or 128,
                               temperature=args.temperature, arrival_rate=args.arrival_rate, seed=args.seed, repeats=args.repeats or 1,
                               requests=args.requests,
                               log=lambda m: print(m, file=sys.stderr))
    report["command"] = "dspark bench " + " ".join(sys.argv[2:])
    report["machine"] = {**machine_info(device, dtype), "draft_dtype": names[1]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "concurrency.json").write_text(json.dumps(report, indent=2) + "\n")
    text = concurrency_markdown(report)
    (out / "concurrency.md").write_text(text)
    print(text)
    written = [str(out / "concurrency.json"), str(out / "concurrency.md")]
    if not args.no_plots:
        written.append(frontier_plot(report, out / "concurrency_frontier.png"))
    print("wrote " + ", ".join(written))
    return 3 if report["mismatches"] else 0
