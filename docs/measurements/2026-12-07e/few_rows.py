"""The bundled SmolLM2-135M's 211 linear layers and LM head in model order, float32, one thread: F.linear, the
weight-major product and the compiled few-row kernel at 1-16 input rows (best of 5 passes each, interleaved per row
count). What src/dspark_hf/integration/few_row_kernel.py's docstring quotes. Run from the repository root."""
import time
import torch
import torch.nn.functional as F
torch.set_num_threads(1)
from dspark_hf.loading import load_target
from dspark_hf.integration.few_row_kernel import few_row_linear, kernel_unavailable
from dspark_hf.integration.linear_kernels import weight_major_linear
target, _ = load_target(None)
print("compiled kernel:", kernel_unavailable() or "built", "| torch", torch.__version__, "| threads", torch.get_num_threads())
layers = [m for m in target.modules() if isinstance(m, torch.nn.Linear)]
kernels = {"F.linear": F.linear, "weight-major": weight_major_linear, "compiled": few_row_linear}
print("rows  " + "  ".join(f"{k:>12}" for k in kernels) + "   (ms for all", len(layers), "layers)")
with torch.no_grad():
    for rows in (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16):
        inputs = {w: torch.randn(1, rows, w) for w in {m.in_features for m in layers}}
        best = {k: float("inf") for k in kernels}
        for _ in range(5):
            for name, kernel in kernels.items():
                start = time.perf_counter()
                for m in layers:
                    kernel(inputs[m.in_features], m.weight, m.bias)
                best[name] = min(best[name], time.perf_counter() - start)
        print(f"{rows:4d}  " + "  ".join(f"{1000 * best[k]:12.1f}" for k in kernels), flush=True)
