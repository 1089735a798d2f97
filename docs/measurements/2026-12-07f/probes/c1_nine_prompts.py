"""Engine at one request vs the batch-1 path, hardware policy, 9 prompts (start 40, 3 per set), 64 tokens, interleaved."""
import sys, time, torch, statistics as st, copy
torch.set_num_threads(1)
from transformers import GenerationConfig
from dspark_hf.loading import load_target, load_draft
from dspark_hf.benchmarks.concurrency import serve, batch_one_row
from dspark_hf.benchmarks.prompt_sets import encode_prompts, load_prompt_set
from conftest import EVAL_DATASETS_DIR
policy = sys.argv[1] if len(sys.argv) > 1 else "hardware"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 3
target, tok = load_target(None)
draft = load_draft("src/dspark_hf/bundled/default_draft", target, dtype=torch.bfloat16)
prompts = []
for name in ("mt-bench", "gsm8k", "humaneval"):
    _, texts = load_prompt_set(name, n, EVAL_DATASETS_DIR, start=40)
    prompts += [ids[0].tolist() for ids in encode_prompts(tok, texts)]
cfg = GenerationConfig(max_new_tokens=64, do_sample=False, dspark_policy=policy)
batch_one_row(target, draft, [prompts[0]], copy.deepcopy(cfg), policy); serve(target, [prompts[0]], copy.deepcopy(cfg), draft)
tot = {"b1": [0, 0.0], "eng": [0, 0.0]}
for i, p in enumerate(prompts):
    order = ["b1", "eng"] if i % 2 == 0 else ["eng", "b1"]
    res = {}
    for m in order:
        if m == "b1":
            row, outs1 = batch_one_row(target, draft, [p], copy.deepcopy(cfg), policy); out = outs1[0]
            res[m] = (row["wall_seconds"], out, row["tau"], row["lookup_rounds"])
        else:
            outs, arr, wall = serve(target, [p], copy.deepcopy(cfg), draft)
            res[m] = (wall, list(outs[0].generated_tokens), None, None)
        tot[m][0] += len(res[m][1]); tot[m][1] += res[m][0]
    print(i, "b1 %.2fs tau %.2f lookups %s | eng %.2fs | same %s" % (res["b1"][0], res["b1"][2], res["b1"][3], res["eng"][0], res["b1"][1] == res["eng"][1]), flush=True)
b1 = tot["b1"][0] / tot["b1"][1]; eng = tot["eng"][0] / tot["eng"][1]
print(f"policy {policy}: batch-1 {b1:.2f} tok/s, engine {eng:.2f} tok/s, engine/batch-1 {eng / b1:.3f}")
