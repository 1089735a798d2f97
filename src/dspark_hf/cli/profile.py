"""``dspark profile``: measure the target's cost curve (forwards per second against tokens per forward)
and the draft's cost per round on this machine, and store it where the hardware-aware policy finds it.

``--packed`` measures the packed multi-request forward of batched DSpark instead (one curve per number
of requests; the hardware-aware policy of ``generate_batch`` / continuous batching schedules on it).

The profile is keyed by model, device (GPU name, or CPU model and thread count) and dtype; run it with
the same ``--threads``, ``--device`` and ``--dtype`` you generate with.
"""

from __future__ import annotations

import argparse


def _tokens(text: str) -> list[int]:
    from dspark_hf.cli.int_ranges import parse_int_ranges

    values = parse_int_ranges(text)  # a ValueError becomes argparse's one-line "invalid _tokens value"
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected tokens-per-forward values >= 1 such as 1-8,12,16; got {text!r}")
    return values


def register(subparsers) -> None:
    parser = subparsers.add_parser("profile", help="profile the target's cost per verification forward (for --policy hardware)")
    parser.add_argument("--target", help="target model: local folder or Hub id (default: embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--draft", help='draft whose cost per round is measured: folder, Hub id, "random", or "none" '
                        "(default: the shipped draft for the embedded target, else a random draft of the same shape)")
    parser.add_argument("--tokens", type=_tokens, default=None, help="tokens per forward to measure, e.g. 1-8,10,12,16,24,32 (default)")
    parser.add_argument("--context", type=int, default=256, help="KV-cache length the forwards run on (default 256)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=9, help="timed forwards per value; the median is kept (default 9)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "bfloat16-batched", "float16"],
                        help="as for dspark generate (default auto: the configuration generate picks here; bfloat16 "
                        "times verification forwards row by row, as generate runs them)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (part of the profile's key)")
    parser.add_argument("--output", help="write the JSON here instead of the profile store")
    parser.add_argument("--packed", action="store_true", help="measure the packed multi-request forward of batched DSpark "
                        "(continuous batching) instead: one curve per --requests value, B = R + e and R x (1 + e) for e drafted tokens (per step, per request)")
    parser.add_argument("--requests", type=_tokens, default=None, help="with --packed: requests per forward, e.g. 1,2,4,8,16 (default)")
    parser.set_defaults(func=run)


def _load_draft(name, target):
    from dspark_hf.errors import CheckpointError
    from dspark_hf.loading import load_draft

    if name == "none":
        return None
    if name is None:
        try:
            return load_draft(None, target)
        except CheckpointError:
            return load_draft("random", target)
    return load_draft(name, target)


def run(args: argparse.Namespace) -> int:
    import torch

    import dspark_hf  # noqa: F401

    from dspark_hf.cli.validators import check_shared_flags
    from dspark_hf.errors import UnsupportedUsageError
    from dspark_hf.verification.scheduling.cost_profile import save_profile
    from dspark_hf.verification.scheduling.profiler import DEFAULT_TOKENS, profile_target
    from dspark_hf.loading import load_target

    check_shared_flags(args)  # --threads
    if args.repeats < 1 or args.warmup < 0 or args.context < 1:
        raise UnsupportedUsageError("--repeats and --context must be at least 1, --warmup at least 0.")
    if args.threads:
        torch.set_num_threads(args.threads)
    from dspark_hf.integration.verification_forwards import verification_context
    from dspark_hf.loading import load_target_with_precision

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.dtype == "float16":
        dtype, draft_dtype, rows = torch.float16, torch.float16, False
        target, _ = load_target(args.target)
        target = target.to(device=device, dtype=dtype).eval()
    else:
        target, _, precision = load_target_with_precision(args.target, args.dtype, device)
        print(precision.describe())
        dtype, draft_dtype, rows = precision.target_dtype, precision.draft_dtype, precision.single_step_rows
    draft = _load_draft(args.draft, target)
    if draft is not None:
        draft = draft.to(device=device, dtype=draft_dtype).eval()
    if args.packed:
        return _run_packed(args, target, device, dtype)
    tokens = args.tokens or list(DEFAULT_TOKENS)
    print(f"profiling on {device} ({str(dtype).removeprefix('torch.')}, {torch.get_num_threads()} threads): B = {tokens}, "
          f"context {args.context}, {args.warmup} warm-up + {args.repeats} timed forwards each")
    with verification_context(target, rows=rows):  # as generation verifies (row by row, or weight-major float32 linears)
        profile = profile_target(target, draft, tokens=tokens, context_length=args.context, warmup=args.warmup, repeats=args.repeats)
    print("   B   ms/forward   forwards/s   tokens/s if all accepted")
    for b, s in zip(profile.tokens, profile.target_seconds):
        print(f"{b:4d}   {1000 * s:10.2f}   {1 / s:10.1f}   {b / s:10.1f}")
    if draft is not None:
        print(f"draft: {1000 * profile.draft_seconds:.2f} ms per drafting round (block {draft.config.block_size})")
    if profile.verification in ("weight-major", "weight-major-compiled"):
        from dspark_hf.integration.weight_major import stored_weight_major_rows

        found = stored_weight_major_rows(target)
        if found is not None:
            print(found.describe())
    path = save_profile(profile, args.output)
    print(f"stored {profile.key} at {path}")
    return 0


def _run_packed(args: argparse.Namespace, target, device, dtype) -> int:
    """``--packed``: the packed forward's curves (:mod:`dspark_hf.batching.packed_profile`)."""
    import torch

    from dspark_hf.batching.packed_profile import DEFAULT_EXTRA, DEFAULT_REQUESTS, profile_packed, save_packed_profile

    requests = args.requests or list(DEFAULT_REQUESTS)
    extra = sorted({max(0, t - 1) for t in args.tokens}) if args.tokens else list(DEFAULT_EXTRA)
    print(f"profiling packed forwards on {device} ({str(dtype).removeprefix('torch.')}, {torch.get_num_threads()} threads): "
          f"R = {requests}, B = R + e and R x (1 + e) for e in {extra}, context {args.context} per request, {args.warmup} warm-up + {args.repeats} timed each")
    profile = profile_packed(target, requests, extra, context_length=args.context, warmup=args.warmup, repeats=args.repeats)
    print("   R      B   ms/forward   tokens/s if all accepted")
    for r, curve in sorted(profile.curves.items()):
        for b, s in zip(curve.tokens, curve.target_seconds):
            print(f"{r:4d}   {b:4d}   {1000 * s:10.2f}   {b / s:10.1f}")
    path = save_packed_profile(profile, args.output)
    print(f"stored {profile.key} at {path}")
    return 0
