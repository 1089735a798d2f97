"""LoRA fine-tuning of an existing DSpark draft with peft: adapt its backbone to a new domain.

The adapter goes on the draft's backbone only: the attention and MLP projections of the draft layers
(``q_proj k_proj v_proj o_proj gate_proj up_proj down_proj``, chosen by name) and the context
projection ``fc``. The embedding and LM head (the target's, frozen), the norms and the sequential and
confidence heads keep their weights. Adapters are saved in peft's own format
(``adapter_config.json`` + ``adapter_model.safetensors``), loaded onto any draft of the same shape, and
merged into the weights for export or shipping.

- :func:`lora_config` / :func:`attach_adapter`: a fresh, trainable adapter (a ``peft.PeftModel``);
- :func:`save_adapter`, :func:`load_adapter`, :func:`merge_adapter`;
- :func:`lora_training_step`: one optimizer step of the reference losses on a few sequences, built from
  the trainer's pieces (:mod:`.target_outputs`, :mod:`.packing`, :mod:`.draft_objective`).

``generate`` needs the draft itself: pass ``peft_model.get_base_model()`` (the draft, with the LoRA
layers in place) as ``assistant_model``, or the merged draft.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from dspark_hf.errors import CheckpointError, DSparkError

# The draft's adaptable projections: short name -> sub-module of each decoder layer ("" = top level).
LAYER_PROJECTIONS = {
    "q_proj": "self_attn",
    "k_proj": "self_attn",
    "v_proj": "self_attn",
    "o_proj": "self_attn",
    "gate_proj": "mlp",
    "up_proj": "mlp",
    "down_proj": "mlp",
    "fc": "",
}
DEFAULT_TARGET_MODULES = tuple(LAYER_PROJECTIONS)


class LoraError(DSparkError, ValueError):
    """A LoRA setting or adapter that cannot be used with this draft."""


def target_modules_pattern(names: Sequence[str]) -> str:
    """A regex (peft matches it against full module names) for the named projections of the draft's
    layers and ``fc``; never the sequential head's ``gate_proj`` or any other module of the same name."""
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in LAYER_PROJECTIONS]
    if unknown or not names:
        raise LoraError(f"Unknown LoRA target modules {unknown or names}; choose from {', '.join(LAYER_PROJECTIONS)}.")
    parts = [rf"layers\.\d+\.{LAYER_PROJECTIONS[n]}\.{n}" if LAYER_PROJECTIONS[n] else re.escape(n) for n in names]
    return "^(?:" + "|".join(parts) + ")$"


def lora_config(r: int = 16, alpha: int = 32, dropout: float = 0.05, target_modules: Sequence[str] = DEFAULT_TARGET_MODULES):
    """A ``peft.LoraConfig`` for a DSpark draft (rank ``r``, scale ``alpha / r``, dropout on the LoRA input)."""
    from peft import LoraConfig

    if r < 1 or alpha <= 0 or not 0.0 <= dropout < 1.0:
        raise LoraError(f"LoRA needs r >= 1, alpha > 0 and 0 <= dropout < 1; got r={r}, alpha={alpha}, dropout={dropout}.")
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules_pattern(target_modules), bias="none")


def _check_draft(draft: nn.Module) -> None:
    from dspark_hf.models.dspark.modeling_dspark import DSparkDraft

    if not isinstance(draft, DSparkDraft):
        raise LoraError(f"LoRA adapters go on a DSparkDraft; got {type(draft).__name__}.")
    if draft.config.embeddings_from_target and not draft._bound_target:
        raise LoraError("This draft shares its target's embeddings; call draft.bind_target_embeddings(target) first.")


def attach_adapter(draft: nn.Module, config=None):
    """Wrap ``draft`` in a ``peft.PeftModel`` with a new adapter; only the LoRA weights are trainable.

    peft injects the LoRA layers into ``draft`` in place; the base weights are frozen and never change.
    """
    from peft import get_peft_model

    _check_draft(draft)
    try:
        return get_peft_model(draft, config or lora_config())
    except ValueError as err:  # e.g. none of the chosen modules exists in this draft
        first = str(err).strip().splitlines()[0]
        raise LoraError(f"Cannot attach the LoRA adapter to this draft: {first}") from None


def save_adapter(peft_model, out_dir: str | Path) -> Path:
    """Write the adapter in peft's format (``adapter_config.json`` + ``adapter_model.safetensors``)."""
    out = Path(out_dir)
    peft_model.save_pretrained(str(out), safe_serialization=True, save_embedding_layers=False)
    return out


