"""C=1 step anatomy: engine vs batch-1, hardware, the load bench's first 8 prompts."""
import sys, torch, collections, statistics as st
torch.set_num_threads(1)
from transformers import GenerationConfig
from dspark_hf.loading import load_target, load_draft
from dspark_hf.benchmarks.concurrency import serve
from dspark_hf.benchmarks.prompt_sets import encode_prompts, load_prompt_set
from conftest import EVAL_DATASETS_DIR
target, tok = load_target(None)
draft = load_draft("src/dspark_hf/bundled/default_draft", target, dtype=torch.bfloat16)
prompts = []
for name in ("mt-bench", "gsm8k"):
    _, texts = load_prompt_set(name, 6, EVAL_DATASETS_DIR, start=40)
    prompts += [ids[0].tolist() for ids in encode_prompts(tok, texts)]
prompts = prompts[:8]
def cfg(): return GenerationConfig(max_new_tokens=64, do_sample=False, eos_token_id=target.generation_config.eos_token_id, pad_token_id=0, dspark_policy="hardware")
def summarize(name, recs):
    by = collections.defaultdict(list)
    for kind, verified, emitted, secs in recs: by[kind].append((verified, emitted, secs))
    tot_e = sum(e for k in by for _, e, _ in by[k]); tot_s = sum(s for k in by for _, _, s in by[k])
    print(name, "tokens/s over steps", round(tot_e / tot_s, 2))
    for k, v in sorted(by.items()):
        print("   ", k, "n", len(v), "mean verified", round(st.mean(x[0] for x in v), 2), "mean emitted", round(st.mean(x[1] for x in v), 2),
              "median ms", round(1000 * st.median(x[2] for x in v), 1), "ms/token", round(1000 * sum(x[2] for x in v) / sum(x[1] for x in v), 1))
for rep in range(2):
    recs = []
    for p in prompts:
        ids = torch.tensor([p])
        target.generate(ids, assistant_model=draft, generation_config=cfg(), attention_mask=torch.ones_like(ids))
        recs += [(s.source, s.verified, s.emitted, s.step_seconds) for s in draft.last_telemetry.steps]
    summarize(f"{rep} batch-1", recs)
    print("   batch-1 sum of steps", round(sum(x[3] for x in recs), 2))
    outs, arr, wall = serve(target, prompts, cfg(), draft, in_flight=1)
    t = draft.last_batch_telemetry
    recs = []
    pre = 0.0
    for step in t.steps:
        if step.prefill_tokens:
            pre += step.step_seconds; print("      prefill step", step.step, step.prefill_tokens, step.decoding, round(step.step_seconds, 3), round(step.draft_seconds, 3)); continue
        if not step.rounds:
            recs.append(("plain(no round)", 0, step.decoding, step.step_seconds)); continue
        (r,) = step.rounds.values()
        recs.append((r.source, r.verified, r.emitted, step.step_seconds))
    summarize(f"{rep} engine", recs)
    print("   engine wall", round(wall, 2), "sum of steps", round(sum(x[3] for x in recs) + pre, 2), "prefill steps", round(pre, 2), "tokens", sum(len(o.generated_tokens) for o in outs))
