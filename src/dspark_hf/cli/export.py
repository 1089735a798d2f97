"""``dspark export``: write a draft in the released DeepSpec layout (``--format deepspec``, what vLLM's and
SGLang's ``dspark`` loaders read) or in this library's own format (``--format dspark``,
``save_pretrained``), optionally merging a LoRA adapter first.

    dspark export --draft PATH --target PATH --format deepspec --out DIR [--dtype bfloat16|float16|float32|keep]
"""

from __future__ import annotations

import argparse
from pathlib import Path

DTYPES = ("bfloat16", "float16", "float32", "keep")


def register(subparsers) -> None:
    parser = subparsers.add_parser("export", help="export a draft in the released DeepSpec layout or dspark_hf's own")
    parser.add_argument("--draft", required=True, help="draft to export: local folder or Hub id (either format)")
    parser.add_argument(
        "--target",
        help="the draft's target (folder or Hub id): its text config is the base of the DeepSpec config.json, and its "
        "embedding and LM head are written for drafts that share them (required for those)",
    )
    parser.add_argument("--format", default="deepspec", choices=["deepspec", "dspark"], help="output layout (default deepspec)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--dtype", default=None, choices=DTYPES,
        help="dtype of the written tensors (default: bfloat16 for deepspec, the draft's own for dspark; keep = the draft's)",
    )
    parser.add_argument("--adapter", help="a LoRA adapter folder (dspark finetune --lora) to merge into the draft first")
    parser.set_defaults(func=run)


def draft_config(name: str):
    """The draft's :class:`DSparkConfig` (either format), read without loading weights."""
    from dspark_hf.checkpoints.fetch import read_config_dict
    from dspark_hf.models.dspark.released_format import dspark_config_from_dict

    return dspark_config_from_dict(read_config_dict(name), f"{name}/config.json")


def load_target_model(name: str):
    """The target model in its stored dtype (no tokenizer needed: only its config and embeddings are used)."""
    from transformers import AutoModelForCausalLM

    from dspark_hf.checkpoints.files import is_local_path
    from dspark_hf.errors import CheckpointError

    if is_local_path(name, bare_names_are_local=False) and not Path(name).expanduser().is_dir():
        raise CheckpointError(f"No target model at {name}: the folder does not exist.")
    return AutoModelForCausalLM.from_pretrained(name, dtype="auto").eval()


def run(args: argparse.Namespace) -> int:
    import torch

    import dspark_hf  # noqa: F401

    from dspark_hf.checkpoints.files import check_local_folder, is_local_path
    from dspark_hf.errors import CheckpointError
    from dspark_hf.models.dspark.modeling_dspark import DSparkDraft
    from dspark_hf.training.export import export_deepspec, released_architecture

    if is_local_path(args.draft):
        check_local_folder(Path(args.draft).expanduser())
    if args.adapter and not (Path(args.adapter).expanduser() / "adapter_config.json").is_file():
        raise CheckpointError(f"{args.adapter} is not a LoRA adapter folder (no adapter_config.json).")
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"--out {out} is a file; pass a folder.")
    if args.format == "deepspec":
        released_architecture(draft_config(args.draft))  # fail before loading any weights
    draft = DSparkDraft.from_pretrained(args.draft, dtype="auto").eval()
    target = None
    if args.target:
        target = load_target_model(args.target)
        if draft.config.embeddings_from_target:
            draft.bind_target_embeddings(target)
    if args.adapter:
        from dspark_hf.training.lora import load_adapter, merge_adapter

        if draft.config.embeddings_from_target and target is None:
            raise CheckpointError("This draft shares its target's embeddings; pass --target to merge an adapter into it.")
        draft = merge_adapter(load_adapter(draft, args.adapter))
    keep = args.dtype == "keep" or (args.dtype is None and args.format == "dspark")
    dtype = None if keep else getattr(torch, args.dtype or "bfloat16")
    if args.format == "deepspec":
        export_deepspec(draft, out, target=target, dtype=dtype)
    else:
        if dtype is not None:
            draft = draft.to(dtype)
        draft.save_pretrained(out)
    print(f"wrote {args.format} draft to {out}")
    return 0
