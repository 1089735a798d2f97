"""Split of one batch-1 drafting round of the shipped draft (bf16) on this CPU: the block forward, the sequential
draw, the confidence head; torch.profiler top ops. One thread."""
import time, statistics, torch
torch.set_num_threads(1)
import dspark_hf
from dspark_hf.loading import load_draft, load_target_with_precision
from dspark_hf.drafting.round import DraftContext, draft_round
from dspark_hf.drafting import block as block_mod
target, tok, precision = load_target_with_precision(None, "auto")
draft = load_draft("src/dspark_hf/bundled/default_draft", target, dtype=precision.draft_dtype, draft_vocab=None, token_counts=None)
if draft.config.embeddings_from_target and not draft._bound_target:
    draft.bind_target_embeddings(target)
cfg = draft.config
width = len(cfg.target_layer_ids) * cfg.target_hidden_size
g = torch.Generator().manual_seed(0)
L = 256
prefix = torch.randint(0, 1000, (1, L + 3), generator=g)
ctx0 = DraftContext(draft)
draft_round(draft, ctx0, torch.randn(1, L, width, generator=g).to(draft.dtype), prefix[:, : L + 1])
feats = torch.randn(1, 2, width, generator=g).to(draft.dtype)
def once():
    c = ctx0.copy(); t = time.perf_counter(); draft_round(draft, c, feats, prefix); return time.perf_counter() - t
for _ in range(5): once()
print("round ms median", 1000 * statistics.median([once() for _ in range(30)]))
orig = block_mod._draw_rows
draw_t = []
def timed_draw(*a, **k):
    t = time.perf_counter(); r = orig(*a, **k); draw_t.append(time.perf_counter() - t); return r
block_mod._draw_rows = timed_draw
tot = [once() for _ in range(30)]
print("draw ms median", 1000 * statistics.median(draw_t), "of round", 1000 * statistics.median(tot))
block_mod._draw_rows = orig
from torch.profiler import profile, ProfilerActivity
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(20): once()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
