"""Load benchmark of batched DSpark (``dspark bench --concurrency 1,2,4,8,16``).

For each concurrency ``C`` and each method (plain continuous batching, then DSpark with each
verification policy), prompts are served by one continuous-batching manager: ``C`` of them all at once,
or arriving as a Poisson process of rate ``arrival_rate`` per second, or, with ``requests`` ``N > C``, ``N``
of them in a closed loop (``C`` in flight; as one finishes the next is added, as ``C`` users sending
requests back to back would), so that a level's figures rest on ``N`` requests, not on ``C`` (at ``C = 1``
a single request's 64 tokens vary by 10-20 % between passes on this project's CPU). Per run: aggregate
tokens/s (all new tokens over the wall time from the first arrival to the last token), per-request
tokens/s (new tokens over the time from the request's arrival to its last token: median and 10th
percentile) and time to first token (median). Greedy outputs are checked token for token against plain
continuous batching at the same concurrency (which equals plain batch-1 ``generate`` in float32);
``mismatches`` counts the requests that differ. At concurrency 1 each policy also runs through the
batch-1 path (``generate(ids, assistant_model=draft)`` on each of the level's prompts in turn, row
``batch-1 <policy>``), the reference the engine is compared with at one request. :func:`frontier_plot` draws aggregate tokens/s against the
median per-request tokens/s, one line per method over the concurrencies. With ``repeats`` > 1 every
(concurrency, method) runs that many times in interleaved passes and the median pass is reported.
"""

from __future__ import annotations

import copy
import random
import statistics
import time

import torch
from transformers import GenerationConfig

from dspark_hf.batching.padded import workload_sized_config

PLAIN = "plain"


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return 0.0
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def serve(target, prompts: list[list[int]], config: GenerationConfig, draft=None, arrival_rate: float | None = None, seed: int = 0,
          in_flight: int | None = None):
    """Serve ``prompts`` with one manager (speculative when ``draft`` is given); return the outputs in
    prompt order, each request's arrival time, and the wall time of the run. All at once by default; Poisson
    arrivals at ``arrival_rate`` per second; or a closed loop keeping ``in_flight`` requests in the manager (the
    next added as soon as one finishes). ``config`` is not changed (transformers' manager writes into the one
    it is given)."""
    config = copy.deepcopy(config)
    block = draft.config.block_size if draft is not None else 0
    width = len(prompts) if in_flight is None else max(1, min(int(in_flight), len(prompts)))
    # sized for the longest requests that can be in flight together (a finished request's pages are freed)
    cb_config = workload_sized_config(sorted(prompts, key=len, reverse=True)[:width], config.max_new_tokens, block)
    manager = target.init_continuous_batching(generation_config=config, continuous_batching_config=cb_config, assistant_model=draft)
    rng = random.Random(seed)
    manager.start()
    arrivals, ids = [], []

    def add(i: int) -> None:
        arrivals.append(time.perf_counter())
        ids.append(manager.add_request(prompts[i], record_timestamps=True))

    try:
        start = time.perf_counter()
        for i in range(width):
            if arrival_rate and i:
                time.sleep(rng.expovariate(arrival_rate))
            add(i)
        results = {}
        while len(results) < len(prompts):
            out = manager.get_result(timeout=1)
            if out is not None and out.is_finished():
                results[out.request_id] = out
                if len(ids) < len(prompts):
                    add(len(ids))
            elif out is None and not manager.is_running():
                raise RuntimeError("the continuous-batching loop stopped before every request finished")
        wall = max(r.timestamps[-1] if r.timestamps else r.lifespan[1] for r in results.values()) - start
    finally:
        manager.stop(block=True)
        manager.destroy()
    return [results[i] for i in ids], arrivals, wall


def run_metrics(outputs, arrivals, wall) -> dict:
    tokens = [len(o.generated_tokens) for o in outputs]
    per_request = [n / max(o.timestamps[-1] - a, 1e-9) for o, a, n in zip(outputs, arrivals, tokens) if o.timestamps]
    ttft = [o.timestamps[0] - a for o, a in zip(outputs, arrivals) if o.timestamps]
    return {
        "requests": len(outputs), "new_tokens": sum(tokens), "wall_seconds": wall,
        "aggregate_tokens_per_second": sum(tokens) / wall if wall > 0 else 0.0,
        "per_request_tokens_per_second_median": statistics.median(per_request) if per_request else 0.0,
        "per_request_tokens_per_second_p10": _percentile(per_request, 0.10),
        "ttft_seconds_median": statistics.median(ttft) if ttft else 0.0,
    }


