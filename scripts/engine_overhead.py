"""Where a continuous-batching run spends its time, plain against the speculative engine: seconds in each
of the batch processor's three per-step methods (prepare_next_batch, _generation_step, update_batch),
summed over a run, for plain continuous batching and DSpark with one policy, two interleaved passes, the
same C prompts (mt-bench, gsm8k, humaneval from index 40), greedy, the shipped draft, float32 target.

    OMP_NUM_THREADS=1 python scripts/engine_overhead.py C POLICY [MAX_NEW_TOKENS]   # e.g. 8 hardware 256

"Spec.prepare_next_batch" includes transformers' own ("Cont.prepare_next_batch", which it calls).
"""

from __future__ import annotations

import collections
import sys
import time

from transformers.generation.continuous_batching.continuous_api import ContinuousBatchProcessor

from dspark_hf.batching.processor import SpeculativeBatchProcessor
from engine_workload import PLAIN, load_workload, serve_once

seconds = collections.defaultdict(float)
calls = collections.defaultdict(int)


def timed(cls, name):
    """Replace ``cls.name`` by a version that adds its seconds and calls to the totals."""
    method = cls.__dict__[name]

    def wrapper(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            seconds[(cls.__name__, name)] += time.perf_counter() - start
            calls[(cls.__name__, name)] += 1

    setattr(cls, name, wrapper)


def main() -> None:
    concurrency, policy = int(sys.argv[1]), sys.argv[2]
    max_new_tokens = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    for cls in (ContinuousBatchProcessor, SpeculativeBatchProcessor):
        for name in ("prepare_next_batch", "_generation_step", "update_batch"):
            if name in cls.__dict__:
                timed(cls, name)
    target, draft, prompts = load_workload(concurrency)
    for p in range(2):
        for method in [PLAIN, policy]:
            seconds.clear()
            calls.clear()
            metrics, wall = serve_once(target, draft, prompts, method, max_new_tokens)
            split = {f"{k[0][:4]}.{k[1]}": f"{v:.2f}s/{calls[k]}" for k, v in seconds.items()}
            print(f"pass {p} {method}: {metrics['aggregate_tokens_per_second']:.1f} tok/s wall {wall:.2f}", split, flush=True)


if __name__ == "__main__":
    main()
