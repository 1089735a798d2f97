"""Does a drafting round's outcome follow from the previous round's? Read from run z's goal bench (the shipped draft,
whole block verified every round, 60 prompts, 128 new tokens): docs/measurements/2026-12-07e/bench_goal/runs.jsonl.gz.
Run from the repository root with any Python 3."""
import collections
import gzip
import json

rows = [json.loads(line) for line in gzip.open("docs/measurements/2026-12-07e/bench_goal/runs.jsonl.gz", "rt")]
slot1 = collections.defaultdict(list)
expected = collections.defaultdict(list)
for r in rows:
    if r["method"] != "dspark[default_draft]:whole":
        continue
    prev = None
    for s in r["steps"]:
        if s["source"] != "draft":
            continue
        if prev is not None:
            slot1[min(int(prev["confidences"][0] * 5), 4)].append(s["accepted"] >= 1)
            survival, gain = 1.0, 0.0
            for c in prev["confidences"]:
                survival *= c
                gain += survival
            expected[min(int(gain * 2), 5)].append(s["accepted"])
        prev = s
print("previous block's slot-1 confidence (bucket start) -> rounds, P(this round accepts >= 1)")
for k in sorted(slot1):
    print(f"  {k / 5:.1f}  {len(slot1[k]):5d}  {sum(slot1[k]) / len(slot1[k]):.3f}")
print("previous block's expected accepted tokens (sum of survival, bucket start) -> rounds, mean accepted this round")
for k in sorted(expected):
    print(f"  {k / 2:.1f}  {len(expected[k]):5d}  {sum(expected[k]) / len(expected[k]):.3f}")
