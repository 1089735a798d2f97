"""Replay the whole-block rounds of a `dspark bench` run under other verification lengths (run s, issue 14).

Every slot of a whole-block round was verified, so the tokens any shorter choice would have delivered are known
(min(accepted, L) + 1). Each round is costed with the cost profile's step of L + 1 tokens as the scheduler reads it
(`step_seconds_curve`) plus D seconds of drafting and loop work, and the sums give the speed against plain steps
(the profile's one-token forward). Policies: every fixed length, the batch-1 hardware-aware rule (the project's
`schedule_prefixes`, as `HardwareAware` calls it), the rule that maximises tokens minus r x seconds at the
long-run rate r (found by iteration), and an oracle that knows each round's accepted length.

    python docs/measurements/2026-12-06e/replay_policies.py RUNS.jsonl.gz 'dspark[draft]:whole' PROFILE.json [D [DC]]
e.g. run r's bench (docs/measurements/2026-12-06d/bench_ab/runs.jsonl.gz) with run r's bf16 row-by-row profile.
DC (added in run t, docs/measurements/2026-12-06f/replay_draft_cost.log): the drafting seconds the hardware-aware
rule is told, when it should differ from the D every round is costed with (default: D).
"""
import gzip
import json
import sys

from dspark_hf.verification.scheduling.cost_profile import load_profile
from dspark_hf.verification.scheduling.prefix_scheduler import cumulative_survival, schedule_prefixes, step_seconds_curve

runs, method, profile_path = sys.argv[1:4]
D = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0068
DC = float(sys.argv[5]) if len(sys.argv) > 5 else D
profile = load_profile(profile_path)
BLOCK = 7
t = step_seconds_curve(profile.steps_per_second, 1, 1 + BLOCK)  # t[L]: a step verifying L slots
rounds = {}
for line in gzip.open(runs, "rt"):
    r = json.loads(line)
    if r["method"] == method:
        for s in r["steps"]:
            if s["proposed"] == BLOCK and s["verified"] == BLOCK:
                rounds.setdefault(r["dataset"], []).append((s["confidences"], s["accepted"]))


def speed(rs, choose):
    tokens = seconds = 0.0
    for c, a in rs:
        length = choose(c)
        tokens += min(a, length) + 1
        seconds += t[length] + D
    return tokens / seconds * t[0]


def hardware(c):
    return schedule_prefixes([c], profile.steps_per_second, draft_seconds=DC)[0]


def long_run(rate):
    def choose(c):
        length = 0
        for j, a in enumerate(cumulative_survival(c), start=1):
            if a <= rate * (t[j] - t[j - 1]):
                break
            length = j
        return length
    return choose


for dataset, rs in sorted(rounds.items()):
    out = {f"fixed:{k}": speed(rs, lambda c, k=k: k) for k in range(BLOCK + 1)}
    out["hardware"] = speed(rs, hardware)
    rate = out["hardware"] / t[0]
    for _ in range(20):
        rate = speed(rs, long_run(rate)) / t[0]
    out["long-run rate"] = rate * t[0]
    out["oracle"] = sum(a + 1 for _, a in rs) / sum(t[a] + D for _, a in rs) * t[0]
    told = f", scheduler told {DC * 1000:.1f} ms" if len(sys.argv) > 5 else ""
    print(dataset, f"{len(rs)} rounds, D = {D * 1000:.1f} ms{told}:", ", ".join(f"{k} {v:.3f}x" for k, v in out.items()))
