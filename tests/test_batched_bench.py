"""``dspark bench --concurrency``: every (concurrency, method) run measured, outputs checked against
plain continuous batching (mismatches counted), the table written; bad flags refused in one line.

Mutation run once (the named test failed, then the change was reverted): ``bench_concurrency``
comparing against the wrong reference (``reference = [o.generated_tokens[::-1] ...]``):
``test_bench_concurrency_rows_and_identity`` fails (mismatches > 0)."""

from __future__ import annotations

from pathlib import Path

import pytest

from transformers import GenerationConfig

from batched_support import fixture_draft, plain_greedy, prompts_of
from conftest import one_line, tiny_qwen3_target
from dspark_hf.benchmarks.concurrency import bench_concurrency, concurrency_markdown, frontier_plot
from dspark_hf.cli.bench_concurrency import concurrency_levels
from dspark_hf.errors import UnsupportedUsageError


def test_bench_concurrency_rows_and_identity(tmp_path):
    """Rows, identity and the table; ``on_level`` gets the report of the rows measured so far after each
    concurrency (what a run stopped at its time limit keeps). Mutation run once: ``on_level`` called once at the end: fails."""
    target = tiny_qwen3_target()
    levels = []
    report = bench_concurrency(target, fixture_draft(), prompts_of([5, 9, 13], seed=51), [1, 3], ["fixed:2", "threshold:0.5"],
                               max_new_tokens=8, log=lambda m: None, on_level=lambda partial: levels.append([r["concurrency"] for r in partial["rows"]]))
    rows = report["rows"]
    assert levels == [[1] * 5, [1] * 5 + [3] * 3]
    assert [(r["concurrency"], r["method"]) for r in rows] == [
        (1, "plain"), (1, "fixed:2"), (1, "batch-1 fixed:2"), (1, "threshold:0.5"), (1, "batch-1 threshold:0.5"),
        (3, "plain"), (3, "fixed:2"), (3, "threshold:0.5"),
    ]
    assert report["mismatches"] == 0 and all(r["new_tokens"] == 8 * r["concurrency"] for r in rows)
    assert all(r["aggregate_tokens_per_second"] > 0 for r in rows)
    assert all(r["ttft_seconds_median"] > 0 for r in rows if not r["method"].startswith("batch-1"))
    assert all(r["per_request_tokens_per_second_p10"] <= r["per_request_tokens_per_second_median"] + 1e-9 for r in rows)
    text = concurrency_markdown(report)
    assert "| 3 | fixed:2 |" in text and "| C | plain | best fixed | threshold:0.5 |" in text
    assert Path(frontier_plot(report, tmp_path / "f.png")).stat().st_size > 1000


def test_summary_table_keeps_each_policy_in_its_own_column():
    """A policy and its variant (``hardware``, ``hardware:always-draft``) are separate columns, the best
    fixed length names itself, batch-1 rows stay out. Mutation run once: the columns merged by prefix
    (the table before 2026-12-03 evening, which printed the variant's 20.5 under ``hardware``): fails."""
    from dspark_hf.benchmarks.concurrency import summary_table

    rows = [{"concurrency": 2, "method": m, "aggregate_tokens_per_second": v} for m, v in
            [("plain", 17.2), ("fixed:1", 18.1), ("fixed:3", 20.3), ("hardware", 20.2), ("hardware:always-draft", 20.5),
             ("batch-1 hardware", 30.0)]]
    assert summary_table(rows) == [
        "| C | plain | best fixed | hardware | hardware:always-draft |",
        "| ---: | ---: | ---: | ---: | ---: |",
        "| 2 | 17.2 | 20.3 (fixed:3) | 20.2 | 20.5 |",
    ]


def test_repeated_passes_keep_the_median_pass_and_every_figure():
    """``repeats=3``: every (concurrency, method) runs three times in interleaved passes (plain and each
    policy in turn), the row is the pass with the median aggregate tokens/s and lists all three, the
    mismatches of every pass are summed; the table says so. ``median_run`` on passes 30, 10, 20 keeps the
    20 pass whole (all of its metrics from that pass). Mutation run once: ``median_run`` keeping the
    fastest pass (``ordered[-1]``): fails (30 kept)."""
    from dspark_hf.benchmarks.concurrency import median_run

    target = tiny_qwen3_target()
    order = []
    report = bench_concurrency(target, fixture_draft(), prompts_of([5, 9], seed=57), [2], ["fixed:2"], max_new_tokens=4,
                               repeats=3, log=lambda m: order.append(m.split()[2].rstrip(":")))
    assert order == ["plain", "fixed:2"] * 3
    assert [r["method"] for r in report["rows"]] == ["plain", "fixed:2"] and report["repeats"] == 3 and report["mismatches"] == 0
    for row in report["rows"]:
        runs = row["aggregate_tokens_per_second_runs"]
        assert len(runs) == 3 and row["aggregate_tokens_per_second"] == sorted(runs)[1]
    assert "median of 3 interleaved passes" in concurrency_markdown(report)
    passes = [{"aggregate_tokens_per_second": v, "wall_seconds": w, "mismatches": m} for v, w, m in ((30, 1, 0), (10, 3, 1), (20, 2, 0))]
    kept = median_run(passes)
    assert (kept["aggregate_tokens_per_second"], kept["wall_seconds"], kept["mismatches"]) == (20, 2, 1)
    assert kept["aggregate_tokens_per_second_runs"] == [30, 10, 20]


