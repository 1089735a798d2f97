"""Run w (issue 14): the bundled target's forward of n new rows over a 256-token cache on this machine, per dtype:
plain decoding's one-row step (no context), the DSpark call's verification context (verification_forwards:
float32 weight-major where measured faster; bf16 row by row, weight-major where exact and faster), and for bf16
row by row with F.linear layers. Medians of 8 after 2 warm-ups, interleaved.

    OMP_NUM_THREADS=1 .venv/bin/python docs/measurements/2026-12-07b/forward_costs.py 1
"""
import statistics, sys, time, torch, contextlib
import dspark_hf  # noqa
from dspark_hf.loading import load_target_with_precision
from dspark_hf.integration.exact_verification import single_step_rows
from dspark_hf.integration.verification_forwards import verification_context
from dspark_hf.verification.scheduling.profiler import PrefilledSequence
threads = int(sys.argv[1]); torch.set_num_threads(threads)
rows = (1, 2, 4, 8)
res = {}
for dt in ("bfloat16", "float32"):
    target, tok, precision = load_target_with_precision(None, dt)
    seq = PrefilledSequence(target, rows, context_length=256, seed=0)
    ctx = {"plain": lambda: contextlib.nullcontext(), "verif": lambda: verification_context(target)}
    if dt == "bfloat16":
        ctx["rows F.linear"] = lambda: single_step_rows(target)
    with torch.no_grad():
        for rep in range(10):
            for n in rows:
                for name, make in ctx.items():
                    if name == "plain" and n > 1: continue
                    with make():
                        t = seq.timed(n)
                    if rep >= 2: res.setdefault((dt, name, n), []).append(t)
for k, v in sorted(res.items()):
    print(threads, k, f"{1000*statistics.median(v):.1f}")
