"""Batched EAGLE-3 chains against one chain per request, the drafting work of one continuous-batching step:
an EAGLE-3 draft shaped for the bundled SmolLM2 target (random weights: only cost matters here), R requests
with ragged cached contexts (256 + 8 r rows) each bringing 3 new verified feature rows, ``ttt_length`` 7.
Both paths interleaved, medians of the timed repeats, one torch thread; tokens compared.

    OMP_NUM_THREADS=1 python scripts/ab_eagle3_chains.py [--dtype bfloat16] [--requests 1,2,4,8] [--repeats 7]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--requests", default="1,2,4,8")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)

    import dspark_hf  # noqa: F401
    from dspark_hf.batching.batched_eagle3 import eagle3_chains
    from dspark_hf.drafting.eagle3_round import Eagle3Context, eagle3_round
    from dspark_hf.loading import load_target
    from dspark_hf.models.eagle3 import Eagle3Draft
    from dspark_hf.models.eagle3.config_for_target import eagle3_config_for_target

    dtype = getattr(torch, args.dtype)
    target, _ = load_target(None)
    torch.manual_seed(0)
    draft = Eagle3Draft(eagle3_config_for_target(target.config)).to(dtype).eval()
    width = len(draft.config.target_layer_ids) * draft.config.target_hidden_size
    vocab = target.config.vocab_size
    print(f"EAGLE-3 draft (random weights) for the bundled SmolLM2-135M-Instruct, {args.dtype}, 1 thread, ttt_length {draft.config.ttt_length}, "
          f"{args.repeats} timed repeats (medians), both paths interleaved")
    print("   R   one chain per request ms   batched chains ms   ratio   same tokens")
    gen = torch.Generator().manual_seed(1)
    for r in [int(x) for x in args.requests.split(",")]:
        prefixes, contexts = [], []
        for i in range(r):
            n = 256 + 8 * i
            prefix = torch.randint(0, vocab, (1, n), generator=gen)
            context = Eagle3Context(draft)
            eagle3_round(draft, context, torch.randn(1, n - 1, width, generator=gen).to(dtype), prefix)
            prefixes.append(torch.cat([prefix, torch.randint(0, vocab, (1, 3), generator=gen)], dim=1))
            contexts.append(context)
        features = [torch.randn(1, 3, width, generator=gen).to(dtype) for _ in range(r)]
        times = {"loop": [], "batched": []}
        same = True
        for rep in range(args.repeats + 1):
            for kind in ("loop", "batched"):
                work = copy.deepcopy(contexts)
                start = time.perf_counter()
                if kind == "loop":
                    blocks = [eagle3_round(draft, c, f, p) for c, f, p in zip(work, features, prefixes)]
                else:
                    blocks = eagle3_chains(draft, work, features, prefixes)
                seconds = time.perf_counter() - start
                if rep:
                    times[kind].append(seconds)
                if kind == "loop":
                    reference = [b.tokens for b in blocks]
                else:
                    same = same and all(torch.equal(a, b.tokens) for a, b in zip(reference, blocks))
        loop, batched = (1000 * statistics.median(times[k]) for k in ("loop", "batched"))
        print(f"{r:4d}   {loop:24.1f}   {batched:17.1f}   {batched / loop:5.2f}   {same}")


if __name__ == "__main__":
    main()
