"""The batch planner's inputs and outputs at a given concurrency (run g): every requests_to_draft call (calibrated
slot confidences of each request's previous block, forced flags -> who drafts, the drafting seconds for 1..R
requests and the overheads) and every plan_lengths call (slot confidences -> lengths, the step's drafting
seconds, the packed curve's ms at B = R..R+6), then the per-step trace of gate_c8.py.

    OMP_NUM_THREADS=1 PYTHONPATH=docs/measurements/2026-12-04e/traces:scripts \
        python docs/measurements/2026-12-04g/traces/c2_plan_g.py 2 hardware 1 64
"""
import sys
from pathlib import Path

import dspark_hf.batching.planning as PL
import dspark_hf.batching.processor as P

orig_plan, orig_rtd = P.plan_lengths, P.requests_to_draft


def plan(policy, conf, bs, caps, budget, steps_per_second=None, draft_seconds=0.0, **kw):
    out = orig_plan(policy, conf, bs, caps, budget, steps_per_second=steps_per_second, draft_seconds=draft_seconds, **kw)
    rows = PL._slot_rows(policy, conf, bs)
    sps = steps_per_second or policy.profile.steps_per_second
    r = len(conf) + kw.get("plain_requests", 0)
    print("PLAN", [[round(x, 2) for x in row[:4]] for row in rows], "->", out, "plain", kw.get("plain_requests", 0),
          "ds", round(draft_seconds * 1000, 1), "ov", round(1000 * kw.get("overhead_seconds", 0.0), 1),
          f"cost B{r}..{r + 6}", [round(1000 / sps(b)) for b in range(r, r + 7)], flush=True)
    return out


def rtd(policy, conf, bs, sps, drafting, must_draft=None, **kw):
    out = orig_rtd(policy, conf, bs, sps, drafting, must_draft=must_draft, **kw)
    rows = PL._slot_rows(policy, conf, bs)
    costs = [round(1000 * (drafting(k) if callable(drafting) else k * drafting), 1) for k in range(1, len(conf) + 1)]
    print("RTD", [[round(x, 2) for x in row[:4]] for row in rows], "forced", must_draft, "->", out, "draft ms", costs,
          {k: round(1000 * v, 1) for k, v in kw.items()}, flush=True)
    return out


P.plan_lengths, P.requests_to_draft = plan, rtd
exec(open(Path(__file__).parents[2] / "2026-12-04e/traces/gate_c8.py").read())
