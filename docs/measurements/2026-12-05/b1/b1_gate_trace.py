"""Batch-1 ``generate(assistant_model=draft)`` on the 18 load-bench prompts (40-45 of mt-bench, gsm8k, humaneval),
fixed:1 and the hardware-aware policy interleaved per prompt, 128 new tokens, greedy, one thread: per prompt the
tokens/s of each, and for hardware-aware its share of plain rounds, its drafting and plain steps' median ms and
tokens per drafting round, and the kept batch-1 gate afterwards. Run from the repository root:
    OMP_NUM_THREADS=1 .venv/bin/python docs/measurements/2026-12-05/b1/b1_gate_trace.py [PASSES]"""
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import GenerationConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "scripts"))
from engine_workload import load_workload  # noqa: E402

from dspark_hf.verification.scheduling.drafting_gate import kept_gates  # noqa: E402

passes = int(sys.argv[1]) if len(sys.argv) > 1 else 1
target, draft, prompts = load_workload(18)
totals = {"plain": [0, 0.0], "fixed:1": [0, 0.0], "hardware": [0, 0.0]}
for p in range(passes):
    for i, prompt in enumerate(prompts):
        ids = torch.tensor([prompt])
        line = f"pass {p} prompt {i:2d}"
        for method in ("plain", "fixed:1", "hardware"):
            config = GenerationConfig(max_new_tokens=128, do_sample=False, eos_token_id=target.generation_config.eos_token_id,
                                      pad_token_id=0, dspark_policy=None if method == "plain" else method)
            kw = {} if method == "plain" else {"assistant_model": draft}
            t0 = time.perf_counter()
            out = target.generate(ids, generation_config=config, attention_mask=torch.ones_like(ids), **kw)
            wall = time.perf_counter() - t0
            new = out.shape[1] - ids.shape[1]
            totals[method][0] += new
            totals[method][1] += wall
            line += f" | {method} {new / wall:5.1f}"
            if method == "hardware":
                steps = [s for s in draft.last_telemetry.steps if s.step_seconds > 0]
                drafted = [s for s in steps if s.proposed > 0]
                plain = [s for s in steps if s.proposed == 0]
                line += (f" plain {len(plain)}/{len(steps)} draft_ms {statistics.median([1e3 * s.step_seconds for s in drafted]) if drafted else 0:.0f}"
                         f" plain_ms {statistics.median([1e3 * s.step_seconds for s in plain]) if plain else 0:.0f}"
                         f" tok/round {statistics.mean([s.emitted for s in drafted]) if drafted else 0:.2f}")
                for key, g in kept_gates(draft).items():
                    if key[0] == "batch-1":
                        line += (f" | gate d{g.drafting_rounds} p{g.plain_rounds} tok {g.draft_tokens:.2f}+{g.tokens_allowance():.2f}"
                                 f" draft_ms {1e3 * g.draft_seconds:.0f} plain_ms {1e3 * g.plain_seconds:.0f} explore {g.explore_every} probe {g.probe_every}")
        print(line, flush=True)
print("aggregate tokens/s: " + ", ".join(f"{m} {n / s:.2f}" for m, (n, s) in totals.items()))
print(f"hardware / fixed:1 {totals['hardware'][0] / totals['hardware'][1] / (totals['fixed:1'][0] / totals['fixed:1'][1]):.3f}")