def batch_one_row(target, draft, prompts: list[list[int]], config: GenerationConfig, policy) -> tuple[dict, list[list[int]]]:
    """The batch-1 path on each of ``prompts`` in turn: one row (tokens/s over the calls' summed wall time; per-call
    tokens/s median and p10; tau pooled over every call's rounds), and the outputs."""
    new, wall, rates, outputs, steps = 0, 0.0, [], [], []
    lookups = 0
    for prompt in prompts:
        ids = torch.tensor([prompt], device=target.device)
        start = time.perf_counter()
        out = target.generate(ids, assistant_model=draft, generation_config=config, attention_mask=torch.ones_like(ids))
        seconds = time.perf_counter() - start
        tokens = out.shape[1] - ids.shape[1]
        new, wall = new + tokens, wall + seconds
        rates.append(tokens / seconds)
        outputs.append(out[0, ids.shape[1]:].tolist())
        steps += draft.last_telemetry.steps
        lookups += draft.last_telemetry.lookup_rounds
    row = {"concurrency": 1, "method": f"batch-1 {policy}", "requests": len(prompts), "new_tokens": new, "wall_seconds": wall,
           "aggregate_tokens_per_second": new / wall, "per_request_tokens_per_second_median": statistics.median(rates),
           "per_request_tokens_per_second_p10": _percentile(rates, 0.10), "ttft_seconds_median": 0.0,
           "tau": sum(s.emitted for s in steps) / len(steps) if steps else 0.0, "lookup_rounds": lookups}
    return row, outputs


