"""``dspark train``: train a DSpark (or DFlash-variant, or EAGLE-3) draft for any transformers causal LM target.

    dspark train --data prompts.jsonl --self-distill --output-dir runs/smollm2 \
        [--target PATH_OR_HUB_ID] [--method dspark|dflash|eagle3] [--markov-head vanilla|gated|rnn] ...

Data: JSON Lines of prompts or chats, or plain text (see :mod:`dspark_hf.training.data`). With
``--self-distill`` the target first answers the prompts itself (written to
``OUTPUT_DIR/distilled.jsonl``, resumable). ``--feature-cache DIR`` keeps the target's features so that
later epochs (and other runs on the same data) skip the target forward. A rerun with the same
``--output-dir`` resumes from the newest checkpoint. Several processes: ``accelerate launch -m
dspark_hf.cli train ...`` (DDP), or ``accelerate launch --use_fsdp --fsdp_version 2 -m dspark_hf.cli
train ...`` on GPUs (FSDP2, the draft's trainable weights sharded; see docs/training.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a DSpark draft for a target", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="training data: .jsonl (prompts, chats, text, token ids) or .txt")
    p.add_argument("--output-dir", required=True, help="checkpoints, logs and the trained draft (OUTPUT_DIR/draft)")
    p.add_argument("--target", help="target model: local folder or Hub id (default: embedded SmolLM2-135M-Instruct)")
    p.add_argument("--method", choices=["dspark", "dflash", "eagle3"], default="dspark",
                   help="dflash: the same draft with markov_rank 0, no sequential and no confidence head; "
                        "eagle3: DeepSpec's EAGLE-3 draft (one layer, test-time-training chain)")
    p.add_argument("--markov-head", choices=["vanilla", "gated", "rnn"], default="vanilla")
    p.add_argument("--markov-rank", type=int, default=64)
    p.add_argument("--num-layers", type=int, default=2, help="draft decoder layers")
    p.add_argument("--block-size", type=int, default=7, help="gamma: slots per drafted block")
    p.add_argument("--draft-vocab", type=int, default=None, metavar="K",
                   help="a reduced output vocabulary: the K most frequent tokens of the training answers (FR-Spec); "
                        "their counts are saved as token_counts.json beside the draft")
    e3 = p.add_argument_group("eagle3 (--method eagle3)")
    e3.add_argument("--ttt-length", type=int, default=7, help="chain steps trained (tokens drafted per round)")
    e3.add_argument("--step-loss-decay", type=float, default=0.8, help="chain step k's loss weighs step_loss_decay ** k")
    e3.add_argument("--eagle3-positions", choices=["all", "anchors"], default="all",
                    help="all: DeepSpec's loss over every position; anchors: the chain's logits and loss only at the "
                         "--num-anchors positions DSpark samples (CPU-scaled, the same positions as a DSpark run)")
    p.add_argument("--target-layer-ids", help="comma-separated target layers to read (default: 5 spread over the depth)")
    p.add_argument("--num-anchors", type=int, default=64, help="blocks per sequence and step")
    p.add_argument("--max-length", type=int, default=512, help="cut sequences to this many tokens")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=4, help="sequences per optimizer step and process")
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--warmup-ratio", type=float, default=0.04)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=100, help="checkpoint every N steps")
    p.add_argument("--keep-checkpoints", type=int, default=2, help="how many of the latest checkpoints to keep (default 2; "
                   "more keep a learning curve measurable afterwards, dspark train --draft-from-checkpoint)")
    p.add_argument("--feature-cache", help="folder of a sharded safetensors cache of the target's features")
    p.add_argument("--prepare-only", action="store_true", help="self-distill and fill the feature cache, then stop")
    p.add_argument("--save-dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    p.add_argument("--no-bf16", action="store_true", help="no bf16 autocast on GPU")
    p.add_argument("--cpu-bf16", action="store_true",
                   help="bf16 autocast on CPU (fast on CPUs with AVX512-BF16 / AMX; weights and optimizer stay float32)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--export", choices=["deepspec"], default=None,
                   help="also write the trained draft in the released DeepSpec layout to OUTPUT_DIR/deepspec "
                        "(Qwen3 and Gemma4 targets; loadable by vLLM's dspark method and the reference evaluator)")
    p.add_argument("--init-from", metavar="DRAFT", default=None,
                   help="start from this draft's weights (folder, Hub id, or 'default' for the bundled draft) and "
                        "keep its shape: --method, heads, --num-layers, --block-size, --target-layer-ids and "
                        "--draft-vocab come from it")
    p.add_argument("--draft-from-checkpoint", metavar="CHECKPOINT",
                   help="only save the draft of this checkpoint (OUTPUT_DIR/checkpoints/checkpoint-N) to OUTPUT_DIR/draft")
    sd = p.add_argument_group("self-distillation")
    sd.add_argument("--self-distill", action="store_true", help="regenerate the answers with the target first")
    sd.add_argument("--max-new-tokens", type=int, default=192)
    sd.add_argument("--max-prompt-tokens", type=int, default=256)
    sd.add_argument("--distill-batch-size", type=int, default=16)
    sd.add_argument("--distill-shard", metavar="I/N", default=None,
                    help="answer only the prompts whose index is I modulo N (one of N processes sharing the "
                         "work; needs --prepare-only); a later run without it merges the shards' answers")
    sd.add_argument("--distill-dtype", choices=["float32", "bfloat16"], default="float32",
                    help="the dtype the target answers in (a separate copy; bfloat16 is 2-3x faster on CPUs with "
                         "AVX512-BF16 and on GPUs; training still reads the float32 target)")
    sd.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); else sampled")
    sd.add_argument("--top-p", type=float, default=0.8)
    sd.add_argument("--top-k", type=int, default=20)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from dspark_hf.cli.validators import check_shared_flags

    check_shared_flags(args)  # --threads, --max-new-tokens, --max-prompt-tokens, --temperature, --top-p, --top-k
    if args.threads:
        torch.set_num_threads(args.threads)
    from accelerate import Accelerator

    from dspark_hf.training.data import load_examples
    from dspark_hf.training.fsdp import check_fsdp_setup
    from dspark_hf.training.self_distill import SamplingConfig, self_distill
    from dspark_hf.training.trainer import Trainer, TrainConfig, end_process_group
    from dspark_hf.loading import load_target

    from dspark_hf.training.data import DataError, read_records

    if not args.draft_from_checkpoint and not Path(args.data).is_file():
        raise DataError(f"Training data file not found: {args.data}")
    for name in ("num_layers", "block_size", "num_anchors", "batch_size", "epochs", "keep_checkpoints", "ttt_length"):
        if getattr(args, name) < 1:
            raise DataError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}.")
    if not args.step_loss_decay > 0:
        raise DataError(f"--step-loss-decay must be > 0, got {args.step_loss_decay}.")
    if args.method == "eagle3" and args.draft_vocab:
        raise DataError("--draft-vocab is for DSpark and DFlash drafts; an EAGLE-3 draft covers the whole target vocabulary.")
    shard = None
    if args.distill_shard is not None:
        i, _, n = args.distill_shard.partition("/")
        if not (i.isdigit() and n.isdigit() and int(i) < int(n)):
            raise DataError(f"--distill-shard must be I/N with 0 <= I < N, got {args.distill_shard!r}.")
        if not (args.self_distill and args.prepare_only):
            raise DataError("--distill-shard answers part of the prompts: use it with --self-distill --prepare-only, "
                            "then run once without it to merge the parts and train.")
        shard = (int(i), int(n))
    if not args.draft_from_checkpoint:
        read_records(args.data)  # every record's shape, as <file>:<line>: ..., before the target loads
    from dspark_hf.training.trainer import mixed_precision

    accelerator = Accelerator(mixed_precision=mixed_precision(not args.no_bf16, args.cpu_bf16))
    check_fsdp_setup(accelerator)  # before loading the target: FSDP asked for where accelerate cannot run it
    target, tokenizer = load_target(args.target)
    if args.draft_from_checkpoint:
        from dspark_hf.training.trainer import draft_from_checkpoint, save_draft

        path = save_draft(draft_from_checkpoint(target, args.draft_from_checkpoint), Path(args.output_dir) / "draft", args.save_dtype)
        print(f"Draft of {args.draft_from_checkpoint} saved to {path}")
        return 0
    layer_ids = [int(x) for x in args.target_layer_ids.split(",")] if args.target_layer_ids else None
    # The draft's config, checked before any data work (EAGLE-3: exactly five layers within the target).
    if args.method == "eagle3":
        from dspark_hf.models.eagle3.config_for_target import eagle3_config_for_target

        draft_config = eagle3_config_for_target(target.config, target_layer_ids=layer_ids, ttt_length=args.ttt_length,
                                                step_loss_decay=args.step_loss_decay)
    else:
        from dspark_hf.models.dspark.config_for_target import draft_config_for_target

        draft_config = draft_config_for_target(target.config, target_layer_ids=layer_ids)
    if args.export == "deepspec" and args.method != "eagle3":  # refuse before training, not after it
        from dspark_hf.training.export import released_architecture

        released_architecture(draft_config)
    out = Path(args.output_dir)
    data = Path(args.data)
    if args.self_distill:
        distilled = out / "distilled.jsonl"
        if accelerator.is_main_process:
            sampling = SamplingConfig(
                max_new_tokens=args.max_new_tokens,
                do_sample=args.temperature > 0,
                temperature=args.temperature or 1.0,
                top_p=args.top_p,
                top_k=args.top_k,
                batch_size=args.distill_batch_size,
                max_prompt_tokens=args.max_prompt_tokens,
            )
            cache, cache_layers = None, None
            if args.feature_cache:
                from dspark_hf.training.target_outputs import FeatureCache

                cache_layers = draft_config.target_layer_ids
                cache = FeatureCache(args.feature_cache, cache_layers)
            answerer = target
            if args.distill_dtype != "float32":
                answerer, _ = load_target(args.target, dtype=getattr(torch, args.distill_dtype))
            self_distill(answerer.to(accelerator.device), tokenizer, data, distilled, sampling, seed=args.seed,
                         feature_cache=cache, layer_ids=cache_layers, shard=shard)
            del answerer
        if shard is not None:  # one part of the answers: training waits for the run that merges them
            from dspark_hf.training.self_distill import part_path

            accelerator.print(f"Shard {shard[0]}/{shard[1]} of the self-distillation is in {part_path(distilled, shard)}; "
                              "run again without --distill-shard to merge the parts and train.")
            end_process_group()
            return 0
        accelerator.wait_for_everyone()
        data = distilled
    vocab = target.get_input_embeddings().num_embeddings  # pre-tokenized ids must index the embedding
    examples = load_examples(tokenizer, data, max_length=args.max_length, vocab_size=vocab)
    cfg = TrainConfig(
        output_dir=str(out),
        method=args.method,
        markov_head=args.markov_head,
        markov_rank=args.markov_rank,
        num_hidden_layers=args.num_layers,
        block_size=args.block_size,
        target_layer_ids=layer_ids,
        num_anchors=args.num_anchors,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_ratio=args.warmup_ratio,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        seed=args.seed,
        save_every=args.save_every,
        keep_checkpoints=args.keep_checkpoints,
        feature_cache=args.feature_cache,
        save_dtype=args.save_dtype,
        bf16=not args.no_bf16,
        cpu_bf16=args.cpu_bf16,
        progress=not args.no_progress,
        draft_vocab=args.draft_vocab,
        ttt_length=args.ttt_length,
        step_loss_decay=args.step_loss_decay,
        eagle3_positions=args.eagle3_positions,
        extra={"data": str(data), "target": args.target or "embedded SmolLM2-135M-Instruct"},
    )
    initial = None
    if args.init_from:
        from dataclasses import replace

        from dspark_hf.loading import load_draft
        from dspark_hf.training.drafts import warm_start_fields

        initial = load_draft(None if args.init_from == "default" else args.init_from, target=target)
        cfg = replace(cfg, **warm_start_fields(initial), extra={**cfg.extra, "init_from": args.init_from})
        counts = Path(getattr(initial, "_dspark_folder", "") or ".") / "token_counts.json"
        if cfg.draft_vocab and counts.is_file() and accelerator.is_main_process:  # what its vocabulary came from
            out.mkdir(parents=True, exist_ok=True)
            (out / counts.name).write_bytes(counts.read_bytes())
    trainer = Trainer(target, examples, cfg, accelerator=accelerator, initial_draft=initial)
    if args.prepare_only:
        trainer.fill_cache()
        accelerator.print(f"{len(trainer.examples)} sequences ready (feature cache: {args.feature_cache or 'none'}).")
        end_process_group()
        return 0
    draft = trainer.train()
    accelerator.print(f"Trained draft saved to {out / 'draft'}")
    if args.export == "deepspec" and accelerator.is_main_process:
        # The released layout: bf16, with the target's embedding and LM head.
        if args.method == "eagle3":
            from dspark_hf.training.export_eagle3 import export_eagle3

            export_eagle3(draft, out / "deepspec")
        else:
            from dspark_hf.training.export import export_deepspec

            export_deepspec(draft, out / "deepspec", target=target)
        print(f"DeepSpec-layout export written to {out / 'deepspec'}")
    end_process_group()
    return 0
