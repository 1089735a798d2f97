"""The benchmark's outputs: the JSON report (schema ``dspark-bench/1``, documented in
``docs/benchmarks.md``) and its markdown tables.

:func:`summarise` turns the measured :class:`~.session.SuiteResult` objects into result rows, one per
(suite, dataset, method), plus a pooled ``"all"`` dataset per suite.
"""

from __future__ import annotations

import datetime
import json
import math
import platform
from pathlib import Path

import torch

from dspark_hf.benchmarks import metrics
from dspark_hf.benchmarks.methods import AssistantModel, DSpark
from dspark_hf.benchmarks.policy_comparison import compare_policies, markdown_section
from dspark_hf.benchmarks.session import PromptResult, SuiteResult

SCHEMA = "dspark-bench/1"
ALL = "all"
DRAFTING_KINDS = (DSpark.kind, AssistantModel.kind)  # methods whose rounds run a drafter (prompt lookup's guesses are free)


def machine_info(device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> dict:
    """Where the figures were taken: CPU/GPU, thread count, library versions."""
    import transformers

    from dspark_hf.verification.scheduling.cost_profile import device_name
    from dspark_hf.version import __version__

    device = torch.device(device)
    return {
        "device": str(device),
        "device_name": device_name(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "dtype": str(dtype).replace("torch.", "") if dtype is not None else None,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "dspark_hf": __version__,
    }


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _row(suite: str, dataset: str, method: dict, rows: list[PromptResult], plain: list[PromptResult], greedy: bool, mismatches: int) -> dict:
    """One result row from a method's description (:meth:`.methods.Method.describe`) and its prompts."""
    steps = [s for r in rows for s in r.run.steps]
    # the draft's own rounds: per-slot survival and calibration describe the draft, not prompt-lookup guesses
    drafted = [s for s in steps if s.source != "lookup"]
    pairs = [(r.run.new_tokens, r.run.seconds) for r in rows]
    plain_pairs = [(r.run.new_tokens, r.run.seconds) for r in plain]
    tokens = sum(t for t, _ in pairs)
    seconds = sum(s for _, s in pairs)
    forwards = sum(r.run.target_forwards for r in rows)
    tps = metrics.spread(metrics.tokens_per_second(t, s) for t, s in pairs)
    speedup = metrics.spread(metrics.paired_speedups(pairs, plain_pairs))
    # DSpark: one entry per slot of the block; other methods: up to the longest proposal seen
    is_dspark = method["kind"] == DSpark.kind
    depth = method.get("block_size") if is_dspark else None
    calibration = None
    if is_dspark and method.get("confidence_head"):
        calibration = {"raw": metrics.calibration(drafted)}
        temps = method.get("temperatures")
        if temps:
            calibration["calibrated"] = metrics.calibration(drafted, temps)
    return {
        "suite": suite,
        "dataset": dataset,
        "method": method["id"],
        "kind": method["kind"],
        "label": method["label"],
        "prompts": len(rows),
        "new_tokens": tokens,
        "seconds": seconds,
        "tokens_per_second": {**(tps or {}), "aggregate": metrics.tokens_per_second(tokens, seconds)},
        "first_token_seconds": metrics.spread(r.first_token_seconds for r in rows),
        "speedup": {**(speedup or {}), "aggregate": metrics.aggregate_speedup(pairs, plain_pairs)},
        "target_forwards": forwards,
        "tokens_per_forward": tokens / forwards if forwards else None,
        **metrics.round_counts(steps),
        "tau": metrics.tau(steps) if steps else (1.0 if method["kind"] == "plain" else None),
        "acceptance_rate": metrics.acceptance_rate(steps),
        "verified_ratio": metrics.verified_ratio(steps),
        "per_slot_acceptance": metrics.per_slot_acceptance(drafted, depth),
        "per_slot_conditional": metrics.per_slot_conditional(drafted, depth),
        "lookup_rounds": len(steps) - len(drafted),
        # what a drafting round costs inside generation (drafting methods), and plain decoding's time per token
        "drafting_round_seconds": metrics.drafting_round_seconds(steps) if method["kind"] in DRAFTING_KINDS else None,
        "decode_step_seconds": metrics.decode_step_seconds((r.run.new_tokens, r.run.seconds, r.first_token_seconds) for r in rows),
        "identical": (mismatches == 0) if greedy else None,
        "mismatches": mismatches if greedy else None,
        "calibration": calibration,
    }


def summarise(suite_results: list[SuiteResult], greedy: bool) -> list[dict]:
    """Result rows: per suite, per dataset then ``"all"``, per method (plain first)."""
    rows = []
    for sr in suite_results:
        suite = sr.suite
        columns = [suite.plain, *suite.methods]
        datasets = list(suite.prompts)
        for dataset in [*datasets, ALL] if len(datasets) > 1 else datasets:
            pick = (lambda r: True) if dataset == ALL else (lambda r, d=dataset: r.dataset == d)
            plain = [r for r in sr.results if r.method == suite.plain.id and pick(r)]
            for method in columns:
                mine = [r for r in sr.results if r.method == method.id and pick(r)]
                if not mine:
                    continue
                bad = sum(1 for m in sr.mismatches if m.method == method.id and (dataset == ALL or m.dataset == dataset))
                rows.append(_row(suite.name, dataset, method.describe(), mine, plain, greedy, bad))
    return rows


def build_report(suite_results: list[SuiteResult], *, settings: dict, machine: dict, command: str, greedy: bool) -> dict:
    """The prompt-mode report; with at least one ``fixed:L`` policy measured it also carries
    ``policy_comparison`` (:mod:`.policy_comparison`)."""
    rows = summarise(suite_results, greedy)
    mismatches = [{"suite": sr.suite.name, **m.to_dict()} for sr in suite_results for m in sr.mismatches]
    flags = [f"GREEDY MISMATCH: {m.describe()}" for sr in suite_results for m in sr.mismatches]
    report = {
        "schema": SCHEMA,
        "mode": "prompts",
        "created": now_utc(),
        "command": command,
        "machine": machine,
        "settings": settings,
        "suites": [
            {"name": sr.suite.name, "methods": [m.describe() for m in [sr.suite.plain, *sr.suite.methods]],
             "datasets": {d: len(p) for d, p in sr.suite.prompts.items()}}
            for sr in suite_results
        ],
        "results": rows,
        "mismatches": mismatches,
        "flags": flags,
        "files": {},
    }
    comparison = compare_policies(report)
    if comparison:
        report["policy_comparison"] = comparison
    return report


def _finite(value):
    """The report with every NaN or infinity replaced by ``None`` (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(report: dict, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(report), indent=2, allow_nan=False) + "\n")
    return path


# -- markdown --------------------------------------------------------------------------------------------


def _f(value, fmt: str = "{:.2f}", none: str = "-") -> str:
    return none if value is None else fmt.format(value)


def _speedup(s: dict) -> str:
    if not s or s.get("median") is None:
        return "-"
    return f"{s['median']:.2f}x [{s['q25']:.2f}-{s['q75']:.2f}]"


def markdown(report: dict) -> str:
    """Markdown tables of a report (either mode)."""
    if report.get("mode") == "cost":
        return _cost_markdown(report)
    m = report["machine"]
    s = report["settings"]
    lines = [
        "# dspark bench",
        "",
        f"{report['created']} on {m['device_name']} ({m['threads']} threads; torch {m['torch']}, transformers {m['transformers']}); "
        f"{s['max_new_tokens']} new tokens, temperature {s['temperature']}, {s['repeats']} pass(es) per prompt.",
        "",
    ]
    if s.get("precision"):
        lines += [s["precision"] + ".", ""]
    if report["flags"]:
        lines += ["**Flags**", ""] + [f"- {f}" for f in report["flags"]] + [""]
    for suite in report["suites"]:
        rows = [r for r in report["results"] if r["suite"] == suite["name"]]
        lines += [f"## {suite['name']}", "",
                  "| dataset | method | tokens/s | speed-up | speed-up per prompt (median [q25-q75]) | tau | tokens/forward | acceptance | verified/drafted | TTFT ms | identical |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for r in rows:
            ttft = r["first_token_seconds"]["median"] * 1000 if r["first_token_seconds"] else None
            ident = "n/a (sampling)" if r["identical"] is None else ("yes" if r["identical"] else f"**NO ({r['mismatches']} of {r['prompts']})**")
            lines.append(
                f"| {r['dataset']} | {r['label']} | {_f(r['tokens_per_second'].get('aggregate'))} | {_f(r['speedup'].get('aggregate'), '{:.2f}x')} | {_speedup(r['speedup'])} | "
                f"{_f(r['tau'])} | {_f(r['tokens_per_forward'])} | {_f(r['acceptance_rate'], '{:.1%}')} | "
                f"{_f(r['verified_ratio'])} | {_f(ttft, '{:.0f}')} | {ident} |"
            )
        slots = [r for r in rows if r["per_slot_acceptance"] and r["dataset"] == (ALL if any(x["dataset"] == ALL for x in rows) else r["dataset"])]
        if slots:
            depth = max(len(r["per_slot_acceptance"]) for r in slots)
            lines += ["", "Per-slot acceptance (survival to slot k, of rounds that verified it):", "",
                      "| dataset | method | " + " | ".join(f"k={k}" for k in range(1, depth + 1)) + " |",
                      "| --- | --- | " + " | ".join("---:" for _ in range(depth)) + " |"]
            for r in slots:
                cells = [_f(v) for v in r["per_slot_acceptance"]] + ["-"] * (depth - len(r["per_slot_acceptance"]))
                lines.append(f"| {r['dataset']} | {r['label']} | " + " | ".join(cells) + " |")
        cal = [r for r in rows if r["calibration"] and r["calibration"].get("raw")]
        if cal:
            lines += ["", "Calibration of the survival predictions a_k = prod c_i (ECE lower is better, AUROC higher):", "",
                      "| dataset | method | n | ECE raw | AUROC raw | ECE calibrated | AUROC calibrated |",
                      "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
            for r in cal:
                raw, after = r["calibration"]["raw"], r["calibration"].get("calibrated") or {}
                lines.append(f"| {r['dataset']} | {r['label']} | {raw['n']} | {_f(raw['ece'], '{:.4f}')} | {_f(raw['auroc'], '{:.3f}')} | "
                             f"{_f(after.get('ece'), '{:.4f}')} | {_f(after.get('auroc'), '{:.3f}')} |")
        lines.append("")
    from dspark_hf.benchmarks.drafting_cost import markdown_section as drafting_cost_section
    from dspark_hf.benchmarks.tau_ratios import markdown_section as tau_ratio_section

    ratios = tau_ratio_section(report)
    if ratios:
        lines.append(ratios)
    costs = drafting_cost_section(report)
    if costs:
        lines.append(costs)
    if report.get("policy_comparison"):
        lines.append(markdown_section(report["policy_comparison"]))
    return "\n".join(lines)


def _cost_markdown(report: dict) -> str:
    m, c = report["machine"], report["cost"]
    lines = [
        "# dspark bench --cost-mode",
        "",
        f"{report['created']} on {m['device_name']} ({m['dtype']}, {m['threads']} threads); target shape {c['target_shape']} "
        f"(random weights), draft {c['draft']} (block {c['block_size']}), prompt {c['prompt_length']} tokens, "
        f"{c['max_new_tokens']} new tokens, {c['prompts']} prompt(s) x {c['repeats']} pass(es).",
        "",
        "| policy | L | tau | ideal speed-up (L+1) | speed-up (median [q25-q75]) | efficiency | s/round | draft s/round | tau exact |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in c["results"]:
        lines.append(
            f"| {r['policy']} | {r['length']} | {_f(r['tau'])} | {r['ideal_speedup']:.0f} | {_speedup(r['speedup'])} | "
            f"{_f(r['efficiency'])} | {_f(r['round_seconds'], '{:.4f}')} | {_f(r['draft_seconds_per_round'], '{:.4f}')} | "
            f"{'yes' if r['tau_exact'] else '**no**'} |"
        )
    if c.get("profiles"):
        lines += ["", "Profiler tables: " + ", ".join(c["profiles"])]
    return "\n".join(lines) + "\n"


def card_figures(report: dict, method: str) -> list:
    """The rows of ``method`` (a method id of a prompt-mode report) as model-card figures
    (:class:`dspark_hf.hub.cards.MeasuredFigure`), one per dataset, with the machine as source."""
    from dspark_hf.hub.cards import MeasuredFigure

    m = report["machine"]
    source = f"dspark bench, {m['device_name']}, {report['created'][:10]}"
    figures = []
    for r in report["results"]:
        if r["method"] == method and r["tau"] is not None and r["kind"] != "plain":
            figures.append(MeasuredFigure(r["dataset"], r["tau"], r["acceptance_rate"], (r["speedup"] or {}).get("median"),
                                          r["rounds"], source))
    return figures
