"""Replay dspark bench --concurrency 1,2 (3 passes) and print, after each DSpark run, the step mix and gate states."""
import sys, statistics, collections, torch
import dspark_hf
import dspark_hf.benchmarks.concurrency as BC
from dspark_hf.verification.scheduling.drafting_gate import kept_gates
from load_setup import load
target, draft, prompts = load()
real = BC.serve
def serve(target_, chosen, config, draft=None, **kw):
    out = real(target_, chosen, config, draft=draft, **kw)
    if draft is not None:
        st = draft.last_batch_telemetry.steps
        mix = collections.Counter((s.decoding, s.drafted_requests, int(s.drafting_skipped), s.batch_tokens) for s in st if s.prefill_tokens < 10)
        ms = collections.defaultdict(list)
        for s in st:
            if s.prefill_tokens < 10:
                ms[(s.decoding, s.drafted_requests, int(s.drafting_skipped), s.batch_tokens)].append(1000 * s.step_seconds)
        print(f"  [{config.dspark_policy}] steps {len(st)} wall {out[2]:.2f}s", flush=True)
        for k, n in mix.most_common(8):
            print(f"    dec {k[0]} drafted {k[1]} skipped {k[2]} B {k[3]}: {n} steps, median {statistics.median(ms[k]):.0f} ms", flush=True)
        for key, g in sorted(kept_gates(draft).items(), key=lambda kv: str(kv[0])):
            print("    gate", key[:2], f"d{g.drafting_rounds} p{g.plain_rounds} ratio {g.drafting_ratio()} plain_ms {1000*g.plain_seconds:.1f} "
                  f"draft_tok {g.draft_tokens:.2f} draft_s {g.draft_seconds*1000:.1f}ms probe {g.probe_every} explore {g.explore_every}", flush=True)
    return out
BC.serve = serve
cs = [int(c) for c in sys.argv[1].split(",")]
pol = sys.argv[2].split(",")
BC.bench_concurrency(target, draft, prompts, cs, pol, max_new_tokens=64, repeats=int(sys.argv[3]))
