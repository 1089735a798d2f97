"""Replay the whole-block rounds of a `dspark bench` run under other verification lengths (run s, issue 14).

Every slot of a whole-block round was verified, so the tokens any shorter choice would have delivered are known
(min(accepted, L) + 1). Each round is costed with a cost profile's target forward of L + 1 tokens (its lower
envelope from the right, as the scheduler reads it) plus D seconds of drafting and loop work, and the sums give
the speed against plain steps (the profile's one-token forward). Policies: every fixed length, the batch-1
hardware-aware rule (stop at the first slot that lowers the round's tokens per second), the rule that maximises
tokens minus r x seconds at the long-run rate r (found by iteration), and an oracle that knows each round's
accepted length.

    python docs/measurements/2026-12-06e/replay_policies.py RUNS.jsonl.gz 'dspark[draft]:whole' PROFILE.json [D]
e.g. run r's bench (docs/measurements/2026-12-06d/bench_ab/runs.jsonl.gz) with run r's bf16 row-by-row profile.
"""
import gzip
import json
import sys

import numpy as np

runs, method, profile_path = sys.argv[1:4]
D = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0068
prof = json.load(open(profile_path))
t = [float(np.interp(b, prof["tokens"], prof["target_seconds"])) for b in range(1, 9)]
for i in range(len(t) - 2, 0, -1):
    t[i] = min(t[i], t[i + 1])
rounds = {}
for line in gzip.open(runs, "rt"):
    r = json.loads(line)
    if r["method"] == method:
        for s in r["steps"]:
            if s["proposed"] == 7 and s["verified"] == 7:
                rounds.setdefault(r["dataset"], []).append((np.array(s["confidences"]), s["accepted"]))


def speed(rs, choose):
    tokens = seconds = 0.0
    for c, a in rs:
        length = choose(c)
        tokens += min(a, length) + 1
        seconds += t[length] + D
    return tokens / seconds * t[0]


def per_round_rate(c):  # Algorithm 1 at batch 1
    survival, best, length, tau = np.cumprod(c), 1 / (t[0] + D), 0, 1.0
    for j in range(7):
        tau += survival[j]
        if tau / (t[j + 1] + D) > best:
            best, length = tau / (t[j + 1] + D), j + 1
        else:
            break
    return length


def long_run(rate):
    def choose(c):
        survival, length = np.cumprod(c), 0
        for j in range(7):
            if survival[j] > rate * (t[j + 1] - t[j]):
                length = j + 1
            else:
                break
        return length
    return choose


for dataset, rs in sorted(rounds.items()):
    out = {f"fixed:{k}": speed(rs, lambda c, k=k: k) for k in range(8)}
    out["hardware"] = speed(rs, per_round_rate)
    rate = out["hardware"] / t[0]
    for _ in range(20):
        rate = speed(rs, long_run(rate)) / t[0]
    out["long-run rate"] = rate * t[0]
    out["oracle"] = sum(a + 1 for _, a in rs) / sum(t[a] + D for _, a in rs) * t[0]
    print(dataset, f"{len(rs)} rounds, D = {D * 1000:.1f} ms:", ", ".join(f"{k} {v:.3f}x" for k, v in out.items()))
