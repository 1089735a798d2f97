"""``dspark demo``: the Gradio page that shows DSpark decoding live, token by token and round by round.

Defaults: the embedded SmolLM2-135M-Instruct target and the draft shipped for it (an untrained draft
shaped for the target when this build has none), served on http://127.0.0.1:7860, offline. Needs the
``demo`` extra (gradio); it is imported only when the command runs.
"""

from __future__ import annotations

import argparse

from dspark_hf.cli.validators import add_dtype_flag


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="serve the live Gradio demo (tokens accepted per step)")
    parser.add_argument("--target", help="target model: local folder or Hub id (default: embedded SmolLM2-135M-Instruct)")
    parser.add_argument(
        "--draft",
        help='DSpark draft: local folder or Hub id, or "random" (default: the draft shipped for the embedded target, '
        "else random)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--max-prompt-tokens", type=int, default=1024, help="longest prompt accepted, chat template included")
    parser.add_argument("--max-new-tokens-limit", type=int, default=512, help="upper end of the max-new-tokens slider")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    add_dtype_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    import torch

    from dspark_hf.cli.validators import check_shared_flags
    from dspark_hf.errors import UnsupportedUsageError

    check_shared_flags(args)  # --threads, --max-prompt-tokens, --max-new-tokens-limit
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no usage pings
    try:
        import gradio  # noqa: F401
    except ModuleNotFoundError:
        raise UnsupportedUsageError("The demo needs gradio: pip install 'dspark-hf[demo]'.") from None
    import dspark_hf  # noqa: F401  (installs the generation hook)

    from dspark_hf.demo.app import build_demo, launch_demo
    from dspark_hf.demo.models import ModelRegistry, resolve_names

    if args.threads:
        torch.set_num_threads(args.threads)
    target, draft = resolve_names(args.target, args.draft)
    print(f"dspark demo: loading {target or 'the embedded target'} and {draft or 'the shipped draft'} ...", flush=True)
    import functools

    from dspark_hf.demo.models import load_models

    registry = ModelRegistry(loader=functools.partial(load_models, dtype=args.dtype))
    print(registry.get(target, draft).precision, flush=True)  # loads the first pair (auto times the target here)
    demo = build_demo(registry, target=target, draft=draft, max_prompt_tokens=args.max_prompt_tokens,
                      max_new_tokens_limit=args.max_new_tokens_limit)
    launch_demo(demo, host=args.host, port=args.port, block=True)
    return 0
