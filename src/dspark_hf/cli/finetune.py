"""``dspark finetune --lora``: adapt an existing draft to a new domain with a LoRA adapter (peft).

    dspark finetune --lora --draft DRAFT --target TARGET --data domain.jsonl --out ADAPTER_DIR \\
        [--r 16 --alpha 32 --dropout 0.05 --target-modules q_proj,k_proj,...,fc] [--merge-into DIR]

The data is read by ``dspark train``'s loader (:func:`dspark_hf.training.data.load_examples`). The
target runs online on every sequence (its features and logits are the training signal); only the
adapter's weights train, with the trainer's packing and losses (0.1 CE + 0.9 L1 + 1.0 confidence BCE,
slot weights exp(-k/4)), AdamW and a cosine schedule with warm-up. The adapter is written in peft's format
(safetensors); ``--merge-into`` also writes the merged draft in dspark_hf's format. Full training of a
draft is ``dspark train``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("finetune", help="fine-tune an existing draft on a new domain (LoRA)")
    parser.add_argument("--lora", action="store_true", help="train a LoRA adapter (the only fine-tuning mode)")
    parser.add_argument("--draft", required=True, help="the draft to adapt: folder or Hub id (either format)")
    parser.add_argument("--target", help="its target: folder or Hub id (default: embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--data", required=True, help='JSON Lines: {"prompt", "answer"} or {"messages": [...]} per line (any record dspark train reads)')
    parser.add_argument("--out", required=True, help="folder for the adapter (adapter_config.json, adapter_model.safetensors)")
    parser.add_argument("--adapter", help="continue training this saved adapter instead of a new one")
    parser.add_argument("--r", type=int, default=16, help="LoRA rank (default 16)")
    parser.add_argument("--alpha", type=float, default=32, help="LoRA alpha; the update is scaled by alpha/r (default 32)")
    parser.add_argument("--dropout", type=float, default=0.05, help="dropout on the LoRA input (default 0.05)")
    parser.add_argument(
        "--target-modules", default=None,
        help="comma-separated projections to adapt (default: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,fc)",
    )
    parser.add_argument("--epochs", type=float, default=1.0, help="passes over the data (default 1)")
    parser.add_argument("--lr", type=float, default=2e-4, help="peak learning rate (default 2e-4)")
    parser.add_argument("--warmup", type=float, default=0.04, help="warm-up fraction of the steps (default 0.04)")
    parser.add_argument("--batch-size", type=int, default=4, help="sequences per optimizer step (default 4)")
    parser.add_argument("--num-anchors", type=int, default=64, help="blocks per sequence (default 64)")
    parser.add_argument("--max-length", type=int, default=1024, help="tokens kept per sequence (default 1024)")
    parser.add_argument("--merge-into", help="also write the draft with the adapter merged (dspark_hf format) here")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> None:
    from dspark_hf.cli.validators import check_draft_folder, check_shared_flags
    from dspark_hf.errors import UnsupportedUsageError
    from dspark_hf.training.data import read_records
    from dspark_hf.training.lora import lora_config

    if not args.lora:
        raise UnsupportedUsageError("dspark finetune only trains LoRA adapters: add --lora (full training is dspark train).")
    check_shared_flags(args)  # --threads
    for name in ("epochs", "lr", "batch_size", "num_anchors", "max_length"):
        if getattr(args, name) <= 0:
            raise UnsupportedUsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}.")
    if not Path(args.data).expanduser().is_file():
        raise UnsupportedUsageError(f"No fine-tuning data at {args.data}.")
    read_records(args.data)  # every record's shape, as <file>:<line>: ..., before a model loads
    check_draft_folder(args.draft)
    modules = [m.strip() for m in args.target_modules.split(",") if m.strip()] if args.target_modules else None
    args.lora_config = lora_config(args.r, args.alpha, args.dropout, *([modules] if modules else []))


def run(args: argparse.Namespace) -> int:
    import torch
    from transformers import get_cosine_schedule_with_warmup

    import dspark_hf  # noqa: F401

    from dspark_hf.models.dspark.modeling_dspark import DSparkDraft
    from dspark_hf.training.data import load_examples
    from dspark_hf.training.lora import attach_adapter, load_adapter, lora_training_step, merge_adapter, save_adapter
    from dspark_hf.training.target_outputs import OnlineTargetOutputs
    from dspark_hf.loading import load_target

    _check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    target, tokenizer = load_target(args.target)
    target.to(device)
    examples = load_examples(tokenizer, args.data, args.max_length, vocab_size=target.get_input_embeddings().num_embeddings)
    draft = DSparkDraft.from_pretrained(args.draft, dtype=torch.float32).to(device).eval()
    if draft.config.embeddings_from_target:
        draft.bind_target_embeddings(target)
    from dspark_hf.integration.fit_checks import check_draft_fits_target

    check_draft_fits_target(draft, target)
    peft_model = load_adapter(draft, args.adapter, trainable=True) if args.adapter else attach_adapter(draft, args.lora_config)
    model = peft_model.get_base_model()

    steps_per_epoch = math.ceil(len(examples) / args.batch_size)
    total_steps = max(1, round(args.epochs * steps_per_epoch))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    scheduler = get_cosine_schedule_with_warmup(optimizer, round(args.warmup * total_steps), total_steps)
    generator = torch.Generator().manual_seed(args.seed)
    target_outputs = OnlineTargetOutputs(target, draft.config.target_layer_ids)
    print(f"{len(examples)} sequences, {total_steps} steps of {args.batch_size}; {_trainable(model)}")
    history = []
    order: list[int] = []
    start = time.perf_counter()
    try:
        for step in range(total_steps):
            if len(order) < args.batch_size:
                order += torch.randperm(len(examples), generator=generator).tolist()
            batch = [examples[i] for i in order[: args.batch_size]]
            del order[: args.batch_size]
            losses = lora_training_step(
                model, target, target_outputs, batch, optimizer, scheduler=scheduler, num_anchors=args.num_anchors, generator=generator
            )
            history.append({"step": step + 1, **{k: round(v, 5) for k, v in losses.items()}})
            if step == 0 or (step + 1) % 10 == 0 or step + 1 == total_steps:
                print(f"step {step + 1}/{total_steps}  " + "  ".join(f"{k} {v:.4f}" for k, v in losses.items()))
    finally:
        target_outputs.close()
    out = save_adapter(peft_model, args.out)
    (out / "finetune_log.json").write_text(json.dumps({
        "draft": args.draft, "target": args.target, "data": args.data, "sequences": len(examples),
        "steps": total_steps, "seconds": round(time.perf_counter() - start, 1), "history": history,
    }, indent=1) + "\n")
    print(f"wrote the adapter to {out}")
    if args.merge_into:
        merged = merge_adapter(peft_model)
        merged.save_pretrained(args.merge_into)
        print(f"wrote the merged draft to {args.merge_into}")
    return 0


def _trainable(model) -> str:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return f"{trainable:,} of {total:,} parameters train"
