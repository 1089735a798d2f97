"""Run s's policy replay (docs/measurements/2026-12-06e/replay_policies.py) with the scheduler told one drafting cost
and every round costed with another (run t, issue 14): does the cost profile's back-to-back drafting round (5.4 ms),
lower than what a round costs inside generation (8.3-8.5 ms, `drafting_cost_section.log`), change the lengths the
hardware-aware policy picks?

    python docs/measurements/2026-12-06f/replay_draft_cost.py RUNS.jsonl.gz 'dspark[draft]:whole' PROFILE.json D DC
D: the seconds each round is costed with; DC: the seconds the scheduler is told (`schedule_prefixes(draft_seconds=DC)`).
Run t ran it on run r's records and profile with D = 0.0085 and DC = 0.0054, then DC = 0.0085.
"""
import gzip
import json
import sys

from dspark_hf.verification.scheduling.cost_profile import load_profile
from dspark_hf.verification.scheduling.prefix_scheduler import cumulative_survival, schedule_prefixes, step_seconds_curve

runs, method, profile_path = sys.argv[1:4]
D = float(sys.argv[4])
DC = float(sys.argv[5])
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
    print(dataset, f"{len(rs)} rounds, D = {D * 1000:.1f} ms, scheduler told {DC * 1000:.1f} ms:", ", ".join(f"{k} {v:.3f}x" for k, v in out.items()))
