"""Cost of one prompt-lookup search (ngram_continuation, up to 7 tokens, n-gram sizes 4..1) on random ids of a
sequence length (worst case: few matches, every size scanned). Usage: OMP_NUM_THREADS=1 .venv/bin/python lookup_cost.py"""
import time
import torch
torch.set_num_threads(1)
from dspark_hf.drafting.ngram_lookup import ngram_continuation
for length in (100, 400, 1600):
    ids = torch.randint(0, 49152, (length,), generator=torch.Generator().manual_seed(0))
    for _ in range(50):
        ngram_continuation(ids, 7)
    t = time.perf_counter()
    for _ in range(1000):
        ngram_continuation(ids, 7)
    print(f"{length} tokens: {(time.perf_counter() - t) * 1e6 / 1000:.1f} microseconds per search")