def median_run(runs: list[dict]) -> dict:
    """Of several passes of one (concurrency, method), the pass with the median aggregate tokens/s (the
    lower middle one for an even count), with every pass's aggregate tokens/s in
    ``aggregate_tokens_per_second_runs`` and the mismatches of all passes summed."""
    ordered = sorted(runs, key=lambda r: r["aggregate_tokens_per_second"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["aggregate_tokens_per_second_runs"] = [r["aggregate_tokens_per_second"] for r in runs]
    if any("mismatches" in r for r in runs):
        row["mismatches"] = sum(r.get("mismatches", 0) for r in runs)
    return row


def bench_concurrency(target, draft, prompts: list[list[int]], concurrencies: list[int], policies: list, *, max_new_tokens: int,
                      temperature: float = 0.0, arrival_rate: float | None = None, seed: int = 0, repeats: int = 1, log=print,
                      batch_one: bool = True, on_level=None, requests: int | None = None) -> dict:
    """Every (concurrency, method) run; ``prompts`` are taken in order (from the first again where they run out),
    ``C`` per concurrency, or ``requests`` in a closed loop of ``C`` in flight where that is more. With
    ``repeats`` > 1 the methods run in interleaved passes (plain, each policy, plain, ...), so that a
    machine's drift falls on all of them alike, and each row is the median pass (:func:`median_run`).
    ``batch_one=False`` leaves out the batch-1 rows at concurrency 1. ``on_level(report)``, if given, is
    called after each concurrency with the report of the rows so far (a long run can save what it has)."""
    rows = []
    repeats = max(1, int(repeats))

    def report() -> dict:
        return {"rows": list(rows), "mismatches": sum(r.get("mismatches", 0) for r in rows), "arrival_rate": arrival_rate,
                "max_new_tokens": max_new_tokens, "temperature": temperature, "repeats": repeats, "requests": requests}

    if requests is not None and arrival_rate is not None:
        raise ValueError("requests (a closed loop) and arrival_rate (Poisson arrivals of C requests) do not go together")
    for c in concurrencies:
        chosen = [prompts[i % len(prompts)] for i in range(max(c, requests or 0))]
        reference = None
        passes: dict[str, list[dict]] = {}
        for _ in range(repeats):
            for method in [PLAIN, *policies]:
                config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=temperature > 0, temperature=temperature or 1.0,
                                          eos_token_id=target.generation_config.eos_token_id, pad_token_id=0,
                                          dspark_policy=None if method == PLAIN else method)
                outputs, arrivals, wall = serve(target, chosen, config, draft=None if method == PLAIN else draft, arrival_rate=arrival_rate, seed=seed,
                                                in_flight=c)
                row = {"concurrency": c, "method": str(method), **run_metrics(outputs, arrivals, wall)}
                if method == PLAIN:
                    reference = reference or [o.generated_tokens for o in outputs]
                elif temperature == 0:
                    row["mismatches"] = sum(o.generated_tokens != r for o, r in zip(outputs, reference))
                if method != PLAIN:
                    telemetry = draft.last_batch_telemetry
                    row["tau"] = telemetry.tau
                    row["lookup_rounds"] = telemetry.lookup_rounds
                    steps = telemetry.steps
                    row["mean_batch_tokens"] = statistics.mean(s.batch_tokens for s in steps) if steps else 0.0
                    drafted = [s for s in steps if s.drafted_requests and not s.prefill_tokens]
                    if drafted:  # where a drafted decoding step's time goes (the engine measures both)
                        row["drafted_step_ms_median"] = 1000 * statistics.median(s.step_seconds for s in drafted)
                        row["draft_ms_median"] = 1000 * statistics.median(s.draft_seconds for s in drafted)
                passes.setdefault(row["method"], []).append(row)
                if batch_one and c == 1 and method != PLAIN and arrival_rate is None:
                    one, tokens = batch_one_row(target, draft, chosen, config, method)
                    if temperature == 0:
                        one["mismatches"] = sum(t != r for t, r in zip(tokens, reference))
                    passes.setdefault(one["method"], []).append(one)
                log(f"C={c:3d} {row['method']:>16}: {row['aggregate_tokens_per_second']:8.1f} tok/s aggregate, "
                    f"{row['per_request_tokens_per_second_median']:7.1f} per request (p10 {row['per_request_tokens_per_second_p10']:.1f}), "
                    f"TTFT {1000 * row['ttft_seconds_median']:.0f} ms" + (f", mismatches {row['mismatches']}" if "mismatches" in row else ""))
        rows += [median_run(runs) for runs in passes.values()]
        if on_level is not None:
            on_level(report())
    return report()


def concurrency_markdown(report: dict) -> str:
    """The runs as a table, and per concurrency the best fixed length next to the adaptive policies."""
    if report["arrival_rate"]:
        arrivals = f"Poisson arrivals at {report['arrival_rate']}/s"
    elif report.get("requests"):
        arrivals = f"{report['requests']} requests per level (or C where more) in a closed loop, C in flight"
    else:
        arrivals = "all requests at once"
    repeats = report.get("repeats", 1)
    passes = f", median of {repeats} interleaved passes" if repeats > 1 else ""
    lines = [f"# dspark bench --concurrency ({arrivals}, {report['max_new_tokens']} new tokens{passes})", ""]
    machine = report.get("machine")
    if machine:
        lines += [f"{machine['device_name']}, {machine['threads']} threads; target {machine['dtype']}, draft {machine['draft_dtype']}; "
                  f"torch {machine['torch']}, transformers {machine['transformers']}", ""]
    extra = " every pass's aggregate tok/s |" if repeats > 1 else ""
    lines += ["| C | method | aggregate tok/s | per-request tok/s median | p10 | TTFT median ms | tau | batch tokens | mismatches |" + extra,
              "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" + (" --- |" if extra else "")]
    for r in report["rows"]:
        every = " " + ", ".join(f"{x:.1f}" for x in r.get("aggregate_tokens_per_second_runs", [])) + " |" if extra else ""
        lines.append(
            f"| {r['concurrency']} | {r['method']} | {r['aggregate_tokens_per_second']:.1f} | {r['per_request_tokens_per_second_median']:.1f} | "
            f"{r['per_request_tokens_per_second_p10']:.1f} | {1000 * r['ttft_seconds_median']:.0f} | {r.get('tau', 0):.2f} | "
            f"{r.get('mean_batch_tokens', 0):.1f} | {r.get('mismatches', '')} |" + every
        )
    lines += [""] + summary_table(report["rows"])
    return "\n".join(lines) + "\n"


def _is_fixed(method: str) -> bool:
    return method.startswith(("fixed", "FixedLength"))


def summary_table(rows: list[dict]) -> list[str]:
    """Markdown lines: per concurrency, plain's aggregate tokens/s, the best fixed length's (and which),
    and one column per other policy run (each under its own name, never merged with a variant: ``hardware``
    and ``hardware:always-draft`` are two columns). Batch-1 rows are left out."""
    adaptive = list(dict.fromkeys(r["method"] for r in rows
                                  if r["method"] != PLAIN and not _is_fixed(r["method"]) and not r["method"].startswith("batch-1 ")))
    lines = ["| C | plain | best fixed | " + " | ".join(adaptive) + " |", "| ---: | ---: | ---: |" + " ---: |" * len(adaptive)]
    for c in sorted({r["concurrency"] for r in rows}):
        by_method = {r["method"]: r["aggregate_tokens_per_second"] for r in rows if r["concurrency"] == c}
        fixed = [(v, m) for m, v in by_method.items() if _is_fixed(m)]
        best = f"{max(fixed)[0]:.1f} ({max(fixed)[1]})" if fixed else ""
        cells = [f"{by_method[PLAIN]:.1f}" if PLAIN in by_method else "", best]
        cells += [f"{by_method[m]:.1f}" if m in by_method else "" for m in adaptive]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return lines


def frontier_plot(report: dict, path) -> str:
    """PNG: aggregate tokens/s against median per-request tokens/s, one line per method (points
    labelled with their concurrency)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pathlib import Path

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for method in dict.fromkeys(r["method"] for r in report["rows"] if not r["method"].startswith("batch-1")):
        at = sorted((r for r in report["rows"] if r["method"] == method), key=lambda r: r["concurrency"])
        xs = [r["per_request_tokens_per_second_median"] for r in at]
        ys = [r["aggregate_tokens_per_second"] for r in at]
        ax.plot(xs, ys, marker="o", label=method)
        for r, x, y in zip(at, xs, ys):
            ax.annotate(str(r["concurrency"]), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("per-request tokens/s (median)")
    ax.set_ylabel("aggregate tokens/s")
    ax.set_title("throughput against per-user speed (labels: concurrency)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
