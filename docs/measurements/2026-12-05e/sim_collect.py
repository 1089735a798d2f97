"""Collect, per prompt: plain greedy output (128 tokens), and at every position n of the answer the draft's block
(tokens, confidences) as a round there would draft it (teacher-forced on the plain output; features from one forward).
Usage: OMP_NUM_THREADS=1 .venv/bin/python sim_collect.py N START SETS OUT.pt"""
import sys, time, torch
torch.set_num_threads(1)
from transformers import GenerationConfig
from dspark_hf.loading import load_draft, load_target_with_precision
from dspark_hf.benchmarks.prompt_sets import load_prompt_set, encode_prompts
from dspark_hf.integration.target_features import TargetFeatureTap
from dspark_hf.drafting.round import DraftContext, draft_round
target, tok, precision = load_target_with_precision(None, "auto")
print(precision.describe())
n = int(sys.argv[1]); start = int(sys.argv[2]); set_names = sys.argv[3].split(","); outp = sys.argv[4]
draft = load_draft("src/dspark_hf/bundled/default_draft", target, dtype=precision.draft_dtype)
if draft.config.embeddings_from_target and not draft._bound_target:
    draft.bind_target_embeddings(target)
tap = TargetFeatureTap(target, draft.config.target_layer_ids)
recs = []
for s in set_names:
    for i, x in enumerate(encode_prompts(tok, load_prompt_set(s, n, start=start)[1])):
        t0 = time.perf_counter()
        with torch.no_grad():
            out = target.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=128, do_sample=False)
            P = x.shape[1]; S = out
            target(S)  # features of every position
            feats = tap.features()
            ctx = DraftContext(draft); blocks = []; confs = []
            for m in range(P, S.shape[1]):
                b = draft_round(draft, ctx, feats[:, ctx.committed:m - 1], S[:, :m])
                blocks.append(b.tokens[0].tolist()); confs.append(b.confidences.reshape(-1).tolist() if b.confidences is not None else None)
        recs.append(dict(set=s, i=i, P=P, ids=S[0].tolist(), blocks=blocks, confs=confs))
        print(s, i, P, S.shape[1] - P, "%.1fs" % (time.perf_counter() - t0), flush=True)
torch.save(recs, outp)
