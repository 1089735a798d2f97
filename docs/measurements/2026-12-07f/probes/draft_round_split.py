import time, torch, statistics as st
torch.set_num_threads(1)
from dspark_hf.loading import load_target, load_draft
from dspark_hf.drafting.round import DraftContext
from dspark_hf.drafting.block import draw_block
target, tok = load_target(None)
draft = load_draft("src/dspark_hf/bundled/default_draft", target, dtype=torch.bfloat16)
cfg = draft.config
F = len(cfg.target_layer_ids) * cfg.target_hidden_size
ctx = DraftContext(draft)
n = 300
prefix = torch.randint(100, 40000, (1, n))
feats = torch.randn(1, n - 1, F)
from dspark_hf.drafting.round import draft_round
draft_round(draft, ctx, feats, prefix)
tb, td = [], []
for i in range(60):
    c = ctx.copy()
    start = prefix.shape[1] - 1
    positions = torch.arange(start, start + cfg.block_size)[None]
    block_ids = torch.full((1, cfg.block_size), cfg.mask_token_id, dtype=torch.long); block_ids[0, 0] = prefix[0, -1]
    p2 = torch.cat([prefix, torch.tensor([[5]])], 1)
    f1 = torch.randn(1, 1, F)
    positions = torch.arange(start, start + 1 + cfg.block_size)[None]
    block_ids[0,0] = 5
    t0 = time.perf_counter()
    with torch.no_grad():
        out = draft(input_ids=block_ids, context_features=f1, position_ids=positions, past_key_values=c.cache)
    t1 = time.perf_counter()
    b = draw_block(draft, out.last_hidden_state, out.logits, p2, None, False)
    t2 = time.perf_counter()
    tb.append(t1 - t0); td.append(t2 - t1)
print("backbone ms", round(1000 * st.median(tb), 2), "draw ms", round(1000 * st.median(td), 2))
import torch.profiler as tp
c = ctx.copy()
with tp.profile(activities=[tp.ProfilerActivity.CPU]) as prof:
    for i in range(10):
        c = ctx.copy()
        with torch.no_grad():
            out = draft(input_ids=block_ids, context_features=f1, position_ids=positions, past_key_values=c.cache)
        b = draw_block(draft, out.last_hidden_state, out.logits, p2, None, False)
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
