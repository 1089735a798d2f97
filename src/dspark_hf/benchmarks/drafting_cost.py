"""What a drafting round costs inside generation, against plain decoding's time per token.

The speed issue's goal for the drafter, "a drafting round <= 25 % of a one-token target forward", read from
the bench's own calls rather than from ``dspark profile``: a drafting round is what the candidate generator
records as ``draft_seconds`` for the rounds that drafted (``source == "draft"``: the target's features handed
over, the draft's forward, the block's draw and confidences, the policy's choice of length), so it includes
what generation pays and the profile's back-to-back rounds do not. Inside generation every round follows a
target forward that has streamed the target's weights through the CPU's caches, so the draft's weights are
read from memory again (measured on a 2-vCPU Intel Xeon: 8.1 ms after a target forward against 5.7 ms back to
back, ``docs/measurements/2026-12-06f/draft_round_cold.py``). Plain decoding's time per token is its seconds
after the first token over its tokens after the first (the prefill left out), from the same run.

Per suite and dataset, every method whose rounds drafted gets one entry: the median drafting round over its
prompts' rounds (:func:`~dspark_hf.benchmarks.metrics.drafting_round_seconds`), plain decoding's time per
token (:func:`~dspark_hf.benchmarks.metrics.decode_step_seconds`) and their ratio.
"""

from __future__ import annotations


def drafting_costs(report: dict) -> list[dict]:
    """``[{"suite", "dataset", "method", "label", "drafting_round_seconds", "plain_step_seconds", "share"}, ...]``:
    one per result row with drafting rounds, in the report's order (``share`` ``None`` without a plain time)."""
    plain_ids = {s["name"]: s["methods"][0]["id"] for s in report.get("suites", []) if s.get("methods")}
    plain_step = {(r["suite"], r["dataset"]): r.get("decode_step_seconds") for r in report["results"]
                  if r["method"] == plain_ids.get(r["suite"])}
    out = []
    for r in report["results"]:
        drafting = r.get("drafting_round_seconds")
        if drafting is None:
            continue
        step = plain_step.get((r["suite"], r["dataset"]))
        out.append({"suite": r["suite"], "dataset": r["dataset"], "method": r["method"], "label": r["label"],
                    "drafting_round_seconds": drafting, "plain_step_seconds": step,
                    "share": drafting / step if step else None})
    return out


def markdown_section(report: dict) -> str:
    """The entries as a markdown table ('' when no method drafted)."""
    entries = drafting_costs(report)
    if not entries:
        return ""
    lines = ["Drafting round inside generation (median over drafting rounds) against plain decoding's time per token "
             "after the first:", "",
             "| suite | dataset | method | drafting round ms | plain ms per token | share |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    for e in entries:
        step = "-" if e["plain_step_seconds"] is None else f"{1000 * e['plain_step_seconds']:.1f}"
        share = "-" if e["share"] is None else f"{e['share']:.1%}"
        lines.append(f"| {e['suite']} | {e['dataset']} | {e['label']} | {1000 * e['drafting_round_seconds']:.2f} | {step} | {share} |")
    return "\n".join(lines) + "\n"
