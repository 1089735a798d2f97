"""The verification-policy comparison of a prompt-mode ``dspark bench`` report (issue 4's question:
does an adaptive policy, ``hardware`` above all, beat every fixed verification length?).

Input: the report dict (:func:`.report.build_report`); nothing is measured here. For each suite and
each draft in it (DSpark and DFlash alike: every ``kind == "dspark"`` method, grouped by the
``draft`` of its description), per dataset and the pooled ``"all"``:

- every policy's tokens/s (median over prompts and aggregate), speed-up over plain generation (median
  and aggregate), tau, mean verified length (verified tokens / rounds) and greedy identity;
- the **best fixed length**: the ``fixed:L`` policy with the highest **aggregate tokens/s** (total new
  tokens / total seconds over the dataset's prompts). That one statistic (:data:`STATISTIC`) is used
  for every choice and ratio below; the best fixed length is chosen per dataset, so an adaptive
  policy is held against the best length with hindsight for each dataset;
- per adaptive policy (every spec that is not ``fixed:*``: ``whole``, ``threshold:*``, ``survival:*``,
  ``hardware``, ``online`` ...): its ratio to the best fixed length per dataset, and the verdict
  ``goal_met``: at least as fast (ratio >= 1) on every judged dataset and faster (ratio > 1) on at
  least one. Judged datasets are the individual ones (the pooled ``"all"`` row is reported, not
  judged; a run with one dataset judges that one). A missing figure (no time measured) fails.

:func:`compare_policies` returns plain JSON-safe dicts (stored as ``policy_comparison`` in
``bench.json``, see ``docs/benchmarks.md``); :func:`markdown_section` renders them.
:func:`comparison_policies` is the policy list ``dspark bench --policies all`` measures.
"""

from __future__ import annotations

ALL = "all"
STATISTIC = "tokens_per_second.aggregate"
ADAPTIVE_DEFAULTS = ("threshold:0.5", "survival:0.5", "hardware", "online")


def comparison_policies(block_size: int) -> list[str]:
    """``whole``, ``fixed:1 .. fixed:block_size-1``, then the adaptive policies (``--policies all``)."""
    return ["whole", *(f"fixed:{n}" for n in range(1, block_size)), *ADAPTIVE_DEFAULTS]


def is_fixed(spec: str) -> bool:
    return spec.startswith("fixed:")


def _statistic(row: dict) -> float | None:
    return (row.get("tokens_per_second") or {}).get("aggregate")


def _policy_figures(row: dict) -> dict:
    tps, speedup = row.get("tokens_per_second") or {}, row.get("speedup") or {}
    return {
        "method": row["method"],
        "tokens_per_second": {"median": tps.get("median"), "aggregate": tps.get("aggregate")},
        "speedup": {"median": speedup.get("median"), "aggregate": speedup.get("aggregate")},
        "tau": row.get("tau"),
        "mean_verified_length": row["verified"] / row["rounds"] if row.get("rounds") else None,
        "identical": row.get("identical"),
    }


def _ratio(value: float | None, best: float | None) -> float | None:
    return value / best if value is not None and best else None


def _compare_draft(suite: str, draft: str, methods: list[dict], rows: dict, datasets: list[str]) -> dict | None:
    specs = [m["policy"] for m in methods]
    fixed = [s for s in specs if is_fixed(s)]
    if not fixed:
        return None
    by_spec = {m["policy"]: m["id"] for m in methods}
    per_dataset = {}
    for dataset in datasets:
        plain = rows.get((dataset, "plain"))
        policies = {s: _policy_figures(rows[(dataset, by_spec[s])]) for s in specs if (dataset, by_spec[s]) in rows}
        scored = [(s, _statistic(rows[(dataset, by_spec[s])])) for s in fixed if s in policies]
        scored = [(s, v) for s, v in scored if v is not None]
        best, best_value = max(scored, key=lambda sv: sv[1]) if scored else (None, None)
        for spec, figures in policies.items():
            figures["ratio_to_best_fixed"] = _ratio(figures["tokens_per_second"]["aggregate"], best_value)
        per_dataset[dataset] = {
            "plain_tokens_per_second": None if plain is None else {
                "median": (plain.get("tokens_per_second") or {}).get("median"), "aggregate": _statistic(plain)},
            "best_fixed": best,
            "best_fixed_tokens_per_second": best_value,
            "policies": policies,
        }
    judged = [d for d in datasets if d != ALL] or datasets
    adaptive = {}
    for spec in (s for s in specs if not is_fixed(s)):
        ratios = {d: per_dataset[d]["policies"].get(spec, {}).get("ratio_to_best_fixed") for d in datasets}
        judged_ratios = [ratios[d] for d in judged]
        as_fast = all(r is not None and r >= 1.0 for r in judged_ratios)
        faster = any(r is not None and r > 1.0 for r in judged_ratios)
        adaptive[spec] = {"ratio_to_best_fixed": ratios, "at_least_as_fast_everywhere": as_fast,
                          "faster_somewhere": faster, "goal_met": as_fast and faster}
    return {
        "suite": suite,
        "draft": draft,
        "variant": methods[0].get("variant"),
        "block_size": methods[0].get("block_size"),
        "statistic": STATISTIC,
        "judged_datasets": judged,
        "datasets": per_dataset,
        "adaptive": adaptive,
    }


