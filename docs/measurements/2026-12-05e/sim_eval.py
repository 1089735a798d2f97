"""Offline policy simulation on sim_collect.py's records: tokens/s ratios to plain with the stored cost profile's costs
(~/.cache/dspark_hf/profiles, the float32 weight-major one of this CPU). Usage: python sim_eval.py RECORDS.pt ..."""
import sys, json, torch, collections
recs = []
for p in sys.argv[1:]:
    recs += torch.load(p)
prof = json.load(open('/root/.cache/dspark_hf/profiles/smollm2-135m-instruct-f32-llama-L30-H576__cpu--AMD-EPYC-1threads__float32__wm.json'))
T = dict(zip(prof['tokens'], prof['target_seconds']))
def t(B):  # cheapest measured forward of B or more
    return min(v for k, v in T.items() if k >= B)
PLAIN = 1 / 17.03  # plain generate per token (goal run, run l)
DRAFT = 0.0085; OVH = 0.001; LOOK = 0.0003

def lookup(seq, k, nmax=3, nmin=1, recent=True):
    L = len(seq)
    for n in range(nmax, nmin - 1, -1):
        if L < n + 1: continue
        suf = seq[-n:]
        rng = range(L - n - 1, -1, -1) if recent else range(0, L - n)
        for j in rng:
            if seq[j:j + n] == suf:
                c = seq[j + n:j + n + k]
                if c: return c, n
    return [], 0

def common(a, ids, m):
    x = 0
    while x < len(a) and m + x < len(ids) and a[x] == ids[m + x]: x += 1
    return x

def run(policy):
    per = collections.defaultdict(lambda: [0, 0.0]); stats = collections.Counter()
    for r in recs:
        ids, P = r['ids'], r['P']; end = len(ids); m = P; sec = 0.0
        while m < end:
            cand, cost, kind = policy(r, m)
            cand = cand[:end - m - 1] if end - m - 1 >= 0 else []
            a = common(cand, ids, m)
            sec += cost(len(cand)); m += a + 1; stats[kind] += 1; stats[kind + '_tok'] += a + 1
        per[r['set']][0] += end - P; per[r['set']][1] += sec
    return per, stats

def plain_pol(r, m):
    return [], lambda L: PLAIN, 'plain'
def fixed(L):
    def pol(r, m):
        return r['blocks'][m - r['P']][:L], lambda n: t(n + 1) + DRAFT + OVH, 'draft'
    return pol
def lookup_only(k, nmin=1, nmax=3, recent=True):
    def pol(r, m):
        c, n = lookup(r['ids'][:m], k, nmax, nmin, recent)
        return c, lambda L: t(L + 1) + LOOK + OVH, 'look%d' % n if c else 'plain1'
    return pol
def hybrid(k, nmin, L=1, nmax=3):
    def pol(r, m):
        c, n = lookup(r['ids'][:m], k, nmax, nmin)
        if c: return c, lambda x: t(x + 1) + LOOK + OVH, 'look'
        return r['blocks'][m - r['P']][:L], lambda x: t(x + 1) + DRAFT + OVH, 'draft'
    return pol
def extend(k, nmin, L=1, nmax=3):
    """draft L, then extend by lookup continuation of k tokens on context + drafted tokens"""
    def pol(r, m):
        b = r['blocks'][m - r['P']][:L]
        c, n = lookup(r['ids'][:m] + b, k, nmax, nmin)
        return b + c, lambda x: t(x + 1) + DRAFT + LOOK + OVH, 'drext' if c else 'draft'
    return pol
def agree(k, nmin, nmax=3):
    """draft; if lookup's first token equals draft slot 1, verify lookup k tokens; else draft 1"""
    def pol(r, m):
        b = r['blocks'][m - r['P']]
        c, n = lookup(r['ids'][:m], k, nmax, nmin)
        if c and c[0] == b[0]: return c, lambda x: t(x + 1) + DRAFT + LOOK + OVH, 'agree'
        return b[:1], lambda x: t(x + 1) + DRAFT + OVH, 'draft'
    return pol

