"""Where a batch-1 DSpark call's time goes beyond its rounds: wall time, sum of round seconds, and plain generate's
wall on the same prompt; prefill alone timed as a 1-new-token generate. One thread."""
import time, torch, statistics
torch.set_num_threads(1)
from transformers import GenerationConfig
import dspark_hf
from dspark_hf.loading import load_draft, load_target_with_precision
from dspark_hf.benchmarks.prompt_sets import load_prompt_set, encode_prompts
target, tok, precision = load_target_with_precision(None, "auto")
draft = load_draft("src/dspark_hf/bundled/default_draft", target, dtype=precision.draft_dtype, draft_vocab=None, token_counts=None)
gen = dict(do_sample=False, **precision.generation_options())
xs = encode_prompts(tok, load_prompt_set("mt-bench", 3, start=40)[1]) + encode_prompts(tok, load_prompt_set("gsm8k", 3, start=40)[1])
def run(x, n, dspark):
    cfg = GenerationConfig(max_new_tokens=n, dspark_policy="hardware" if dspark else None, **gen)
    kw = {"assistant_model": draft} if dspark else {}
    t = time.perf_counter(); out = target.generate(x, attention_mask=torch.ones_like(x), generation_config=cfg, **kw); return time.perf_counter() - t, out
for x in xs:
    run(x, 2, True)
    p1, _ = run(x, 1, False)
    w, out = run(x, 128, True)
    st = draft.last_telemetry.steps
    rounds = sum(s.step_seconds for s in st)
    pw, pout = run(x, 128, False)
    print(f"prompt {x.shape[1]:4d} tok: prefill(1 tok generate) {1000*p1:6.0f} ms | dspark wall {1000*w:6.0f} rounds {1000*rounds:6.0f} ({len(st)} rounds) rest {1000*(w-rounds):5.0f} | plain wall {1000*pw:6.0f} -> per token after prefill {1000*(pw-p1)/127:.1f} ms | same {torch.equal(out, pout)}", flush=True)
