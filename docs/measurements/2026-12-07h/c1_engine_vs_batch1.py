"""Issue 15, one request: the engine (one request at a time) against the batch-1 path, the same prompts, 64 new
tokens, greedy, alternating which path runs first per prompt. Run from the repository root:
    OMP_NUM_THREADS=1 PYTHONPATH=tests .venv/bin/python docs/measurements/2026-12-07h/c1_engine_vs_batch1.py hardware 6
(policy, prompts per set from index 40 of mt-bench, gsm8k, humaneval; a third argument ``separate`` gives the engine
its own copy of the draft, so that the two paths do not share the gate and estimates kept on the draft). Prints per prompt each path's seconds, tau
(counting plain steps as rounds of one token, as the batch-1 telemetry does) and its drafting / lookup / plain rounds, whether the outputs are equal, then the aggregate tokens/s of each and their ratio."""
import copy
import sys

import torch

torch.set_num_threads(1)
from transformers import GenerationConfig

from conftest import EVAL_DATASETS_DIR
from dspark_hf.benchmarks.concurrency import batch_one_row, serve
from dspark_hf.benchmarks.prompt_sets import encode_prompts, load_prompt_set
from dspark_hf.loading import load_draft, load_target

policy = sys.argv[1] if len(sys.argv) > 1 else "hardware"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 3
separate = len(sys.argv) > 3 and sys.argv[3] == "separate"  # each path its own draft object: no gate shared between them
target, tok = load_target(None)
draft = load_draft("src/dspark_hf/bundled/default_draft", target, dtype=torch.bfloat16)
engine_draft = load_draft("src/dspark_hf/bundled/default_draft", target, dtype=torch.bfloat16) if separate else draft
prompts = []
for name in ("mt-bench", "gsm8k", "humaneval"):
    _, texts = load_prompt_set(name, n, EVAL_DATASETS_DIR, start=40)
    prompts += [ids[0].tolist() for ids in encode_prompts(tok, texts)]
cfg = GenerationConfig(max_new_tokens=64, do_sample=False, dspark_policy=policy)
batch_one_row(target, draft, [prompts[0]], copy.deepcopy(cfg), policy)  # warm-up of both paths (untimed)
serve(target, [prompts[0]], copy.deepcopy(cfg), engine_draft)
tot = {"b1": [0, 0.0], "eng": [0, 0.0]}
for i, p in enumerate(prompts):
    order = ["b1", "eng"] if i % 2 == 0 else ["eng", "b1"]
    res = {}
    for m in order:
        if m == "b1":
            row, outs = batch_one_row(target, draft, [p], copy.deepcopy(cfg), policy)
            t = draft.last_telemetry
            res[m] = (row["wall_seconds"], list(outs[0]), row["tau"], row["lookup_rounds"],
                      len(t.steps) - t.skipped_rounds - t.lookup_rounds, t.skipped_rounds)
        else:
            outs, _, wall = serve(target, [p], copy.deepcopy(cfg), engine_draft)
            tel = engine_draft.last_batch_telemetry
            rounds = [r for t in tel.requests.values() for r in t.steps]
            plain = sum(s.plain_tokens for s in tel.steps)  # one request: a plain step is one token
            tau = (sum(r.emitted for r in rounds) + plain) / (len(rounds) + plain) if rounds or plain else 0.0
            res[m] = (wall, list(outs[0].generated_tokens), tau, tel.lookup_rounds,
                      sum(1 for r in rounds if r.source == "draft"), plain)
        tot[m][0] += len(res[m][1])
        tot[m][1] += res[m][0]
    same = res["b1"][1][: len(res["eng"][1])] == res["eng"][1][: len(res["b1"][1])]
    print(i, "b1 %.2fs tau %.2f drafting/lookup/plain %d/%d/%d | eng %.2fs tau %.2f drafting/lookup/plain %d/%d/%d | same %s" % (
        res["b1"][0], res["b1"][2], res["b1"][4], res["b1"][3], res["b1"][5],
        res["eng"][0], res["eng"][2], res["eng"][4], res["eng"][3], res["eng"][5], same), flush=True)
b1 = tot["b1"][0] / tot["b1"][1]
eng = tot["eng"][0] / tot["eng"][1]
print(f"policy {policy}{' (separate drafts)' if separate else ''}: batch-1 {b1:.2f} tok/s, engine {eng:.2f} tok/s, engine/batch-1 {eng / b1:.3f}")
