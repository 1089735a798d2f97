"""Batch-1 drafting gate, round by round: plain, fixed:1 and hardware on the first N mt-bench prompts
(the goal run's prompts), 128 new tokens, greedy, one thread, the bench's auto dtype. Prints each
policy's tokens/s against plain, and for hardware every round (D = drafted, p = plain; verified, tokens,
ms) with the gate's state at the end of each prompt, then the drafting rounds' cost spread.

Run from the repository root: OMP_NUM_THREADS=1 .venv/bin/python docs/measurements/2026-12-04h/traces/gate_trace.py N [SET [START]]"""
import statistics
import sys

import torch

import dspark_hf  # noqa: F401
from dspark_hf.benchmarks.methods import DSpark, Plain
from dspark_hf.benchmarks.prompt_sets import encode_prompts, load_prompt_set
from dspark_hf.benchmarks.runner import generation_config
from dspark_hf.loading import load_draft, load_target_with_precision
from dspark_hf.verification.scheduling.drafting_gate import kept_gates

torch.set_num_threads(1)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
dataset = sys.argv[2] if len(sys.argv) > 2 else "mt-bench"
start = int(sys.argv[3]) if len(sys.argv) > 3 else 0
target, tokenizer, precision = load_target_with_precision(None, "auto", "cpu")
print(precision.describe(), flush=True)
draft = load_draft("src/dspark_hf/bundled/default_draft", target).to(dtype=precision.draft_dtype).eval()
config = generation_config(128)
for key, value in precision.generation_options().items():
    setattr(config, key, value)
_, texts = load_prompt_set(dataset, n, None, start=start)
prompts = encode_prompts(tokenizer, texts)
methods = [Plain(), DSpark(draft, "default", "fixed:1"), DSpark(draft, "default", "hardware")]
with torch.no_grad():
    methods[0].run(target, prompts[0], config)  # warm-up
    totals = {m.id: [0, 0.0] for m in methods}
    draft_ms, catchup_ms = [], []
    for i, ids in enumerate(prompts):
        for m in methods:
            run = m.run(target, ids, config)
            new = run.output.shape[1] - run.prompt_length
            totals[m.id][0] += new
            totals[m.id][1] += run.seconds
            line = f"prompt {start + i} {m.id:32s} {new:4d} tokens {new / run.seconds:6.2f} tok/s"
            if m.id.endswith("hardware"):
                marks, prev_plain = [], False
                for s in run.steps:
                    drafted = s.proposed > 0
                    marks.append(f"{'D' if drafted else 'p'}{s.verified if drafted else ''}:{s.emitted}:{1000 * s.step_seconds:.0f}")
                    if drafted:
                        (catchup_ms if prev_plain else draft_ms).append(1000 * s.step_seconds)
                    prev_plain = not drafted
                print(line, flush=True)
                print("   ", " ".join(marks), flush=True)
                for key, g in kept_gates(draft).items():
                    print(f"    gate d{g.drafting_rounds} p{g.plain_rounds} ratio {g.drafting_ratio()} plain_ms {1000 * g.plain_seconds:.1f} "
                          f"draft_tok {g.draft_tokens:.2f} draft_ms {1000 * g.draft_seconds:.1f}", flush=True)
            else:
                print(line, flush=True)
    plain = totals["plain"][0] / totals["plain"][1]
    for m in methods:
        tok, sec = totals[m.id]
        print(f"{m.id:32s} aggregate {tok / sec:6.2f} tok/s  x{tok / sec / plain:.3f} plain", flush=True)
    for name, xs in (("drafting rounds after a drafting round", draft_ms), ("drafting rounds after a plain step", catchup_ms)):
        if xs:
            xs = sorted(xs)
            print(f"{name}: n {len(xs)} median {statistics.median(xs):.1f} mean {statistics.fmean(xs):.1f} "
                  f"p90 {xs[int(0.9 * (len(xs) - 1))]:.1f} max {xs[-1]:.1f} ms", flush=True)
