"""The draft a training run starts from, per method, and how a trained draft is saved.

- ``dspark`` / ``dflash``: a :class:`DSparkDraft` (``draft_config_for_target``) sharing the frozen target's
  embedding and LM head, which it does not save (``embeddings_from_target``).
- ``eagle3``: an :class:`Eagle3Draft` (``eagle3_config_for_target``) whose embedding and LM head are the
  target's, frozen, as DeepSpec's EAGLE-3 trainer does (``initialize_embeddings_and_head(freeze=True)``;
  the draft's final norm is its own and trains). Shared with the target while training, saved with the
  draft (the released layout holds them), so the folder loads on its own.

Every draft is initialised from ``cfg.seed``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dspark_hf.errors import DSparkError
from dspark_hf.models.dspark.config_for_target import draft_config_for_target
from dspark_hf.models.dspark.modeling_dspark import DSparkDraft
from dspark_hf.models.eagle3.config_for_target import eagle3_config_for_target
from dspark_hf.models.eagle3.modeling_eagle3 import Eagle3Draft

EAGLE3 = "eagle3"


def build_draft(target, cfg):
    """A freshly initialised draft for ``target`` (seeded by ``cfg.seed``, a :class:`TrainConfig`) sharing
    its frozen embedding and LM head. DFlash: no sequential head and no confidence head."""
    if cfg.method == EAGLE3:
        return build_eagle3_draft(target, cfg)
    rank = 0 if cfg.method == "dflash" else cfg.markov_rank
    config = draft_config_for_target(
        target.config,
        num_hidden_layers=cfg.num_hidden_layers,
        block_size=cfg.block_size,
        target_layer_ids=cfg.target_layer_ids,
        markov_rank=rank,
        markov_head_type=cfg.markov_head,
        enable_confidence_head=rank > 0,
    )
    config.num_anchors = cfg.num_anchors
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        draft = DSparkDraft(config)
    if cfg.draft_vocab_ids:
        draft.restrict_vocabulary(cfg.draft_vocab_ids)
    target.requires_grad_(False)
    draft.bind_target_embeddings(target)
    return draft


def build_eagle3_draft(target, cfg) -> Eagle3Draft:
    """A seeded :class:`Eagle3Draft` for ``target`` with ``cfg.ttt_length`` / ``cfg.step_loss_decay`` /
    ``cfg.target_layer_ids`` (default: five spread over the depth), bound to the target's embedding and LM head."""
    config = eagle3_config_for_target(
        target.config,
        target_layer_ids=cfg.target_layer_ids,
        ttt_length=cfg.ttt_length,
        step_loss_decay=cfg.step_loss_decay,
        target_model_name_or_path=(cfg.extra or {}).get("target"),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        draft = Eagle3Draft(config)
    target.requires_grad_(False)
    bind_target_embeddings(draft, target)
    return draft


def warm_start_fields(draft) -> dict:
    """The :class:`TrainConfig` fields that rebuild ``draft``'s architecture (``method``, heads, depth,
    block, target layers, reduced vocabulary), so that training continues this very shape."""
    config = draft.config
    if isinstance(draft, Eagle3Draft):
        return {"method": EAGLE3, "target_layer_ids": list(config.target_layer_ids), "ttt_length": config.ttt_length,
                "step_loss_decay": config.step_loss_decay, "draft_vocab": None, "draft_vocab_ids": None}
    rank = config.markov_rank
    ids = getattr(draft, "draft_vocab_ids", None)
    return {
        "method": "dspark" if rank > 0 else "dflash",
        "markov_head": config.markov_head_type if rank > 0 else "vanilla",
        "markov_rank": rank if rank > 0 else 64,
        "num_hidden_layers": config.num_hidden_layers,
        "block_size": config.block_size,
        "target_layer_ids": list(config.target_layer_ids),
        "draft_vocab": None if ids is None else int(ids.numel()),
        "draft_vocab_ids": None if ids is None else ids.tolist(),
    }


def copy_trainable_weights(draft, source, name: str) -> None:
    """Start ``draft`` (freshly built from :func:`warm_start_fields` of ``source``) from ``source``'s
    weights: every tensor the draft trains must come from ``source`` with the same shape."""
    theirs = source.state_dict()
    mine = draft.state_dict()
    trainable = {k for k, p in draft.named_parameters() if p.requires_grad}
    missing = sorted(k for k in trainable if k not in theirs)
    wrong = sorted(k for k in trainable if k in theirs and theirs[k].shape != mine[k].shape)
    if missing or wrong:
        what = f"lacks {missing[:3]}" if missing else f"has other shapes for {wrong[:3]}"
        raise DSparkError(f"Cannot start training from the draft {name}: it {what}.")
    with torch.no_grad():
        for key, value in mine.items():
            if key in theirs and (key in trainable or key.endswith("draft_vocab_ids")):
                value.copy_(theirs[key].to(value.dtype))


def bind_target_embeddings(draft, target) -> None:
    """Make ``draft``'s embedding and LM head the (frozen) target's own tensors, on the target's device."""
    if isinstance(draft, DSparkDraft):
        draft.bind_target_embeddings(target)
        return
    embed, head = target.get_input_embeddings(), target.get_output_embeddings()
    for name, mine, theirs in (("embedding", draft.embed_tokens, embed), ("LM head", draft.lm_head, head)):
        if theirs is None or tuple(theirs.weight.shape) != tuple(mine.weight.shape):
            got = None if theirs is None else tuple(theirs.weight.shape)
            raise DSparkError(f"The target's {name} is {got}; the EAGLE-3 draft needs {tuple(mine.weight.shape)}.")
    draft.embed_tokens.weight = embed.weight
    draft.lm_head.weight = head.weight


def save_draft(draft, directory: str | Path, dtype: str = "float32") -> Path:
    """Save the trained draft in ``dtype`` (a DSpark draft without the target-owned embedding and LM head;
    an EAGLE-3 draft with them, each its own tensor even when the target ties them)."""
    directory = Path(directory)
    owned = set(draft._TARGET_OWNED) if getattr(draft.config, "embeddings_from_target", False) else set()
    state, seen = {}, set()
    for k, v in draft.state_dict().items():
        if k in owned:
            continue
        t = v.detach().to("cpu", getattr(torch, dtype) if v.is_floating_point() else v.dtype).contiguous()
        if t.untyped_storage().data_ptr() in seen:  # tied tensors: safetensors stores no shared memory
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        state[k] = t
    draft.save_pretrained(directory, state_dict=state)
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text())
    config["dtype"] = dtype  # the weights' dtype (transformers writes the in-memory model's)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return directory
