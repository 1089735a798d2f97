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
