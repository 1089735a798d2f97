"""Per-prompt measurements of a prompt-mode ``dspark bench`` run, and merging runs made in shards.

A long benchmark (say every policy on 60 prompts, one CPU thread per process) can be split by prompt
range over several processes or machines (``--start`` / ``--limit``) and merged afterwards with
``dspark bench --merge DIR DIR ... --out DIR``: the merged report is built from the prompts'
own measurements, exactly as if one process had measured them all (every statistic, the policy
comparison and the plots), so nothing is averaged twice.

Each run writes ``runs.jsonl.gz`` beside ``bench.json``: one JSON line per (suite, dataset, prompt,
method) with the kept (median-time) run: ``prompt_length``, ``new_tokens``, ``seconds``,
``first_token_seconds``, ``target_forwards`` and its rounds (:class:`~dspark_hf.telemetry.StepRecord`
fields, confidences included). Outputs' token ids are not stored; the greedy identity check is made
while measuring and its mismatches travel in ``bench.json``.

Shards merge when they measured the same suites and methods with the same settings (new tokens,
temperature, repeats, warm-up, seed, threads, drafts, policies) on the same device and dtype, and no
prompt twice; otherwise :func:`merge_runs` names the first difference in one line.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

from dspark_hf.errors import DSparkError
from dspark_hf.telemetry import StepRecord
from dspark_hf.benchmarks.identity import Mismatch
from dspark_hf.benchmarks.session import PromptResult, Suite, SuiteResult

RUNS_FILE = "runs.jsonl.gz"
# settings that must agree for shards to be merged (start and limit may differ)
SHARED_SETTINGS = ("max_new_tokens", "temperature", "datasets", "policies", "dflash_policies", "drafts", "prompt_lookup_num_tokens",
                   "baseline_pair", "repeats", "warmup", "seed", "threads")
SHARED_MACHINE = ("device_name", "dtype", "torch", "transformers")


class MergeError(DSparkError):
    """Shards that cannot be merged (different settings, methods or machines, or overlapping prompts)."""


def records(suite_results: list[SuiteResult]) -> list[dict]:
    """One JSON-safe dict per measured (suite, dataset, prompt, method)."""
    out = []
    for sr in suite_results:
        for r in sr.results:
            out.append({
                "suite": sr.suite.name, "dataset": r.dataset, "prompt_index": r.prompt_index, "method": r.method,
                "prompt_length": r.run.prompt_length, "new_tokens": r.run.new_tokens, "seconds": r.run.seconds,
                "first_token_seconds": r.first_token_seconds, "target_forwards": r.run.target_forwards,
                "steps": [s.to_dict() for s in r.run.steps],
            })
    return out


def write_runs(rows: list[dict], path: Path | str) -> Path:
    path = Path(path)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


def read_runs(path: Path | str) -> list[dict]:
    with gzip.open(Path(path), "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass
class RecordedRun:
    """A stored run, standing in for :class:`.timing.TimedRun` when a report is rebuilt."""

    prompt_length: int
    new_tokens: int
    seconds: float
    target_forwards: int
    steps: list[StepRecord] = field(default_factory=list)


@dataclass
class RecordedMethod:
    """A method known only by its description in ``bench.json``."""

    info: dict

    @property
    def id(self) -> str:
        return self.info["id"]

    def describe(self) -> dict:
        return dict(self.info)


def _load_shard(folder: Path) -> tuple[dict, list[dict]]:
    report_path, runs_path = folder / "bench.json", folder / RUNS_FILE
    for p in (report_path, runs_path):
        if not p.is_file():
            raise MergeError(f"{p} not found: --merge takes folders written by a prompt-mode dspark bench run.")
    report = json.loads(report_path.read_text())
    if report.get("mode") != "prompts":
        raise MergeError(f"{report_path} is a {report.get('mode')!r} report; only prompt-mode runs merge.")
    return report, read_runs(runs_path)


def _check_compatible(first: dict, other: dict, where: Path) -> None:
    for key in SHARED_SETTINGS:
        if first["settings"].get(key) != other["settings"].get(key):
            raise MergeError(f"{where}: setting {key} is {other['settings'].get(key)!r}, the first shard has {first['settings'].get(key)!r}.")
    for key in SHARED_MACHINE:
        if first["machine"].get(key) != other["machine"].get(key):
            raise MergeError(f"{where}: measured with {key} {other['machine'].get(key)!r}, the first shard with {first['machine'].get(key)!r}.")
    mine = [(s["name"], [m["id"] for m in s["methods"]]) for s in first["suites"]]
    theirs = [(s["name"], [m["id"] for m in s["methods"]]) for s in other["suites"]]
    if mine != theirs:
        raise MergeError(f"{where}: measured other suites or methods than the first shard.")


def merge_runs(folders: list[Path | str], *, command: str = "") -> dict:
    """The report of all shards' prompts together (see the module docstring); ``settings`` gains
    ``shards`` (each shard's folder, start, limit, command and date) and ``start`` / ``limit`` cover
    the union."""
    from dspark_hf.benchmarks import report as report_mod

    folders = [Path(f) for f in folders]
    if len(folders) < 2:
        raise MergeError("--merge takes at least two folders.")
    shards = [(f, *_load_shard(f)) for f in folders]
    first = shards[0][1]
    for folder, report, _ in shards[1:]:
        _check_compatible(first, report, folder)
    seen: dict[tuple, Path] = {}
    for folder, _, rows in shards:
        for row in rows:
            key = (row["suite"], row["dataset"], row["prompt_index"], row["method"])
            if key in seen:
                raise MergeError(f"{folder} and {seen[key]} both measured {row['dataset']} prompt {row['prompt_index']}; merge disjoint prompt ranges.")
            seen[key] = folder
    greedy = first["settings"]["temperature"] <= 0
    suite_results = []
    for suite_info in first["suites"]:
        plain, *methods = [RecordedMethod(m) for m in suite_info["methods"]]
        results = []
        for _, _, rows in shards:
            for row in rows:
                if row["suite"] != suite_info["name"]:
                    continue
                steps = [StepRecord(**s) for s in row["steps"]]
                run = RecordedRun(row["prompt_length"], row["new_tokens"], row["seconds"], row["target_forwards"], steps)
                results.append(PromptResult(row["dataset"], row["prompt_index"], row["method"], run, row["first_token_seconds"]))
        datasets = list(suite_info["datasets"])
        order = {d: i for i, d in enumerate(datasets)}
        results.sort(key=lambda r: (order.get(r.dataset, len(order)), r.prompt_index))
        counts = {d: len({r.prompt_index for r in results if r.dataset == d and r.method == plain.id}) for d in datasets}
        suite = Suite(suite_info["name"], None, methods, {d: [None] * n for d, n in counts.items()}, plain=plain)
        mismatches = [Mismatch(**{k: v for k, v in m.items() if k != "suite"}) for _, report, _ in shards
                      for m in report["mismatches"] if m["suite"] == suite_info["name"]]
        suite_results.append(SuiteResult(suite, results, mismatches))
    settings = dict(first["settings"])
    starts = [r["settings"]["start"] for _, r, _ in shards]
    settings["start"] = min(starts)
    settings["limit"] = max(r["settings"]["start"] + r["settings"]["limit"] for _, r, _ in shards) - settings["start"]
    settings["shards"] = [{"folder": str(f), "start": r["settings"]["start"], "limit": r["settings"]["limit"],
                           "command": r.get("command", ""), "created": r.get("created")} for f, r, _ in shards]
    report = report_mod.build_report(suite_results, settings=settings, machine=first["machine"], command=command, greedy=greedy)
    report["prompt_runs"] = [row for _, _, rows in shards for row in rows]
    return report


__all__ = ["RUNS_FILE", "MergeError", "merge_runs", "read_runs", "records", "write_runs"]
