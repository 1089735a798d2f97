"""Interleaved A/B (run v, issue 14): the bf16 target's forward of n new rows over a 256-token cache, three ways:
plain decoding's one-row step (no context), row-by-row verification with F.linear layers (before 3f7ac43), and
row-by-row verification with weight-major layers where bit-identical and measured faster (after). Medians of 10.

    OMP_NUM_THREADS=1 .venv/bin/python docs/measurements/2026-12-07/forward_ab.py
"""
import statistics, sys, time, torch
import dspark_hf  # noqa
from dspark_hf.loading import load_target_with_precision
from dspark_hf.integration.exact_verification import single_step_rows
from dspark_hf.integration.verification_forwards import verification_context
from dspark_hf.verification.scheduling.profiler import PrefilledSequence
torch.set_num_threads(1)
target, tok, precision = load_target_with_precision(None, "auto")
rows = (1, 2, 3, 4, 6, 8)
seq = PrefilledSequence(target, rows, context_length=256, seed=0)
ctx = {"plain": lambda: __import__("contextlib").nullcontext(), "rows F.linear": lambda: single_step_rows(target),
       "rows weight-major": lambda: verification_context(target, rows=True)}
times = {}
with torch.no_grad():
    for rep in range(12):
        for n in rows:
            for name, make in (list(ctx.items()) if rep % 2 else list(reversed(ctx.items()))):
                if name == "plain" and n > 1:
                    continue
                with make():
                    t = seq.timed(n)
                if rep >= 2:
                    times.setdefault((name, n), []).append(t)
for n in rows:
    print(n, "  ".join(f"{name} {1000 * statistics.median(times[(name, n)]):.1f}" for name in ctx if (name, n) in times))