def test_closed_loop_keeps_c_in_flight_over_n_requests():
    """``requests=5`` at concurrency 1 and 2: every level serves 5 requests (prompts reused from the first where
    they run out), a new one added only as one finishes, so that at every arrival fewer than ``C`` earlier
    requests are still running; every output equals plain's; the batch-1 row at C = 1 runs all 5 prompts in
    turn. Mutation run once: ``serve`` adding every request at once (``width = len(prompts)``): fails (at C = 1
    the second request arrives while the first runs); ``serve`` without its ``deepcopy``: fails (eos set to -1)."""
    from dspark_hf.benchmarks.concurrency import serve

    target = tiny_qwen3_target()
    prompts = prompts_of([5, 9, 13], seed=59)
    report = bench_concurrency(target, fixture_draft(), prompts, [1, 2], ["fixed:2"], max_new_tokens=4, requests=5, log=lambda m: None)
    rows = {(r["concurrency"], r["method"]): r for r in report["rows"]}
    assert report["mismatches"] == 0 and report["requests"] == 5
    assert all(r["requests"] == 5 and r["new_tokens"] == 20 for r in rows.values())
    assert set(rows) == {(1, "plain"), (1, "fixed:2"), (1, "batch-1 fixed:2"), (2, "plain"), (2, "fixed:2")}
    assert "5 requests per level" in concurrency_markdown(report)
    config = GenerationConfig(max_new_tokens=4, do_sample=False, eos_token_id=-1, pad_token_id=0, dspark_policy="fixed:2")
    for c in (1, 2):
        chosen = [prompts[i % 3] for i in range(5)]
        outputs, arrivals, _ = serve(target, chosen, config, draft=fixture_draft(), in_flight=c)
        finishes = [o.timestamps[-1] for o in outputs]
        for i, arrival in enumerate(arrivals):
            assert sum(finishes[j] > arrival for j in range(i)) < c, (c, i)
        assert [o.generated_tokens for o in outputs] == [o for o in plain_greedy(target, chosen, 4, eos_token_id=-1)]
    unset = GenerationConfig(max_new_tokens=2, do_sample=False, pad_token_id=0)
    serve(target, prompts[:1], unset)
    assert unset.eos_token_id is None  # serve leaves the caller's config alone (transformers' manager sets it to -1)
    with pytest.raises(ValueError):
        bench_concurrency(target, fixture_draft(), prompts, [1], ["fixed:2"], max_new_tokens=4, requests=3, arrival_rate=5.0)


def test_bench_concurrency_with_poisson_arrivals():
    target = tiny_qwen3_target()
    report = bench_concurrency(target, fixture_draft(), prompts_of([5, 9], seed=53), [2], ["fixed:2"], max_new_tokens=4,
                               arrival_rate=50.0, log=lambda m: None)
    assert report["mismatches"] == 0 and report["arrival_rate"] == 50.0


def test_bad_concurrency_is_one_line():
    assert concurrency_levels("1,2,4-5") == [1, 2, 4, 5]
    for bad in ("0,1", "x", ""):
        with pytest.raises(UnsupportedUsageError) as err:
            concurrency_levels(bad)
        one_line(err)


@pytest.mark.parametrize("args, message", [
    (["--requests", "4"], "--requests is for the load benchmark"),
    (["--concurrency", "1,2", "--requests", "4", "--arrival-rate", "2"], "do not go together"),
    (["--concurrency", "1,2", "--requests", "0"], "--requests must be at least 1"),
])
def test_bad_requests_flag_is_one_line(args, message, capsys):
    """Refused before anything loads, in one line naming the flag. Mutation run once: the ``--arrival-rate``
    check removed: the second case fails (a ValueError traceback from inside the benchmark, after loading)."""
    from dspark_hf.cli import main

    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
