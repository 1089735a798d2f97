"""C=1: engine vs batch-1 over the load bench's first 8 prompts, policies hardware and hardware:no-lookup, 2 passes."""
import sys, time, torch, copy, statistics as st
torch.set_num_threads(1)
from transformers import GenerationConfig
from dspark_hf.loading import load_target, load_draft
from dspark_hf.benchmarks.concurrency import serve, batch_one_row, run_metrics
from dspark_hf.benchmarks.prompt_sets import encode_prompts, load_prompt_set
from conftest import EVAL_DATASETS_DIR
target, tok = load_target(None)
draft = load_draft("src/dspark_hf/bundled/default_draft", target, dtype=torch.bfloat16)
prompts = []
for name in ("mt-bench", "gsm8k", "humaneval"):
    _, texts = load_prompt_set(name, 6, EVAL_DATASETS_DIR, start=40)
    prompts += [ids[0].tolist() for ids in encode_prompts(tok, texts)]
prompts = prompts[:8]
policies = sys.argv[1].split(",")
def cfg(p): return GenerationConfig(max_new_tokens=64, do_sample=False, eos_token_id=target.generation_config.eos_token_id, pad_token_id=0, dspark_policy=p)
for rep in range(2):
    for p in policies:
        outs, arr, wall = serve(target, prompts, cfg(p), draft, in_flight=1)
        t = draft.last_batch_telemetry
        m = run_metrics(outs, arr, wall)
        print(rep, "engine ", p, round(m["aggregate_tokens_per_second"], 2), "tau", round(t.tau, 3), "lookups", t.lookup_rounds, flush=True)
        row, _ = batch_one_row(target, draft, prompts, cfg(p), p)
        print(rep, "batch-1", p, round(row["aggregate_tokens_per_second"], 2), "tau", round(row["tau"], 3), "lookups", row["lookup_rounds"], flush=True)
