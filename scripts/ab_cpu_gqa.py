"""A/B of the CPU grouped-query SDPA path (dspark_hf.integration.cpu_gqa_attention) on the bundled target:
forwards of B new rows over a cached context, with dspark_hf's wrapper and with transformers' own "sdpa"
function, interleaved (one forward of each per repeat, order alternating), medians and their ratio, and
whether the logits are bit-identical.

    OMP_NUM_THREADS=1 python scripts/ab_cpu_gqa.py --rows 1,2,3,4,8 --context 256 --repeats 15
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import torch
import transformers
import transformers.integrations.sdpa_attention as sdpa_module
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

import dspark_hf  # noqa: F401  (installs the wrapper)
from dspark_hf.loading import load_target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1,2,3,4,8")
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    target, _ = load_target(None)
    target = target.to(getattr(torch, args.dtype)).eval()
    wrapper = ALL_ATTENTION_FUNCTIONS["sdpa"]
    mapping = ALL_ATTENTION_FUNCTIONS._global_mapping
    ways = {"transformers": sdpa_module.sdpa_attention_forward, "dspark_hf": wrapper}
    generator = torch.Generator().manual_seed(0)
    context = torch.randint(100, 40000, (1, args.context), generator=generator)
    print(f"{platform.processor() or platform.machine()}, {args.threads} threads, {args.dtype}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}; context {args.context}, median of {args.repeats} interleaved forwards")
    print(f"{'rows':>5} {'transformers ms':>16} {'dspark_hf ms':>13} {'ratio':>6}  bit-identical")
    try:
        with torch.no_grad():
            prefix = target(context, use_cache=True).past_key_values
            for rows in [int(r) for r in args.rows.split(",")]:
                new = torch.randint(100, 40000, (1, rows), generator=generator)
                times = {name: [] for name in ways}
                logits = {}
                for repeat in range(args.repeats + 1):
                    order = list(ways) if repeat % 2 == 0 else list(reversed(ways))
                    for name in order:
                        mapping["sdpa"] = ways[name]
                        cache = copy.deepcopy(prefix)
                        start = time.perf_counter()
                        out = target(new, past_key_values=cache, use_cache=True).logits
                        if repeat:  # the first round warms up
                            times[name].append(time.perf_counter() - start)
                        logits[name] = out
                t0, t1 = (1000 * statistics.median(times[n]) for n in ways)
                same = torch.equal(logits["transformers"], logits["dspark_hf"])
                print(f"{rows:>5} {t0:>16.1f} {t1:>13.1f} {t1 / t0:>6.2f}  {'yes' if same else 'NO'}", flush=True)
    finally:
        mapping["sdpa"] = wrapper


if __name__ == "__main__":
    main()
