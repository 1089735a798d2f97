"""Offline simulation of lookup + plain rounds (no drafting) with the real LookupRounds policy, on saved plain outputs
(`lookup_tune_outputs.jsonl`, written by `lookup_tune_outputs.py`: the bundled target's bf16 answers to 36
non-benchmark prompts). Cost model: a bf16 row-by-row cost profile (default: `profile_auto_rows.json`, run q's).
Prints modelled tokens/s over plain per guess rule and prompt kind.
Usage: .venv/bin/python docs/measurements/2026-12-06c/lookup_rule_sim.py docs/measurements/2026-12-06c/lookup_tune_outputs.jsonl [PROFILE]"""
import json, sys, collections, torch
from dspark_hf.verification.scheduling.lookup_rounds import LookupRounds
from dspark_hf.drafting.ngram_lookup import ngram_continuation
prof = json.load(open(sys.argv[2] if len(sys.argv) > 2 else 'docs/measurements/2026-12-06c/profile_auto_rows.json'))
toks, secs = prof['tokens'], prof['target_seconds']
def seconds_for(n):
    import bisect
    i = bisect.bisect_left(toks, n)
    if i < len(toks) and toks[i] == n: return secs[i]
    if i >= len(toks): return secs[-1]
    a, b = toks[i-1], toks[i]; return secs[i-1] + (secs[i]-secs[i-1])*(n-a)/(b-a)
K = 7
def s_current(ids):
    g, n = ngram_continuation(ids, K); return g.tolist(), n
def make_maxn(maxn, bucket_cap=None):
    def f(ids):
        g, n = ngram_continuation(ids, K, max_ngram=maxn); return g.tolist(), (min(n, bucket_cap) if bucket_cap else n)
    return f
def s_vote(maxn=4):
    def f(ids):
        L = ids.shape[0]; lst = ids.tolist()
        for n in range(min(maxn, L-1), 0, -1):
            w = ids[:L-1].unfold(0, n, 1); hits = (w == ids[L-n:]).all(-1).nonzero().flatten().tolist()
            if hits:
                starts = [h + n for h in hits]
                out = []
                cands = starts
                for k in range(K):
                    c = collections.Counter(lst[s+k] for s in cands if s + k < L)
                    if not c: break
                    # ties -> most recent
                    best = max(c.items(), key=lambda kv: (kv[1], max(s for s in cands if s+k < L and lst[s+k]==kv[0])))[0]
                    out.append(best); cands = [s for s in cands if s+k < L and lst[s+k]==best]
                return out, n
        return [], 0
    return f
strategies = {'current(max4)': s_current, 'max8': make_maxn(8), 'max16cap8': make_maxn(16, 8), 'vote4': s_vote(4), 'vote8': s_vote(8)}
recs = [json.loads(l) for l in open(sys.argv[1])]
res = collections.defaultdict(lambda: [0, 0.0, 0, 0, 0])
for name, strat in strategies.items():
    for r in recs:
        ids = torch.tensor(r['ids']); t = r['prompt_len']; end = len(r['ids'])
        pol = LookupRounds(K); time_s = 0.0; tokens = 0; lr = la = 0
        plain_rate = 1.0 / seconds_for(1)
        while t < end:
            g, n = strat(ids[:t])
            avail = min(len(g), end - t - 1)  # the last token of the reference is the end
            length = pol.length(n, avail, seconds_for, plain_rate) if avail > 0 and n > 0 else 0
            if length:
                truth = r['ids'][t:t+length]; a = 0
                while a < length and g[a] == truth[a]: a += 1
                pol.observe(n, length, a); time_s += seconds_for(length + 1); step = a + 1; lr += 1; la += a
            else:
                time_s += seconds_for(1); step = 1
            step = min(step, end - t); tokens += step; t += step
        for key in (r['kind'], 'all'):
            e = res[(name, key)]; e[0] += tokens; e[1] += time_s; e[2] += lr; e[3] += la; e[4] += 1
for (name, kind), (tok_, s, lr, la, n) in sorted(res.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    print(f"{kind:9s} {name:15s} speed/plain {tok_/s*seconds_for(1):.3f}  lookup rounds {lr:5d} accepted/round {la/max(lr,1):.2f}")