def load_adapter(draft: nn.Module, adapter_dir: str | Path, trainable: bool = False):
    """Load a saved adapter onto ``draft`` (same shapes as the draft it was trained on); a ``PeftModel``."""
    from peft import PeftModel

    _check_draft(draft)
    folder = Path(adapter_dir).expanduser()
    if not (folder / "adapter_config.json").is_file():
        raise CheckpointError(f"{folder} is not a LoRA adapter folder: it has no adapter_config.json.")
    if not (folder / "adapter_model.safetensors").is_file():
        raise CheckpointError(f"{folder} has no adapter_model.safetensors; dspark_hf loads safetensors adapters only.")
    try:
        return PeftModel.from_pretrained(draft, str(folder), is_trainable=trainable)
    except (RuntimeError, ValueError) as err:  # shape mismatches, target modules not found
        first = str(err).strip().splitlines()[0]
        raise LoraError(f"The adapter in {folder} does not fit this draft: {first}") from None


def merge_adapter(peft_model) -> nn.Module:
    """Fold the adapter into the base weights and return the plain draft (``W + (alpha / r) B A``)."""
    return peft_model.merge_and_unload()


def lora_training_step(
    draft: nn.Module,
    target: nn.Module,
    target_outputs,
    examples: Sequence,
    optimizer: torch.optim.Optimizer,
    *,
    scheduler=None,
    num_anchors: int = 64,
    max_grad_norm: float = 1.0,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """One optimizer step of the reference losses over ``examples``
    (:class:`~dspark_hf.training.data.Example`: ``input_ids`` and ``assistant_mask`` of one sequence).

    Exactly the trainer's per-sequence step: ``target_outputs`` (an
    :class:`~dspark_hf.training.target_outputs.OnlineTargetOutputs` on the draft's ``target_layer_ids``,
    or any callable ``input_ids -> TargetOutputs``) gives the target's features and final hidden state;
    up to ``num_anchors`` anchors are drawn on answer tokens (:func:`~.packing.sample_anchors`) and packed
    (:func:`~.packing.pack_blocks`); :func:`~.target_outputs.target_logits` rebuilds the target's
    distributions at the slots' positions; :class:`~.draft_objective.DraftObjective` gives the losses,
    back-propagated averaged over the examples that have an anchor (examples with none are skipped).
    Then gradients are clipped to ``max_grad_norm`` and the optimizer (and ``scheduler``) step.
    ``draft`` is the plain draft with LoRA layers injected (``peft_model.get_base_model()``) or any
    draft whose trainable parameters the optimizer holds. Returns the mean ``loss``, ``ce``, ``l1``,
    ``conf`` (0 without a confidence head) and ``acc`` (greedy top-1 agreement) as floats.
    """
    from dspark_hf.training.draft_objective import DraftObjective
    from dspark_hf.training.packing import pack_blocks, sample_anchors
    from dspark_hf.training.target_outputs import target_logits

    cfg = draft.config
    usable = []
    for example in examples:
        ids = torch.as_tensor(example.input_ids, dtype=torch.long).cpu()
        answer_mask = torch.as_tensor(example.assistant_mask, dtype=torch.long).cpu()
        anchors = sample_anchors(answer_mask, num_anchors, generator)
        if anchors.numel():
            usable.append((ids, pack_blocks(ids, answer_mask, anchors, cfg.block_size, cfg.mask_token_id)))
    if not usable:
        raise LoraError("No example in this step has two consecutive answer tokens to anchor a block on.")
    objective = DraftObjective(draft).train()
    optimizer.zero_grad(set_to_none=True)
    totals = {"loss": 0.0, "ce": 0.0, "l1": 0.0, "conf": 0.0, "acc": 0.0}
    for ids, packed in usable:
        outputs = target_outputs(ids.tolist())
        with torch.no_grad():
            soft_labels = target_logits(target, outputs.final_hidden[packed.target_positions.to(outputs.final_hidden.device)])
        parts = objective(outputs.features, packed, soft_labels)
        (parts.total / len(usable)).backward()
        totals["loss"] += float(parts.total.detach())
        totals["ce"] += float(parts.ce.detach())
        totals["l1"] += float(parts.l1.detach())
        totals["conf"] += float(parts.confidence.detach()) if parts.confidence is not None else 0.0
        totals["acc"] += float(parts.accuracy)
    params = [p for p in draft.parameters() if p.requires_grad]
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    draft.eval()
    return {name: total / len(usable) for name, total in totals.items()}
