"""Batch-1 A/B of verification policies (run m: the drafting gate; run n: lookup rounds): plain generate vs DSpark
arms (policy specs given), interleaved per prompt, each arm with its own draft copy; per arm the plain (skipped), drafting and lookup rounds: count, mean ms, tokens per round.
Usage: OMP_NUM_THREADS=1 .venv/bin/python ab_lookup_b1.py N START SETS ARM1 ARM2 ..."""
import sys, time
import torch
torch.set_num_threads(1)
from transformers import GenerationConfig
import dspark_hf
from dspark_hf.loading import load_draft, load_target_with_precision
from dspark_hf.benchmarks.prompt_sets import load_prompt_set, encode_prompts
target, tok, precision = load_target_with_precision(None, "auto")
print(precision.describe())
n = int(sys.argv[1]); start = int(sys.argv[2]); set_names = sys.argv[3].split(","); arms = sys.argv[4:]
drafts = {a: load_draft("src/dspark_hf/bundled/default_draft", target, dtype=precision.draft_dtype, draft_vocab=None, token_counts=None) for a in arms}
sets = {s: encode_prompts(tok, load_prompt_set(s, n, start=start)[1]) for s in set_names}
gen = dict(max_new_tokens=128, do_sample=False, **precision.generation_options())
stats, res = {}, {}
def one(x, arm):
    m = torch.ones_like(x)
    if arm == "plain":
        cfg = GenerationConfig(**gen); kw = {}
    else:
        cfg = GenerationConfig(dspark_policy=arm, **gen); kw = {"assistant_model": drafts[arm]}
    t = time.perf_counter(); out = target.generate(x, attention_mask=m, generation_config=cfg, **kw); sec = time.perf_counter() - t
    if arm != "plain":
        st = drafts[arm].last_telemetry.steps
        plain = [s for s in st if s.proposed == 0]; dr = [s for s in st if s.proposed > 0 and s.source != "lookup"]
        lk = [s for s in st if s.source == "lookup"]
        stats.setdefault(arm, []).append((len(plain), len(dr), sum(s.step_seconds for s in plain), sum(s.step_seconds for s in dr), sum(s.emitted for s in dr),
                                          len(lk), sum(s.step_seconds for s in lk), sum(s.emitted for s in lk)))
    return out, sec
order = ["plain"] + arms
for s, xs in sets.items():
    for i, x in enumerate(xs):
        outs = {}
        for arm in (order if i % 2 == 0 else order[::-1]):
            out, sec = one(x, arm); outs[arm] = out
            r = res.setdefault((s, arm), [0, 0.0]); r[0] += out.shape[1] - x.shape[1]; r[1] += sec
        print(s, i, all(torch.equal(outs[a], outs["plain"]) for a in outs), flush=True)
for s in sets:
    p = res[(s, "plain")][0] / res[(s, "plain")][1]
    print(s, "plain %.2f tok/s" % p, " ".join("%s %.3fx" % (a, res[(s, a)][0] / res[(s, a)][1] / p) for a in arms))
for a, v in stats.items():
    P = sum(x[0] for x in v); D = sum(x[1] for x in v)
    print(a, "plain rounds", P, "ms each %.1f" % (1000 * sum(x[2] for x in v) / max(P, 1)), "drafting rounds", D,
          "ms each %.1f" % (1000 * sum(x[3] for x in v) / max(D, 1)), "tokens each %.3f" % (sum(x[4] for x in v) / max(D, 1)),
          "lookup rounds", sum(x[5] for x in v), "ms each %.1f" % (1000 * sum(x[6] for x in v) / max(sum(x[5] for x in v), 1)),
          "tokens each %.3f" % (sum(x[7] for x in v) / max(sum(x[5] for x in v), 1)))