pols = {'fixed1': fixed(1), 'fixed2': fixed(2), 'fixed3': fixed(3), 'whole': fixed(7)}
for k in (1, 3, 10):
    for nmin in (1, 2, 3):
        pols[f'look k{k} n>={nmin}'] = lookup_only(k, nmin)
pols['look k10 n2 first(transformers)'] = lookup_only(10, 1, 2, recent=False)
for k in (1, 2, 3):
    for nmin in (1, 2, 3):
        pols[f'hybrid k{k} n>={nmin}'] = hybrid(k, nmin)
for k in (1, 2):
    for nmin in (2, 3):
        pols[f'extend k{k} n>={nmin}'] = extend(k, nmin)
for k in (2, 3):
    pols[f'agree k{k} n>=1'] = agree(k, 1)
base, _ = run(plain_pol)
for name, pol in pols.items():
    per, st = run(pol)
    ratios = {s: (per[s][0] / per[s][1]) / (base[s][0] / base[s][1]) for s in per}
    allr = sum(v[0] for v in per.values()) / sum(v[1] for v in per.values()) / (sum(v[0] for v in base.values()) / sum(v[1] for v in base.values()))
    kinds = {k: (st[k], round(st[k + '_tok'] / st[k], 2)) for k in st if not k.endswith('_tok')}
    print(f"{name:32s}", " ".join(f"{s} {v:.3f}" for s, v in ratios.items()), f"all {allr:.3f}", kinds)

def adaptive(kmax=7, nmax=4, prior=(1.0, 2.0), decay=0.98):
    """online: per n-gram size, per slot conditional acceptance (discounted counts); lookup length by expected
    tokens/s on the cost curve; lookup when its expected tokens/s >= drafting's measured tokens/s"""
    state = {}
    def pol(r, m):
        if m == r['P']:
            state.clear(); state['draft'] = [1.36, 1]  # tokens per drafting round, count
            state['cur'] = None
        # learn from the previous round
        ids = r['ids']
        prev = state.get('cur')
        if prev is not None:
            kind, n, cand, m0 = prev
            if kind == 'look':
                a = common(cand, ids, m0)
                st = state.setdefault(n, [[prior[0], prior[1]] for _ in range(kmax)])
                for j in range(min(len(cand), a + 1)):
                    acc = 1.0 if j < a else 0.0
                    st[j][0] = decay * st[j][0] + acc; st[j][1] = decay * st[j][1] + 1
            else:
                a = common(cand, ids, m0)
                d = state['draft']; d[0] = 0.9 * d[0] + 0.1 * (a + 1)
        c, n = lookup(ids[:m], kmax, nmax, 1)
        draft_rate = state['draft'][0] / (t(2) + DRAFT + OVH)
        best = (0.0, 0)
        if c:
            st = state.setdefault(n, [[prior[0], prior[1]] for _ in range(kmax)])
            surv, exp = 1.0, 1.0
            for j in range(len(c)):
                surv *= st[j][0] / st[j][1]; exp += surv
                rate = exp / (t(j + 2) + LOOK + OVH)
                if rate > best[0]: best = (rate, j + 1)
        if c and best[0] >= draft_rate:
            cand = c[:best[1]]; state['cur'] = ('look', n, cand, m)
            return cand, lambda x: t(x + 1) + LOOK + OVH, 'look'
        cand = r['blocks'][m - r['P']][:1]; state['cur'] = ('draft', 0, cand, m)
        return cand, lambda x: t(x + 1) + DRAFT + OVH, 'draft'
    return pol
for kw in [dict(), dict(kmax=3), dict(nmax=3), dict(prior=(1.0, 4.0)), dict(decay=1.0), dict(decay=0.95)]:
    per, st = run(adaptive(**kw))
    ratios = {s: (per[s][0] / per[s][1]) / (base[s][0] / base[s][1]) for s in per}
    allr = sum(v[0] for v in per.values()) / sum(v[1] for v in per.values()) / (sum(v[0] for v in base.values()) / sum(v[1] for v in base.values()))
    kinds = {k: (st[k], round(st[k + '_tok'] / st[k], 2)) for k in st if not k.endswith('_tok')}
    print(f"adaptive {kw}", " ".join(f"{s} {v:.3f}" for s, v in ratios.items()), f"all {allr:.3f}", kinds)
