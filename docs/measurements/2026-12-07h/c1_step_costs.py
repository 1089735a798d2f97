"""Issue 15, one request: what each kind of round costs on the two paths, and what the gate measured, each path
with its own copy of the draft. Run from the repository root:
    OMP_NUM_THREADS=1 PYTHONPATH=tests .venv/bin/python docs/measurements/2026-12-07h/c1_step_costs.py 3
(prompts per set from index 40). Prints per path and kind of round (draft / lookup / plain) the count, mean
verified and emitted tokens, median seconds of the round (batch 1: StepRecord.step_seconds; engine: the step's
seconds, prefill steps left out) and of its drafting, and the gate's smoothed drafting tokens and seconds and
plain seconds at the end."""
import collections
import statistics as st
import sys

import torch

torch.set_num_threads(1)
from transformers import GenerationConfig

from conftest import EVAL_DATASETS_DIR
from dspark_hf.benchmarks.concurrency import serve
from dspark_hf.benchmarks.prompt_sets import encode_prompts, load_prompt_set
from dspark_hf.loading import load_draft, load_target
from dspark_hf.verification.scheduling.drafting_gate import kept_gates

n = int(sys.argv[1]) if len(sys.argv) > 1 else 3
target, tok = load_target(None)
drafts = {m: load_draft("src/dspark_hf/bundled/default_draft", target, dtype=torch.bfloat16) for m in ("b1", "eng")}
prompts = []
for name in ("mt-bench", "gsm8k", "humaneval"):
    _, texts = load_prompt_set(name, n, EVAL_DATASETS_DIR, start=40)
    prompts += [ids[0].tolist() for ids in encode_prompts(tok, texts)]


def cfg():
    return GenerationConfig(max_new_tokens=64, do_sample=False, eos_token_id=target.generation_config.eos_token_id,
                            pad_token_id=0, dspark_policy="hardware")


recs = {"b1": [], "eng": []}
for i, p in enumerate(prompts):
    for m in (["b1", "eng"] if i % 2 == 0 else ["eng", "b1"]):
        draft = drafts[m]
        if m == "b1":
            ids = torch.tensor([p])
            target.generate(ids, assistant_model=draft, generation_config=cfg(), attention_mask=torch.ones_like(ids))
            recs[m] += [(s.source, s.verified, s.emitted, s.step_seconds, s.draft_seconds) for s in draft.last_telemetry.steps]
        else:
            serve(target, [p], cfg(), draft)
            for step in draft.last_batch_telemetry.steps:
                if step.prefill_tokens:
                    continue
                if not step.rounds:
                    recs[m].append(("plain", 0, step.plain_tokens, step.step_seconds, 0.0))
                    continue
                (r,) = step.rounds.values()
                recs[m].append((r.source, r.verified, r.emitted, step.step_seconds, step.draft_seconds))
for m, rows in recs.items():
    by = collections.defaultdict(list)
    for row in rows:
        by[row[0]].append(row[1:])
    print(m, "tokens/s over rounds %.2f" % (sum(r[2] for r in rows) / sum(r[3] for r in rows)))
    for kind, v in sorted(by.items()):
        print("   %-6s n %4d verified %.2f emitted %.2f median ms %.1f drafting ms %.1f ms/token %.1f" % (
            kind, len(v), st.mean(x[0] for x in v), st.mean(x[1] for x in v), 1000 * st.median(x[2] for x in v),
            1000 * st.median(x[3] for x in v), 1000 * sum(x[2] for x in v) / sum(x[1] for x in v)))
    for key, gate in kept_gates(drafts[m]).items():
        if key[0] == "batch-1":
            print("   gate: drafting %.2f tokens in %.1f ms per round, plain %.1f ms per token, %d drafting rounds" % (
                gate.draft_tokens, 1000 * gate.draft_seconds, 1000 * gate.plain_seconds, gate.drafting_rounds))
