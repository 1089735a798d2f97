"""How well a request's previous block's confidences predict its next block's slot-1 acceptance (run g).

Serves the 18 load-bench prompts (mt-bench, gsm8k, humaneval from index 40) at once with fixed:1 (every
block verified at slot 1), 64 new tokens, and buckets consecutive block pairs of each request by the
previous block's calibrated slot-1 confidence: mean next slot-1 acceptance per bucket, against the
bucket's mean confidence and the same block's own confidence's calibration.

    OMP_NUM_THREADS=1 PYTHONPATH=scripts python docs/measurements/2026-12-04g/traces/stale_confidence.py
"""
import statistics

from engine_workload import load_workload, serve_once

target, draft, prompts = load_workload(18)
serve_once(target, draft, prompts, "fixed:1", 64)
pairs, own = [], []
for telemetry in draft.last_batch_telemetry.requests.values():
    steps = [s for s in telemetry.steps if s.confidences and s.verified >= 1]
    for prev, nxt in zip(steps, steps[1:]):
        pairs.append((prev.confidences[0], int(nxt.accepted >= 1)))
    own += [(s.confidences[0], int(s.accepted >= 1)) for s in steps]
print(f"{len(pairs)} consecutive block pairs; overall slot-1 acceptance {statistics.mean(a for _, a in own):.3f}")
edges = [0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.01]
print("bucket of c1 | pairs | mean c1 | next block's slot-1 acceptance | same block's slot-1 acceptance")
for lo, hi in zip(edges, edges[1:]):
    sel = [(c, a) for c, a in pairs if lo <= c < hi]
    same = [(c, a) for c, a in own if lo <= c < hi]
    if sel:
        print(f"[{lo:.1f}, {hi:.1f}) | {len(sel)} | {statistics.mean(c for c, _ in sel):.2f} | "
              f"{statistics.mean(a for _, a in sel):.3f} | {statistics.mean(a for _, a in same):.3f} ({len(same)})")