def compare_policies(report: dict) -> list[dict]:
    """One entry per (suite, draft) that was measured under at least one ``fixed:L`` policy (see the
    module docstring for the keys' meaning); ``[]`` when there is none."""
    entries = []
    for suite in report.get("suites", []):
        results = [r for r in report["results"] if r["suite"] == suite["name"]]
        rows = {(r["dataset"], r["method"]): r for r in results}
        datasets = list(dict.fromkeys(r["dataset"] for r in results))
        drafts: dict[str, list[dict]] = {}
        for method in suite["methods"]:
            if method.get("kind") == "dspark":  # variants run with other generation options compare among themselves
                options = method.get("options") or {}
                group = method["draft"] + "".join(f" [{k}={v}]" for k, v in sorted(options.items()))
                drafts.setdefault(group, []).append(method)
        for draft, methods in drafts.items():
            entry = _compare_draft(suite["name"], draft, methods, rows, datasets)
            if entry is not None:
                entries.append(entry)
    return entries


# -- markdown --------------------------------------------------------------------------------------------


def _f(value, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def _yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def markdown_section(entries: list[dict]) -> str:
    """The comparison as markdown: per suite and draft, one table per dataset and the verdicts."""
    if not entries:
        return ""
    lines = ["## Verification policies against the best fixed length", "",
             "Best fixed length and every ratio: by aggregate tokens/s (total new tokens / total seconds), per dataset. "
             "Goal met: at least as fast as the best fixed length on every dataset and faster on at least one.", ""]
    for e in entries:
        lines += [f"### {e['suite']}: {e['variant']} draft {e['draft']}", ""]
        for dataset, d in e["datasets"].items():
            plain = d["plain_tokens_per_second"] or {}
            lines += [f"{dataset}: plain {_f(plain.get('aggregate'))} tokens/s; best fixed length {d['best_fixed'] or '-'}", "",
                      "| policy | tokens/s median | tokens/s aggregate | speed-up median | speed-up aggregate | tau | mean verified | vs best fixed | identical |",
                      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
            for spec, p in d["policies"].items():
                mark = " (best fixed)" if spec == d["best_fixed"] else ""
                ident = "n/a" if p["identical"] is None else _yes(p["identical"])
                lines.append(f"| {spec}{mark} | {_f(p['tokens_per_second']['median'])} | {_f(p['tokens_per_second']['aggregate'])} | "
                             f"{_f(p['speedup']['median'], '{:.2f}x')} | {_f(p['speedup']['aggregate'], '{:.2f}x')} | {_f(p['tau'])} | "
                             f"{_f(p['mean_verified_length'])} | {_f(p['ratio_to_best_fixed'], '{:.3f}')} | {ident} |")
            lines.append("")
        datasets = list(e["datasets"])
        lines += ["| adaptive policy | " + " | ".join(f"{d} / best fixed" for d in datasets) + " | as fast everywhere | faster somewhere | goal met |",
                  "| --- | " + " | ".join("---:" for _ in datasets) + " | --- | --- | --- |"]
        for spec, a in e["adaptive"].items():
            cells = [_f(a["ratio_to_best_fixed"][d], "{:.3f}") for d in datasets]
            lines.append(f"| {spec} | " + " | ".join(cells) + f" | {_yes(a['at_least_as_fast_everywhere'])} | "
                         f"{_yes(a['faster_somewhere'])} | {_yes(a['goal_met'])} |")
        lines.append("")
    return "\n".join(lines)


__all__ = ["STATISTIC", "compare_policies", "comparison_policies", "is_fixed", "markdown_section"]
