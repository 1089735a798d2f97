import sys, statistics, torch, json
import dspark_hf
from transformers import GenerationConfig
from dspark_hf.benchmarks.concurrency import serve, run_metrics
from dspark_hf.verification.scheduling.drafting_gate import kept_gates
from load_setup import load
C = int(sys.argv[1]); method = sys.argv[2]; passes = int(sys.argv[3]) if len(sys.argv) > 3 else 2
target, draft, prompts = load()
chosen = [prompts[i % len(prompts)] for i in range(C)]
for p in range(passes):
  for m in ["plain", method]:
    steps = []
    cfg = GenerationConfig(max_new_tokens=int(sys.argv[4]) if len(sys.argv) > 4 else 64, do_sample=False, eos_token_id=target.generation_config.eos_token_id, pad_token_id=0,
                           dspark_policy=None if m == "plain" else m)
    out, arr, wall = serve(target, chosen, cfg, draft=None if m == "plain" else draft)
    r = run_metrics(out, arr, wall)
    print(f"pass {p} {m}: {r['aggregate_tokens_per_second']:.1f} tok/s", flush=True)
    if m != "plain":
        st = draft.last_batch_telemetry.steps
        for s in st:
            print(f"  step {s.step:3d} bt {s.batch_tokens:3d} pre {s.prefill_tokens:3d} dec {s.decoding} drafted {s.drafted_requests} skip {int(s.drafting_skipped)} "
                  f"ms {1000*s.step_seconds:6.1f} draftms {1000*s.draft_seconds:5.1f} acc {s.accepted}")
        for k, g in sorted(kept_gates(draft).items(), key=lambda kv: str(kv[0])):
            print("  gate", k[:2], f"rounds d{g.drafting_rounds} p{g.plain_rounds} ratio {g.drafting_ratio()} plain_ms {1000*g.plain_seconds:.1f} "
                  f"draft tok {g.draft_tokens:.2f} s {g.draft_seconds*1000:.1f}ms explore {g.explore_every} probe {g.probe_every}")
