"""Batch-1 A/B of one-row weight-major steps (run l, 2026-12-05): the same prompts through plain `generate` and
through DSpark with POLICY twice, one-token steps of the call F.linear ("nopad": the weight-major rows measured
here minus 1) and weight-major padded ("pad": with 1), interleaved per prompt, each arm with its own copy of the
shipped draft (the drafting gates are kept on the draft), and the rounds of each arm: plain (gate-skipped) and
drafting, their mean seconds and tokens. Usage, from the repository root:
    OMP_NUM_THREADS=1 .venv/bin/python docs/measurements/2026-12-05c/ab_one_row_batch1.py hardware N START
(N prompts per set from index START)."""
import sys, time, statistics
import torch
torch.set_num_threads(1)
from transformers import GenerationConfig
import dspark_hf
from dspark_hf.loading import load_draft, load_target_with_precision
from dspark_hf.benchmarks.prompt_sets import load_prompt_set, encode_prompts
from dspark_hf.integration import weight_major
target, tok, precision = load_target_with_precision(None, "auto")
print(precision.describe())
drafts = {a: load_draft("src/dspark_hf/bundled/default_draft", target, dtype=precision.draft_dtype, draft_vocab=None, token_counts=None) for a in ("pad", "nopad")}
found = weight_major.weight_major_rows_for(target); print(found.describe())
key = weight_major._key(target)
policy = sys.argv[1]; n = int(sys.argv[2]); start = int(sys.argv[3]) if len(sys.argv) > 3 else 20
sets = {s: encode_prompts(tok, load_prompt_set(s, n, start=start)[1]) for s in ["mt-bench", "gsm8k", "humaneval"]}
gen = dict(max_new_tokens=128, do_sample=False, **precision.generation_options())
with_one = frozenset(found.rows) | {1}; without = frozenset(found.rows) - {1}
def one(x, arm):
    m = torch.ones_like(x)
    if arm == "plain":
        cfg = GenerationConfig(**gen); kw = {}
    else:
        weight_major._MEMORY[key] = with_one if arm == "pad" else without
        cfg = GenerationConfig(dspark_policy=policy, **gen); kw = {"assistant_model": drafts[arm]}
    t = time.perf_counter(); out = target.generate(x, attention_mask=m, generation_config=cfg, **kw)
    sec = time.perf_counter() - t
    if arm != "plain":
        st = drafts[arm].last_telemetry.steps
        plain = [s for s in st if s.proposed == 0]; dr = [s for s in st if s.proposed > 0]
        stats.setdefault(arm, []).append((len(plain), len(dr), sum(s.step_seconds for s in plain), sum(s.step_seconds for s in dr), sum(s.emitted for s in dr)))
    return out, sec
stats = {}
res = {}
for s, xs in sets.items():
    for i, x in enumerate(xs):
        outs = {}
        for arm in (["plain", "nopad", "pad"] if i % 2 == 0 else ["pad", "nopad", "plain"]):
            out, sec = one(x, arm); outs[arm] = out
            res.setdefault((s, arm), [0, 0.0]); res[(s, arm)][0] += out.shape[1] - x.shape[1]; res[(s, arm)][1] += sec
        print(s, i, {a: torch.equal(outs[a], outs["plain"]) for a in outs}, flush=True)
for s in sets:
    p = res[(s, "plain")][0] / res[(s, "plain")][1]
    print(s, "plain %.2f" % p, " ".join("%s %.3fx" % (a, res[(s, a)][0] / res[(s, a)][1] / p) for a in ["nopad", "pad"]))

for a, v in stats.items():
    P = sum(x[0] for x in v); D = sum(x[1] for x in v)
    print(a, "plain rounds", P, "ms each %.1f" % (1000 * sum(x[2] for x in v) / max(P, 1)), "drafting rounds", D, "ms each %.1f" % (1000 * sum(x[3] for x in v) / max(D, 1)), "tokens each %.3f" % (sum(x[4] for x in v) / max(D, 1)))
