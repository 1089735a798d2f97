"""The bench's drafting-cost section (benchmarks/drafting_cost.py, metrics.drafting_round_seconds /
decode_step_seconds): a drafting round's median inside generation against plain decoding's time per token
after the first, from synthetic rounds and timings with known figures."""

from __future__ import annotations

import json

import pytest
import torch

from dspark_hf.benchmarks import metrics
from dspark_hf.benchmarks.drafting_cost import drafting_costs, markdown_section
from dspark_hf.benchmarks.methods import Method, PromptLookup
from dspark_hf.benchmarks.report import markdown, summarise
from dspark_hf.benchmarks.session import PromptResult, Suite, SuiteResult
from dspark_hf.benchmarks.timing import TimedRun
from dspark_hf.telemetry import StepRecord


class _Drafting(Method):
    kind = "dspark"


def _step(i, source, draft_seconds):
    return StepRecord(step=i, proposed=4 if source != "plain" else 0, verified=2 if source != "plain" else 0, accepted=1,
                      emitted=2 if source != "plain" else 1, confidences=None, draft_seconds=draft_seconds,
                      step_seconds=0.06, source=source)


def _run(new_tokens, seconds, first, steps=()):
    return TimedRun(torch.zeros(1, 4 + new_tokens, dtype=torch.long), 4, seconds, first, 1, list(steps))


def _suite_result():
    draft, lookup = _Drafting("dspark[d]:hardware", "dspark d / hardware"), PromptLookup(10)
    suite = Suite("s", None, [draft, lookup], {"a": [None], "b": [None]})
    results = [
        # plain: (11 - 1) tokens after the first in (1.1 - 0.1) s on "a", 20 in 1.5 on "b" -> 0.1 and 0.075 s per token
        PromptResult("a", 0, "plain", _run(11, 1.1, 0.1), 0.1),
        PromptResult("b", 0, "plain", _run(21, 1.6, 0.1), 0.1),
        # drafting rounds of 8, 9, 10 ms, a lookup round (0.2 ms) and a plain step (0) that must not count
        PromptResult("a", 0, draft.id, _run(9, 0.5, 0.1, [_step(0, "draft", 0.008), _step(1, "lookup", 0.0002),
                                                           _step(2, "draft", 0.010), _step(3, "plain", 0.0)]), 0.1),
        PromptResult("b", 0, draft.id, _run(5, 0.3, 0.1, [_step(0, "draft", 0.009), _step(1, "lookup", 0.0002)]), 0.1),
        PromptResult("a", 0, lookup.id, _run(11, 0.8, 0.1, [_step(0, "draft", 0.0003)]), 0.1),
        PromptResult("b", 0, lookup.id, _run(21, 1.0, 0.1, [_step(0, "draft", 0.0003)]), 0.1),
    ]
    return SuiteResult(suite, results, [])


def test_metrics_median_of_drafting_rounds_and_time_per_token_after_the_first():
    steps = [_step(0, "draft", 0.008), _step(1, "lookup", 0.0001), _step(2, "draft", 0.010), _step(3, "plain", 0.0)]
    assert metrics.drafting_round_seconds(steps) == pytest.approx(0.009)
    assert metrics.drafting_round_seconds([_step(0, "lookup", 0.0001)]) is None
    assert metrics.decode_step_seconds([(11, 1.1, 0.1), (21, 1.6, 0.1), (1, 0.2, 0.2), (9, 0.9, None)]) == pytest.approx(2.5 / 30)
    assert metrics.decode_step_seconds([(1, 0.2, 0.2)]) is None


def test_report_rows_and_section_per_dataset():
    """Mutation run once: counting every round's ``draft_seconds`` (lookup rounds and plain steps included) in
    ``metrics.drafting_round_seconds`` gives a median of 4.05 ms on "a" and fails the 9 ms below (run once: both tests here failed)."""
    rows = summarise([_suite_result()], greedy=True)
    by = {(r["dataset"], r["method"]): r for r in rows}
    assert by[("a", "plain")]["decode_step_seconds"] == pytest.approx(0.1)
    assert by[("b", "plain")]["decode_step_seconds"] == pytest.approx(0.075)
    assert by[("a", "dspark[d]:hardware")]["drafting_round_seconds"] == pytest.approx(0.009)
    assert by[("all", "dspark[d]:hardware")]["drafting_round_seconds"] == pytest.approx(0.009)
    # prompt lookup's rounds run no drafter: no drafting cost, whatever its records' source says
    assert by[("a", "prompt-lookup:10")]["drafting_round_seconds"] is None
    assert by[("a", "plain")]["drafting_round_seconds"] is None
    report = {"suites": [{"name": "s", "methods": [{"id": "plain"}, {"id": "dspark[d]:hardware"}, {"id": "prompt-lookup:10"}]}],
              "results": rows}
    costs = {e["dataset"]: e for e in drafting_costs(report)}
    assert set(costs) == {"a", "b", "all"}
    assert costs["a"]["share"] == pytest.approx(0.09) and costs["b"]["share"] == pytest.approx(0.009 / 0.075)
    assert costs["all"]["plain_step_seconds"] == pytest.approx(2.5 / 30)
    section = markdown_section(report)
    assert "| s | a | dspark d / hardware | 9.00 | 100.0 | 9.0% |" in section
    assert "| s | b | dspark d / hardware | 9.00 | 75.0 | 12.0% |" in section
    json.dumps(rows, allow_nan=False)


def test_section_in_the_bench_markdown_and_absent_without_drafting():
    sr = _suite_result()
    report = {"machine": {"device_name": "cpu", "threads": 1, "torch": "t", "transformers": "x"},
              "settings": {"max_new_tokens": 8, "temperature": 0.0, "repeats": 1}, "created": "now", "flags": [],
              "suites": [{"name": "s", "methods": [m.describe() for m in [sr.suite.plain, *sr.suite.methods]], "datasets": {"a": 1, "b": 1}}],
              "results": summarise([sr], greedy=True)}
    text = markdown(report)
    assert "Drafting round inside generation" in text and "| s | all | dspark d / hardware | 9.00 |" in text
    report["results"] = [r for r in report["results"] if r["method"] != "dspark[d]:hardware"]
    assert markdown_section(report) == "" and "Drafting round inside generation" not in markdown(report)
