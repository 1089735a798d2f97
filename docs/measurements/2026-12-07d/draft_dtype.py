"""A drafting round of the shipped draft in bf16 and in float32 (float32 target), alternated six times, one thread.
Run from the repository root."""
import statistics, sys, time
import torch
torch.set_num_threads(1)
from dspark_hf.loading import load_target, load_draft
from dspark_hf.verification.scheduling.profiler import measure_draft
target, _ = load_target(None)
drafts = {d: load_draft("src/dspark_hf/bundled/default_draft", target, dtype=d) for d in (torch.bfloat16, torch.float32)}
times = {d: [] for d in drafts}
for i in range(6):
    for d in (list(drafts) if i % 2 == 0 else list(drafts)[::-1]):
        times[d].append(measure_draft(drafts[d], target, context_length=256, warmup=2, repeats=9))
for d, t in times.items():
    print(d, "median of medians %.2f ms" % (1000 * statistics.median(t)), " ".join("%.1f" % (1000 * x) for x in t))
