"""The speculative batch engine's own cost on plain steps: plain continuous batching against the speculative
engine with its drafting choice replaced by "never draft" (every step a plain step, with the engine's
feature capture, per-request bookkeeping and acceptance code still running), three interleaved passes
(order alternating), the same C prompts (mt-bench, gsm8k, humaneval from index 40), greedy, float32 target.

    OMP_NUM_THREADS=1 python scripts/engine_never_drafts.py C MAX_NEW_TOKENS   # e.g. 8 128
"""

from __future__ import annotations

import sys

from dspark_hf.batching.processor import SpeculativeBatchProcessor
from engine_workload import PLAIN, load_workload, serve_once

NEVER = "spec-never-drafts"


def never_draft(self, decoding, fresh) -> list:
    """``_choose_drafting`` that drafts for no request (the step is plain when every decoding request is fresh)."""
    self._skipped = bool(fresh) and len(fresh) == len(decoding)
    return []


def main() -> None:
    concurrency, max_new_tokens = int(sys.argv[1]), int(sys.argv[2])
    SpeculativeBatchProcessor._choose_drafting = never_draft
    target, draft, prompts = load_workload(concurrency)
    results = {PLAIN: [], NEVER: []}
    for p in range(3):
        for method in ([PLAIN, NEVER] if p % 2 == 0 else [NEVER, PLAIN]):
            metrics, _ = serve_once(target, draft, prompts, PLAIN if method == PLAIN else "fixed:1", max_new_tokens)
            results[method].append(metrics["aggregate_tokens_per_second"])
            print(p, method, f"{results[method][-1]:.1f}", flush=True)
    print({k: [round(x, 1) for x in v] for k, v in results.items()})


if __name__ == "__main__":
    main()
