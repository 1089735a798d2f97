"""The bench's drafting-cost section (added after run t's goal bench ran) for that bench's own records: each
(dataset, method) row's `drafting_round_seconds` and `decode_step_seconds` computed from `runs.jsonl.gz` with the
functions `dspark bench` now uses (dspark_hf.benchmarks.metrics), per set and over all, then the section.

    python docs/measurements/2026-12-06f/drafting_cost_section.py docs/measurements/2026-12-06f/bench_goal
"""
import json
import sys
from pathlib import Path

from dspark_hf.benchmarks import metrics
from dspark_hf.benchmarks.drafting_cost import markdown_section
from dspark_hf.benchmarks.prompt_runs import RUNS_FILE, read_runs
from dspark_hf.benchmarks.report import ALL, DRAFTING_KINDS
from dspark_hf.telemetry import StepRecord

folder = Path(sys.argv[1])
bench = json.loads((folder / "bench.json").read_text())
runs = read_runs(folder / RUNS_FILE)
results = []
for suite in bench["suites"]:
    for dataset in [*suite["datasets"], ALL]:
        for method in suite["methods"]:
            mine = [r for r in runs if r["suite"] == suite["name"] and r["method"] == method["id"] and dataset in (ALL, r["dataset"])]
            steps = [StepRecord(**s) for r in mine for s in r["steps"]]
            results.append({
                "suite": suite["name"], "dataset": dataset, "method": method["id"], "label": method["label"],
                "drafting_round_seconds": metrics.drafting_round_seconds(steps) if method["kind"] in DRAFTING_KINDS else None,
                "decode_step_seconds": metrics.decode_step_seconds((r["new_tokens"], r["seconds"], r["first_token_seconds"]) for r in mine),
            })
print(markdown_section({"suites": bench["suites"], "results": results}))
