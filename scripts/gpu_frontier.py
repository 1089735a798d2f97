"""Issue 15's GPU goal in one run: the throughput / per-user-speed frontier of batched DSpark in cost mode
(a random-weight target of a named shape, acceptance scripted from calibrated confidences,
:mod:`dspark_hf.benchmarks.batched_cost_mode`), plain continuous batching against fixed lengths and the
hardware-aware policy at each concurrency, every output checked against plain.

    # on the GPU machine (Qwen3-8B shape, bf16, R = 1..64):
    python scripts/gpu_frontier.py --shape qwen3-8b --device cuda --dtype bfloat16 \\
        --concurrency 1,2,4,8,16,32,64 --new-tokens 128 --out $OUT/frontier
    # CPU smoke run of the same code:
    python scripts/gpu_frontier.py --shape tiny --concurrency 1,2,4 --new-tokens 16 --prompt-length 32 --out /tmp/frontier

Writes OUT/frontier.json (rows, packed profile, machine) and OUT/frontier.md (tables) after each concurrency,
OUT/frontier.png at the end, and OUT/frontier.log (the progress lines, timed from the start).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="qwen3-8b")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32", "float16"])
    parser.add_argument("--concurrency", default="1,2,4,8,16,32,64")
    parser.add_argument("--policies", default="fixed:1,fixed:3,fixed:7,hardware")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--prompt-length", type=int, default=256)
    parser.add_argument("--base-confidence", type=float, default=0.8)
    parser.add_argument("--confidence-spread", type=float, default=1.5)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--profile-repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    import dspark_hf  # noqa: F401  (installs the batching entry points)
    from dspark_hf.benchmarks.batched_cost_mode import scripted_frontier
    from dspark_hf.benchmarks.concurrency import concurrency_markdown, frontier_plot
    from dspark_hf.benchmarks.report import machine_info
    from dspark_hf.cli.bench_concurrency import concurrency_levels

    dtype = getattr(torch, args.dtype)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = {**machine_info(torch.device(args.device), dtype), "draft_dtype": str(dtype).replace("torch.", "")}
    command = " ".join(["python", "scripts/gpu_frontier.py", *(argv if argv is not None else sys.argv[1:])])
    title = (f"cost mode: random {args.shape}, {args.dtype}, scripted confidences (base {args.base_confidence}, "
             f"spread {args.confidence_spread}), prompts of {args.prompt_length} tokens\n\n")
    started = time.perf_counter()
    log_file = (out / "frontier.log").open("a")

    def log(line: str) -> None:
        line = f"[{time.perf_counter() - started:7.1f} s] {line}"
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    def save(report: dict) -> None:
        """Write the report (also a partial one, after each concurrency: a run stopped at its time limit keeps
        the levels it finished)."""
        report["machine"], report["command"] = machine, command
        (out / "frontier.json").write_text(json.dumps(report, indent=1) + "\n")
        (out / "frontier.md").write_text(title + ("(partial: the run stopped before every concurrency)\n\n" if report.get("partial") else "")
                                         + concurrency_markdown(report))

    report = scripted_frontier(
        args.shape, device=args.device, dtype=dtype, concurrencies=concurrency_levels(args.concurrency),
        policies=[p for p in args.policies.split(",") if p], max_new_tokens=args.new_tokens, prompt_length=args.prompt_length,
        base=args.base_confidence, spread=args.confidence_spread, repeats=args.repeats, profile_repeats=args.profile_repeats,
        log=log, on_level=save,
    )
    save(report)
    frontier_plot(report, out / "frontier.png")
    log(f"done in {time.perf_counter() - started:.0f} s")
    print((out / "frontier.md").read_text())
    return 1 if report["mismatches"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
