"""Where a batched drafting call spends its time: wraps the batched-drafting helpers and the draft forward with
wall-clock accumulators and serves the first C load-bench prompts (64 new tokens) with POLICY. From the repository root:
    OMP_NUM_THREADS=1 .venv/bin/python docs/measurements/2026-12-05/draft_time_split.py 8 fixed:1"""
import sys, time, collections, functools
sys.path.insert(0, "scripts")
from engine_workload import load_workload, serve_once
import dspark_hf.batching.batched_drafting as BD
import dspark_hf.batching.processor as P
acc = collections.defaultdict(float); cnt = collections.Counter()
def wrap(mod, name, label):
    f = getattr(mod, name)
    @functools.wraps(f)
    def g(*a, **k):
        t = time.perf_counter(); r = f(*a, **k); acc[label] += time.perf_counter() - t; cnt[label] += 1; return r
    setattr(mod, name, g)
wrap(P, "draft_rounds", "draft_rounds(total)")
wrap(BD, "right_aligned", "right_aligned (cache copy in)")
wrap(BD, "request_rows", "request_rows (cache copy out)")
wrap(BD, "draw_blocks", "draw_blocks")
wrap(BD, "_positions_and_mask", "positions_and_mask")
C = int(sys.argv[1]); pol = sys.argv[2]
target, draft, prompts = load_workload(C)
orig_fwd = draft.forward
def fwd(*a, **k):
    t = time.perf_counter(); r = orig_fwd(*a, **k); acc["draft.forward"] += time.perf_counter() - t; cnt["draft.forward"] += 1; return r
draft.forward = fwd
serve_once(target, draft, prompts, pol, 16)
acc.clear(); cnt.clear()
m, wall = serve_once(target, draft, prompts, pol, 64)
print("wall", round(wall, 2), "tok/s", round(m["aggregate_tokens_per_second"], 1))
steps = draft.last_batch_telemetry.steps
print("steps", len(steps), "drafted steps", sum(1 for s in steps if s.drafted_requests), "sum draft_seconds", round(sum(s.draft_seconds for s in steps), 3))
for k in acc: print(f"{k:35s} {acc[k]*1000:8.1f} ms  calls {cnt[k]}  per call {acc[k]*1000/cnt[k]:.2f} ms")
