"""The tau ratios of a prompt-mode report: DSpark's tau over EAGLE-3's and over DFlash's, per dataset,
when a report measured a DSpark draft next to an EAGLE-3 or a DFlash draft.

Each ratio compares the first draft of each variant (in ``--draft`` order) under whole-block
verification (``whole``, measured for every draft), so the drafts are compared on what they propose,
not on a policy only one of them can use.
"""

from __future__ import annotations

COMPARED = (("eagle3", "DSpark/EAGLE-3"), ("dflash", "DSpark/DFlash"))
POLICY = "whole"


def _first_whole(methods: list[dict], variant: str) -> str | None:
    """The id of the first ``variant`` draft's whole-block method of a suite."""
    return next((m["id"] for m in methods if m.get("variant") == variant and m.get("policy") == POLICY), None)


def tau_ratios(report: dict) -> list[dict]:
    """``[{"suite", "dataset", "DSpark/EAGLE-3": r or None, "DSpark/DFlash": r or None}, ...]``, one per
    suite and dataset (``all`` included), only for suites with a DSpark draft and an EAGLE-3 or DFlash one."""
    out = []
    for suite in report.get("suites", []):
        dspark = _first_whole(suite["methods"], "dspark")
        others = {label: _first_whole(suite["methods"], variant) for variant, label in COMPARED}
        if dspark is None or not any(others.values()):
            continue
        rows = [r for r in report["results"] if r["suite"] == suite["name"]]
        tau = {(r["dataset"], r["method"]): r["tau"] for r in rows}
        for dataset in dict.fromkeys(r["dataset"] for r in rows):
            entry = {"suite": suite["name"], "dataset": dataset}
            for label, other in others.items():
                mine, theirs = tau.get((dataset, dspark)), tau.get((dataset, other))
                entry[label] = mine / theirs if mine is not None and theirs else None
            out.append(entry)
    return out


def markdown_section(report: dict) -> str:
    """The ratios as a markdown table ('' when the report has none)."""
    ratios = tau_ratios(report)
    if not ratios:
        return ""
    labels = [label for _, label in COMPARED if any(r[label] is not None for r in ratios)]
    lines = [f"Tau ratios (first draft of each kind, {POLICY}-block verification):", "",
             "| suite | dataset | " + " | ".join(labels) + " |", "| --- | --- | " + " | ".join("---:" for _ in labels) + " |"]
    for r in ratios:
        lines.append(f"| {r['suite']} | {r['dataset']} | " + " | ".join("-" if r[l] is None else f"{r[l]:.2f}" for l in labels) + " |")
    return "\n".join(lines) + "\n"
