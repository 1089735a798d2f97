import sys, torch
from pathlib import Path
import dspark_hf.batching.processor as P
import dspark_hf.batching.planning as PL
orig_plan, orig_rtd = P.plan_lengths, P.requests_to_draft
def plan(policy, conf, bs, caps, budget, steps_per_second=None, draft_seconds=0.0, **kw):
    out = orig_plan(policy, conf, bs, caps, budget, steps_per_second=steps_per_second, draft_seconds=draft_seconds, **kw)
    rows = PL._slot_rows(policy, conf, bs)
    sps = steps_per_second or policy.profile.steps_per_second
    print("PLAN", [[round(x,2) for x in r[:4]] for r in rows], "->", out, "ds", round(draft_seconds*1000,1), "cost B2..6", [round(1000/sps(b)) for b in range(2,7)], flush=True)
    return out
def rtd(policy, conf, bs, sps, dspr, must_draft=None):
    out = orig_rtd(policy, conf, bs, sps, dspr, must_draft=must_draft)
    rows = PL._slot_rows(policy, conf, bs)
    print("RTD", [[round(x,2) for x in r[:4]] for r in rows], "forced", must_draft, "->", out, "dspr", round(dspr*1000,1), flush=True)
    return out
P.plan_lengths, P.requests_to_draft = plan, rtd
sys.argv = [sys.argv[0]] + sys.argv[1:]
exec(open(Path(__file__).with_name("gate_c8.py")).read())
