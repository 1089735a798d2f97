"""Per-shape: F.linear / weight-major / input-major (x @ W^T stored contiguous) at n rows, bf16 and f32, with
bit-exactness of each against one-row F.linear on the order-revealing probes."""
import torch, time, statistics, sys
import torch.nn.functional as F
from dspark_hf.integration import linear_rows
from dspark_hf.integration.linear_kernels import weight_major_linear
torch.set_num_threads(1)
shapes = {"q/o": (576,576), "k/v": (192,576), "gate/up": (1536,576), "down": (576,1536), "head": (49152,576)}
for dt in (torch.bfloat16, torch.float32):
    for name, (o,i) in shapes.items():
        w = torch.randn(o,i).to(dt); wt = w.t().contiguous()
        pw, x = linear_rows._probe_inputs(w, 0)
        pwt = pw.t().contiguous()
        single = torch.cat([F.linear(x[:, r:r+1].contiguous(), pw) for r in range(16)], dim=1)
        ex_im = [m for m in range(1,17) if torch.equal(x[:, :m].contiguous() @ pwt, single[:, :m])]
        ex_wm = [m for m in range(1,17) if torch.equal(weight_major_linear(x[:, :m].contiguous(), pw, None), single[:, :m])]
        ex_fl = [m for m in range(1,17) if torch.equal(F.linear(x[:, :m].contiguous(), pw), single[:, :m])]
        res = {}
        reps = 3 if name == "head" else 20
        for n in (1,2,4,8):
            xx = torch.randn(1,n,i).to(dt)
            for k, f in (("fl", lambda: F.linear(xx, w)), ("wm", lambda: weight_major_linear(xx, w, None)), ("im", lambda: xx @ wt)):
                ts=[]
                for _ in range(reps):
                    t0=time.perf_counter(); f(); ts.append(time.perf_counter()-t0)
                res[(k,n)] = statistics.median(ts)*1e6
        print(str(dt)[6:], name, "exact fl", ex_fl[:3], len(ex_fl), "wm", len(ex_wm), "im", ex_im[:4], len(ex_im), " | ",
              "  ".join(f"n{n}: " + "/".join(f"{res[(k,n)]:.0f}" for k in ("fl","wm","im")) for n in (1,2,4,8)), "us (fl/wm/im)")
