"""Run w (issue 14): the bundled target's float32 forward of n new rows over a 256-token cache with every linear
layer (and the LM head) forced to one kernel: F.linear, weight-major ((W @ x.T).T, dspark_hf's
linear_kernels.weight_major_linear) or input-major (x @ W.T with W.T stored contiguous: a kernel measured here and
not shipped, see docs/benchmarks.md run w). Interleaved, medians of 10 after 2 warm-ups; threads from argv.

    OMP_NUM_THREADS=1 .venv/bin/python docs/measurements/2026-12-07b/forward_kernels.py 1
"""
import statistics, sys, types, torch
import torch.nn.functional as F
import dspark_hf  # noqa
from dspark_hf.loading import load_target_with_precision
from dspark_hf.integration.linear_kernels import weight_major_linear
from dspark_hf.verification.scheduling.profiler import PrefilledSequence
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
target, tok, precision = load_target_with_precision(None, "float32")
rows = (1, 2, 3, 4, 6, 8)
seq = PrefilledSequence(target, rows, context_length=256, seed=0)
kernel = ["F.linear"]
def forward(self, x):
    if kernel[0] == "weight-major":
        return weight_major_linear(x, self.weight, self.bias)
    if kernel[0] == "input-major":
        out = x @ self._wt
        return out if self.bias is None else out + self.bias
    return F.linear(x, self.weight, self.bias)
for m in target.modules():
    if isinstance(m, torch.nn.Linear):
        m._wt = m.weight.detach().t().contiguous()
        m.forward = types.MethodType(forward, m)
names = ("F.linear", "weight-major", "input-major")
res = {}
with torch.no_grad():
    for rep in range(12):
        for n in rows:
            for name in (names if rep % 2 else tuple(reversed(names))):
                kernel[0] = name
                t = seq.timed(n)
                if rep >= 2:
                    res.setdefault((name, n), []).append(t)
for n in rows:
    print(torch.get_num_threads(), "threads", n, "rows:", "  ".join(f"{k} {1000 * statistics.median(res[(k, n)]):.1f}" for k in names), "ms")
