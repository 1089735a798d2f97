"""Per-round costs of the default policy in run t's goal bench (issue 14): for each set and round kind (a drafting
round, a lookup round, a plain step), the rounds, tokens per round, milliseconds per round (the candidate
generator's `step_seconds`: drafting or the lookup, the verification forward, acceptance), tokens per second, and the
median drafting time inside a round (`draft_seconds`).

    python docs/measurements/2026-12-06f/round_costs.py docs/measurements/2026-12-06f/bench_goal/runs.jsonl.gz [METHOD]

METHOD (default the default policy's id, as run t used it) picks another method of the bench, e.g. run v's
``dspark[default_draft]:hardware+F.linear``.
"""
import gzip
import json
import statistics
import sys

METHOD = sys.argv[2] if len(sys.argv) > 2 else "dspark[default_draft]:hardware"
rounds = {}
for line in gzip.open(sys.argv[1], "rt"):
    record = json.loads(line)
    if record["method"] == METHOD:
        for step in record["steps"]:
            rounds.setdefault((record["dataset"], step["source"]), []).append(step)
print("| set | round | rounds | tokens / round | ms / round | tokens/s | drafting ms (median) |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
for (dataset, source), steps in sorted(rounds.items()):
    tokens = sum(s["emitted"] for s in steps)
    seconds = sum(s["step_seconds"] for s in steps)
    draft = statistics.median(s["draft_seconds"] for s in steps)
    print(f"| {dataset} | {source} | {len(steps)} | {tokens / len(steps):.2f} | {1000 * seconds / len(steps):.1f} | "
          f"{tokens / seconds:.1f} | {1000 * draft:.2f} |")
