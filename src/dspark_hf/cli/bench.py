"""``dspark bench``: acceptance, speed and calibration of DSpark drafts next to baselines, side by side.

Prompt mode (default): a target, one or more drafts (``--draft``, repeatable; ``random`` or a DFlash
draft work too), prompt sets (JSON Lines with a ``turns`` list; first turn, chat template), each draft
under every ``--policies`` spec (whole-block verification always included), prompt lookup decoding,
and with ``--baseline-pair qwen-coder`` transformers' assisted generation on the Qwen2.5-Coder
1.5B / 0.5B pair; every method is measured next to plain ``generate`` in the same process.
``--policies all`` measures every fixed verification length and the adaptive policies, and the
report then compares each adaptive policy with the best fixed length (the policy comparison,
:mod:`dspark_hf.benchmarks.policy_comparison`). ``--start`` skips the first prompts of each set.

Cost mode (``--cost-mode``): a random-weight target of a named shape and a draft forced to accept
exactly ``L`` tokens per round while paying its real cost: speed-up against ``L`` next to the ideal
``L + 1``.

Writes ``bench.json`` (schema in docs/benchmarks.md), ``bench.md`` and PNG plots to ``--out``. Exit
status 3 when a greedy output differed from plain generation (it is flagged in every output).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

DTYPES = ("auto", "float32", "bfloat16", "bfloat16-batched", "float16")
ALL_POLICIES = "all"


def _one_line_error(parser: argparse.ArgumentParser):
    def error(message: str):
        print(f"dspark bench: error: {message} (see dspark bench --help)", file=sys.stderr)
        raise SystemExit(2)

    return error


def _refusing_unknown(parser: argparse.ArgumentParser):
    """``parse_known_args`` that reports unknown flags itself, in one line, instead of passing them up
    to the top-level parser (which would print its usage first)."""
    original = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        namespace, extras = original(args, namespace)
        if extras:
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras

    return parse_known_args


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="measure acceptance, speed and calibration against baselines",
                                   description=__doc__.split("\n\n")[0])
    parser.error = _one_line_error(parser)
    parser.parse_known_args = _refusing_unknown(parser)
    parser.add_argument("--target", help="target model: local folder or Hub id (default: embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--draft", action="append", default=None,
                        help='DSpark, DFlash or EAGLE-3 draft: folder, Hub id or "random"; repeat for several (default: the shipped draft)')
    parser.add_argument("--datasets", default="mt-bench,gsm8k,humaneval",
                        help="comma-separated prompt sets: names in --datasets-dir or paths to .jsonl files")
    parser.add_argument("--datasets-dir", default=None, help="folder of <name>.jsonl (default: $DSPARK_EVAL_DATASETS_DIR or ../shared/eval_datasets)")
    parser.add_argument("--limit", type=int, default=10, help="prompts per set, from --start (default 10)")
    parser.add_argument("--start", type=int, default=0,
                        help="index of the first prompt of each set (default 0; dspark calibrate's held-out split starts at 40)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="new tokens per prompt (default 128; cost mode 64)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy, checked token for token against plain generation (default)")
    parser.add_argument("--policies", default=None, help='comma-separated verification policies, e.g. "whole,threshold:0.5,hardware" '
                        '(whole is always measured); "all": whole, fixed:1..block-1, threshold:0.5, survival:0.5, hardware, online, '
                        'compared with the best fixed length; cost mode default "fixed:L", where L stands for the forced length')
    parser.add_argument("--dflash-policies", default=None,
                        help="policies for drafts without a confidence head (DFlash), same syntax as --policies (whole is always "
                             "measured); default: --policies without threshold:* and survival:*, which would repeat whole")
    parser.add_argument("--baselines", default="prompt-lookup",
                        help='comma-separated extra baselines: "prompt-lookup" (default), "plain-kernels" (plain generate on the '
                             "kernels a DSpark call's one-token steps use: what they give without drafting) or \"none\"")
    parser.add_argument("--prompt-lookup-tokens", type=int, default=10, help="prompt_lookup_num_tokens (default 10)")
    parser.add_argument("--linear-ablation", action="store_true",
                        help="also run every DSpark policy with transformers' F.linear in its verification forwards "
                             "(method id suffix +F.linear), beside the default weight-major kernels where they were measured faster "
                             "(float32; bf16 row-by-row verification where bit-identical too), and for a float32 target "
                             "without the compiled few-row kernel (suffix +no-few-row)")
    parser.add_argument("--baseline-pair", choices=["qwen-coder"], default=None,
                        help="also measure transformers' assisted generation on the Qwen2.5-Coder 1.5B/0.5B pair (installed on first use, ~1.3 GB)")
    parser.add_argument("--baseline-pair-cache", default=None, help="where the pair is installed (default: <dspark cache>/baseline_pair)")
    parser.add_argument("--repeats", type=int, default=None, help="A/B passes per prompt; the median-time pass is kept (default 1; cost mode 3); with --concurrency: "
                        "interleaved passes of every method per concurrency, the median-throughput pass kept (default 1)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up calls per method (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads while measuring (default 1; restored afterwards)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu; cost mode: cuda when available)")
    parser.add_argument("--dtype", default=None, choices=DTYPES,
                        help="prompt mode: auto (default: the fastest configuration that keeps outputs identical here, "
                        "printed), float32, bfloat16 (row-by-row verification attention), bfloat16-batched (opt-in, "
                        "not always identical: the identical column says how often); cost mode: the weights' dtype "
                        "(default float32; on cuda bfloat16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="dspark_bench", help="output folder for bench.json, bench.md and the PNGs (default dspark_bench)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--merge", nargs="+", metavar="DIR", default=None,
                        help="measure nothing: merge the --out folders of runs over disjoint prompt ranges (--start/--limit) "
                             "into one report in --out, as if one run had measured every prompt")
    load = parser.add_argument_group("load (batched DSpark on continuous batching)")
    load.add_argument("--concurrency", default=None, help="requests served together, e.g. 1,2,4,8,16: plain continuous batching "
                      "against DSpark with each of --policies (default fixed:3,threshold:0.5,hardware); see docs/batching.md")
    load.add_argument("--arrival-rate", type=float, default=None, help="with --concurrency: Poisson arrivals at this many requests/s (default: all at once)")
    load.add_argument("--requests", type=int, default=None, help="with --concurrency: requests served per level in a closed loop, C in flight and the "
                      "next added as one finishes (default: C, all at once); at least the largest level makes every level's figures rest on as many requests")
    cost = parser.add_argument_group("cost mode")
    cost.add_argument("--cost-mode", action="store_true", help="measure the loop's overhead with forced acceptance on a random-weight target")
    cost.add_argument("--target-shape", default="tiny", help="tiny, qwen3-0.6b, qwen3-1.7b, qwen3-4b, qwen3-8b, qwen3-14b (default tiny)")
    cost.add_argument("--lengths", default=None, help="forced accepted lengths L, e.g. 0-7 or 0,2,4 (default 0..block size)")
    cost.add_argument("--block-size", type=int, default=7, help="block size of the random draft (default 7)")
    cost.add_argument("--prompt-length", type=int, default=128, help="random prompt length in tokens (default 128)")
    cost.add_argument("--prompts", type=int, default=3, help="random prompts (default 3)")
    cost.add_argument("--profile", action="store_true", help="also run each method once under torch.profiler and write its operator table")
    parser.set_defaults(func=run)


def _int_list(text: str) -> list[int]:
    from dspark_hf.errors import UnsupportedUsageError
    from dspark_hf.cli.int_ranges import parse_int_ranges

    try:
        values = parse_int_ranges(text)
    except ValueError:
        raise UnsupportedUsageError(f"--lengths takes whole numbers such as 0-7 or 0,2,4; got {text!r}.") from None
    if not values or min(values) < 0:
        raise UnsupportedUsageError(f"--lengths takes whole numbers >= 0 such as 0-7; got {text!r}.")
    return values


def _check_common(args) -> None:
    from dspark_hf.cli.validators import check_shared_flags
    from dspark_hf.errors import UnsupportedUsageError

    check_shared_flags(args)  # --threads, --max-new-tokens, --temperature
    for flag, value, least in (("--limit", args.limit, 1), ("--start", args.start, 0), ("--repeats", 1 if args.repeats is None else args.repeats, 1), ("--warmup", args.warmup, 0),
                               ("--prompt-lookup-tokens", args.prompt_lookup_tokens, 1),
                               ("--prompts", args.prompts, 1), ("--prompt-length", args.prompt_length, 1), ("--block-size", args.block_size, 1)):
        if value < least:
            raise UnsupportedUsageError(f"{flag} must be at least {least}, got {value}.")
    if args.requests is not None:
        if not args.concurrency:
            raise UnsupportedUsageError("--requests is for the load benchmark; add --concurrency.")
        if args.arrival_rate is not None:
            raise UnsupportedUsageError("--requests (a closed loop) and --arrival-rate (Poisson arrivals of C requests) do not go together; drop one.")
        if args.requests < 1:
            raise UnsupportedUsageError(f"--requests must be at least 1, got {args.requests}.")
    if args.linear_ablation and (args.cost_mode or args.concurrency):
        raise UnsupportedUsageError("--linear-ablation is for prompt mode (batch-1 generate); drop it with --cost-mode or --concurrency.")
    # Both policy lists before anything loads (--dflash-policies used to be read after the target).
    if args.policies is not None:
        _policies(args.policies, cost=args.cost_mode)
    if args.dflash_policies is not None:
        _policies(args.dflash_policies, cost=args.cost_mode, flag="--dflash-policies")


def _device_and_dtype(args, cost: bool, default: str | None = None):
    import torch

    from dspark_hf.errors import UnsupportedUsageError

    name = args.device or ("cuda" if cost and torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UnsupportedUsageError(f"--device {name!r} is not a device torch knows (cpu, cuda, cuda:1 ...).") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UnsupportedUsageError(f"--device {name} asked for, but torch sees no CUDA device here.")
    if default is not None:
        return device, getattr(torch, default)
    dtype_name = args.dtype or ("bfloat16" if cost and device.type == "cuda" else "float32")
    if dtype_name in ("auto", "bfloat16-batched"):
        raise UnsupportedUsageError(f"--dtype {dtype_name} is for prompt mode; --cost-mode takes float32, bfloat16 or float16.")
    return device, getattr(torch, dtype_name)


def _policies(text: str, cost: bool, flag: str = "--policies") -> list[str]:
    from dspark_hf.cli.validators import policy_list
    from dspark_hf.errors import UnsupportedUsageError

    specs = [s.strip() for s in text.split(",") if s.strip()]
    if not specs:
        raise UnsupportedUsageError(f"{flag} is empty.")
    if cost and ALL_POLICIES in specs:
        raise UnsupportedUsageError(f"{flag} all is for prompt mode; cost mode takes specs such as fixed:L,whole.")
    policy_list(flag, [spec.replace(":L", ":0") if cost else spec for spec in specs], keep=[ALL_POLICIES])
    return specs


def expand_policies(specs: list[str], drafts: dict) -> list[str]:
    """``whole`` first, then ``specs`` with ``all`` replaced by the comparison's list
    (:func:`dspark_hf.benchmarks.policy_comparison.comparison_policies`) for the block size of the first
    DSpark draft (``markov_rank > 0``; the first draft when none is: DFlash and EAGLE-3 drafts, whose block
    is their chain length); duplicates dropped."""
    from dspark_hf.benchmarks.methods import draft_block_size, draft_variant
    from dspark_hf.benchmarks.policy_comparison import comparison_policies

    out = ["whole"]
    for spec in specs:
        if spec == ALL_POLICIES:
            models = list(drafts.values())
            first = next((d for d in models if draft_variant(d) == "dspark"), models[0])
            out += comparison_policies(draft_block_size(first))
        else:
            out.append(spec)
    return list(dict.fromkeys(out))


def _command(argv=None) -> str:
    return "dspark bench " + " ".join(shlex.quote(a) for a in (sys.argv[2:] if argv is None else argv))


def _load_drafts(names: list[str | None], target):
    from dspark_hf.checkpoints.files import check_local_folder, is_local_path
    from dspark_hf.loading import load_draft

    drafts = {}
    for name in names:
        if name not in (None, "random") and is_local_path(name):
            check_local_folder(Path(name).expanduser())
        label = (name if name in (None, "random") else Path(name).name if is_local_path(name) else name) or "default"
        unique, n = label, 1
        while unique in drafts:  # the same draft named twice still gets its own rows
            n += 1
            unique = f"{label}#{n}"
        drafts[unique] = load_draft(name, target)
    return drafts


def run_prompt_mode(args) -> dict:
    import torch

    import dspark_hf  # noqa: F401

    from dspark_hf.benchmarks.prompt_sets import load_prompt_set
    from dspark_hf.benchmarks.runner import bench_prompts
    from dspark_hf.cli.validators import check_draft_folder
    from dspark_hf.errors import UnsupportedUsageError

    specs = _policies(args.policies or "whole", cost=False)
    baselines = {b.strip() for b in args.baselines.split(",") if b.strip()}
    if not baselines <= {"prompt-lookup", "plain-kernels", "none"}:
        raise UnsupportedUsageError(f"--baselines takes prompt-lookup, plain-kernels or none; got {args.baselines!r}.")
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    if not names:
        raise UnsupportedUsageError("--datasets is empty.")
    prompt_sets = dict(load_prompt_set(n, args.limit, args.datasets_dir, start=args.start) for n in names)
    for name in args.draft or []:
        check_draft_folder(name)  # folder and config.json values, before the target loads
    from dspark_hf.loading import load_target_with_precision

    if args.dtype == "float16":
        raise UnsupportedUsageError("--dtype float16 is for --cost-mode; prompt mode takes auto, float32, bfloat16 or bfloat16-batched.")
    device, _ = _device_and_dtype(args, cost=False, default="float32")
    from dspark_hf.benchmarks.settings import preserved_settings

    with preserved_settings(threads=args.threads):  # auto times the target with the benchmark's thread count
        target, tokenizer, precision = load_target_with_precision(args.target, args.dtype or "auto", device)
    print(precision.describe(), file=sys.stderr)
    dtype = precision.target_dtype
    drafts = {k: v.to(device=device, dtype=precision.draft_dtype) for k, v in _load_drafts(args.draft or [None], target).items()}
    policies = expand_policies(specs, drafts)
    dflash_policies = None
    if args.dflash_policies is not None:
        dflash_policies = expand_policies(_policies(args.dflash_policies, cost=False), drafts)
    pair = None
    if args.baseline_pair:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from dspark_hf.benchmarks.baseline_pair import PAIRS, install_pair

        pair_target_dir, assistant_dir = install_pair(args.baseline_pair, args.baseline_pair_cache, log=lambda m: print(m, file=sys.stderr))
        pair_target = AutoModelForCausalLM.from_pretrained(pair_target_dir, dtype=dtype).to(device).eval()
        assistant = AutoModelForCausalLM.from_pretrained(assistant_dir, dtype=dtype).to(device).eval()
        pair = (pair_target, AutoTokenizer.from_pretrained(pair_target_dir), assistant, PAIRS[args.baseline_pair][1].name)
    with torch.no_grad():
        return bench_prompts(
            target, tokenizer, drafts, prompt_sets, policies=policies, dflash_policies=dflash_policies, max_new_tokens=args.max_new_tokens or 128,
            temperature=args.temperature, prompt_lookup_tokens=args.prompt_lookup_tokens if "prompt-lookup" in baselines else None,
            pair=pair, repeats=args.repeats or 1, warmup=args.warmup, seed=args.seed, threads=args.threads, start=args.start,
            target_name=args.target or "SmolLM2-135M-Instruct (embedded)", command=_command(),
            precision=precision.describe(), generation_options=precision.generation_options(),
            linear_ablation=args.linear_ablation, plain_kernels="plain-kernels" in baselines,
        )


def run_cost_mode(args) -> dict:
    from dspark_hf.benchmarks.cost_mode import TARGET_SHAPES
    from dspark_hf.benchmarks.runner import bench_cost
    from dspark_hf.errors import UnsupportedUsageError

    if args.target_shape not in TARGET_SHAPES:
        raise UnsupportedUsageError(f"Unknown --target-shape {args.target_shape!r}; choose one of {', '.join(TARGET_SHAPES)}.")
    if args.draft and len(args.draft) > 1:
        raise UnsupportedUsageError("--cost-mode takes at most one --draft.")
    policies = _policies(args.policies or "fixed:L", cost=True)
    lengths = _int_list(args.lengths) if args.lengths else None
    device, dtype = _device_and_dtype(args, cost=True)
    draft, draft_name = None, "random"
    if args.draft and args.draft[0] != "random":
        from dspark_hf.models.dspark.modeling_dspark import DSparkDraft

        draft_name = args.draft[0]
        draft = DSparkDraft.from_pretrained(args.draft[0]).eval()
        if getattr(draft.config, "draft_vocab_size", None):
            raise UnsupportedUsageError("--cost-mode forces proposals by target token id; it takes full-vocabulary drafts only "
                                        f"({args.draft[0]} has a draft vocabulary of {draft.config.draft_vocab_size}).")
    block = draft.config.block_size if draft is not None else args.block_size
    if lengths is not None and max(lengths) > block:
        raise UnsupportedUsageError(f"--lengths go up to the block size {block}; got {max(lengths)}.")
    return bench_cost(
        target_shape=args.target_shape, device=device, dtype=dtype, draft=draft, draft_name=draft_name, block_size=block,
        lengths=lengths, policies=policies, prompt_length=args.prompt_length, prompts=args.prompts,
        max_new_tokens=args.max_new_tokens or 64, repeats=args.repeats or 3, warmup=args.warmup,
        seed=args.seed, threads=args.threads, profile_dir=Path(args.out) if args.profile else None, command=_command(),
    )


def run(args: argparse.Namespace) -> int:
    from dspark_hf.benchmarks.report import markdown
    from dspark_hf.benchmarks.runner import print_flags, write_outputs

    _check_common(args)
    if args.concurrency:
        from dspark_hf.cli.bench_concurrency import run_concurrency

        return run_concurrency(args)
    if not args.no_plots:
        import importlib.util

        from dspark_hf.errors import DSparkError

        if importlib.util.find_spec("matplotlib") is None:
            raise DSparkError("the plots need matplotlib: pip install 'dspark-hf[bench]' (or matplotlib), or pass --no-plots.")
    if args.merge:
        from dspark_hf.benchmarks.prompt_runs import merge_runs

        if args.cost_mode:
            from dspark_hf.errors import UnsupportedUsageError

            raise UnsupportedUsageError("--merge joins prompt-mode runs; it does not take --cost-mode.")
        report = merge_runs(args.merge, command=_command())
    else:
        report = run_cost_mode(args) if args.cost_mode else run_prompt_mode(args)
    files = write_outputs(report, args.out, plots=not args.no_plots)
    print(markdown(report))
    print("wrote " + ", ".join([files["json"], files["markdown"], *files["plots"]]))
    print_flags(report)
    return 3 if report["mismatches"] else 0
