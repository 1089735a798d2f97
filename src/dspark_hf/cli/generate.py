"""``dspark generate``: run a target with a DSpark draft on one prompt; print the text and a per-step
summary (tokens per step, acceptance).

Defaults: the embedded SmolLM2-135M-Instruct target and the draft shipped for it, so the command runs
offline with nothing but the package installed.
"""

from __future__ import annotations

import argparse
import time

from dspark_hf.cli.validators import add_draft_vocab_flags, add_dtype_flag


def register(subparsers) -> None:
    parser = subparsers.add_parser("generate", help="generate text with a target and a DSpark draft")
    parser.add_argument("--prompt", required=True, help="the user message (the chat template is applied)")
    parser.add_argument("--target", help="target model: local folder or Hub id (default: embedded SmolLM2-135M-Instruct)")
    parser.add_argument(
        "--draft",
        help='DSpark draft: local folder or Hub id (default: the draft shipped for the embedded target), or "random": '
        "an untrained draft shaped for the target, to check the pipeline (output stays exact; it is rarely accepted)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=128, help="at least 1 (default 128)")
    parser.add_argument("--policy", default=None,
                        help='verification policy, e.g. "whole", "threshold:0.6" or "hardware" (default: the draft\'s own '
                        'policy, else "hardware", the fastest measured here; it profiles the target on first use)')
    parser.add_argument("--temperature", type=float, default=0.0, help="a finite number >= 0; 0 = greedy (default)")
    parser.add_argument("--top-k", type=int, default=None, help="sampling: keep the k likeliest tokens (>= 0; 0 = off, default)")
    parser.add_argument("--top-p", type=float, default=None, help="sampling: nucleus mass in (0, 1] (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-chat-template", action="store_true", help="feed the prompt as raw text")
    parser.add_argument("--steps", action="store_true", help="print one line per drafting round")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads, at least 1 (default: torch's choice)")
    add_dtype_flag(parser)
    add_draft_vocab_flags(parser)
    parser.add_argument(
        "--compare", action="store_true",
        help="also run plain decoding (no draft) on the same prompt in this process and print both speeds, "
        "their ratio and whether the texts are identical (greedy: they must be)",
    )
    parser.set_defaults(func=run)


def encode_prompt(tokenizer, prompt: str, raw: bool):
    if raw or not getattr(tokenizer, "chat_template", None):
        return tokenizer(prompt, return_tensors="pt").input_ids
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]


def format_steps(telemetry) -> str:
    lines = ["step  verified  accepted  emitted  confidences"]
    for s in telemetry.steps:
        conf = " ".join(f"{c:.2f}" for c in s.confidences) if s.confidences else "-"
        lines.append(f"{s.step:4d}  {s.verified:8d}  {s.accepted:8d}  {s.emitted:7d}  {conf}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import torch
    from transformers import GenerationConfig

    import dspark_hf  # noqa: F401  (installs the generation hook)

    from dspark_hf.cli.validators import check_draft_folder, check_shared_flags
    from dspark_hf.errors import UnsupportedUsageError

    # Check what can be checked before loading any weights: the flags, then the draft folder's config.
    check_shared_flags(args)  # --max-new-tokens, --temperature, --top-p, --top-k, --threads, --policy
    if not args.prompt.strip():
        raise UnsupportedUsageError("--prompt is empty.")
    check_draft_folder(args.draft)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from dspark_hf.loading import load_draft
    from dspark_hf.loading import load_target_with_precision

    from dspark_hf.verification.policies import FASTEST_MEASURED_POLICY

    target, tokenizer, precision = load_target_with_precision(args.target, args.dtype)
    print(precision.describe())
    draft = load_draft(args.draft, target, dtype=precision.draft_dtype, draft_vocab=args.draft_vocab, token_counts=args.token_counts)
    if args.policy is None and getattr(draft, "verification_policy", None) is None:
        args.policy = FASTEST_MEASURED_POLICY
    ids = encode_prompt(tokenizer, args.prompt, args.no_chat_template)
    sampling = {"do_sample": args.temperature > 0}
    if args.temperature > 0:
        sampling.update(temperature=args.temperature, top_k=args.top_k or 0, top_p=args.top_p or 1.0)
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, dspark_policy=args.policy, **sampling,
                              **precision.generation_options())
    mask = torch.ones_like(ids)
    # One untimed warm-up call each, so that no side pays first-call costs (and a "hardware" policy
    # without a stored cost profile measures one here, not inside the timed call).
    warm = GenerationConfig(max_new_tokens=4, dspark_policy=args.policy, **sampling, **precision.generation_options())
    if args.compare:
        target.generate(ids, generation_config=warm, attention_mask=mask)
    target.generate(ids, assistant_model=draft, generation_config=warm, attention_mask=mask)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    out = target.generate(ids, assistant_model=draft, generation_config=config, attention_mask=mask)
    seconds = time.perf_counter() - start
    telemetry = draft.last_telemetry
    print(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
    print()
    if args.steps:
        print(format_steps(telemetry))
    print("tokens per step: " + " ".join(str(s.emitted) for s in telemetry.steps))
    speed = telemetry.new_tokens / seconds
    print(f"{telemetry.summary()}; {speed:.1f} tokens/s")
    if args.compare:
        torch.manual_seed(args.seed)
        start = time.perf_counter()
        plain = target.generate(ids, generation_config=config, attention_mask=mask)
        plain_seconds = time.perf_counter() - start
        plain_speed = (plain.shape[1] - ids.shape[1]) / plain_seconds
        same = "identical text" if torch.equal(plain, out) else "different text" + (" (sampling)" if sampling["do_sample"] else "")
        dtype = str(next(target.parameters()).dtype).removeprefix("torch.")
        print(
            f"plain decoding: {plain_speed:.1f} tokens/s; DSpark / plain = {speed / plain_speed:.2f}x ({same}; "
            f"{dtype}, {torch.get_num_threads()} threads, {telemetry.new_tokens} and {plain.shape[1] - ids.shape[1]} new tokens)"
        )
    return 0
