"""Export a draft to the layout DeepSeek released its DSpark drafts in (DeepSpec layout).

The released layout (``deepseek-ai/dspark_qwen3_*_block7``, ``dspark_gemma4_12b_block7``) is what vLLM's
``dspark`` speculative method and SGLang load, and what :func:`dspark_hf.models.dspark.released_format.from_released_config`
reads back:

- ``config.json``: the target's *text* config (``model_type`` ``qwen3`` / ``gemma4_text``) overlaid with
  the draft's shapes and the DSpark keys (``architectures`` ``Qwen3DSparkModel`` / ``Gemma4DSparkModel``,
  ``block_size``, ``target_layer_ids``, ``markov_rank``, ...), ``tie_word_embeddings: false``, no ``auto_map``.
  Without a target, the config is written from the draft's own config (every key the loader reads).
- ``model.safetensors``: every tensor under the draft's names with no ``model.`` prefix, including
  ``embed_tokens.weight`` and ``lm_head.weight`` (for a draft that shares its target's embeddings they are
  taken from the target, which must then be given or already bound); bfloat16 unless told otherwise.

Only Qwen3-family targets with the Qwen3-style backbone and Gemma4 targets with the Gemma4 backbone have
a released layout; any other draft (e.g. one for a Llama / SmolLM2 target) gets one :class:`ExportError`:
save it in this library's own format (``draft.save_pretrained``) instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from dspark_hf.errors import DSparkError
from dspark_hf.models.dspark.released_format import to_released_config

# backbone -> (architectures entry, released model_type, target families it serves)
RELEASED_LAYOUTS = {
    "qwen3": ("Qwen3DSparkModel", "qwen3", ("qwen3",)),
    "gemma4": ("Gemma4DSparkModel", "gemma4_text", ("gemma4", "gemma4_text")),
}
# Keys of a target's config that make no sense in a draft folder.
_DROPPED_TARGET_KEYS = ("auto_map", "_name_or_path", "architectures", "transformers_version", "torch_dtype", "dtype")


class ExportError(DSparkError, ValueError):
    """The draft cannot be written in the requested layout (unsupported family, missing target, ...)."""


def released_architecture(config) -> tuple[str, str]:
    """``(architectures entry, model_type)`` of the released layout for a draft config, or ExportError."""
    family = config.target_model_type or config.backbone
    layout = RELEASED_LAYOUTS.get(config.backbone)
    if layout is None or family not in layout[2]:
        raise ExportError(
            f"The DeepSpec layout exists only for Qwen3 and Gemma4 drafts; this draft has a {config.backbone} backbone for a "
            f"{family} target. Save it in dspark_hf's own format instead (draft.save_pretrained / --format dspark)."
        )
    if config.target_hidden_size != config.hidden_size:
        raise ExportError(
            f"The DeepSpec layout needs the draft's hidden size to equal the target's (fc is [H, n*H]); this draft has "
            f"hidden {config.hidden_size} for a target of hidden {config.target_hidden_size}."
        )
    return layout[0], layout[1]


def deepspec_config(config, target_config=None, dtype: torch.dtype = torch.bfloat16) -> dict[str, Any]:
    """The released-layout config.json for a draft config, on top of the target's text config when given."""
    released = to_released_config(config)
    released["dtype"] = str(dtype).removeprefix("torch.")
    released["initializer_range"] = config.initializer_range
    if target_config is None:
        return released
    text = target_config.get_text_config()
    _, model_type = released_architecture(config)
    if text.model_type != model_type:
        raise ExportError(f"The target's text config has model_type {text.model_type!r}; a {config.backbone} draft needs {model_type!r}.")
    base = {k: v for k, v in text.to_diff_dict().items() if k not in _DROPPED_TARGET_KEYS}
    if config.backbone == "gemma4":
        # The target's sliding-attention entries stay the target's; the draft reads the global ones.
        keep = ["head_dim"] + (["num_key_value_heads"] if config.attention_k_eq_v else [])
        for key in keep:
            if key in base:
                released[key] = base[key]
        rope = dict(base.get("rope_parameters") or {})
        rope["full_attention"] = released["rope_parameters"]["full_attention"]
        released["rope_parameters"] = rope
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):  # ours may be unset; the target knows them
        if released.get(key) is None and base.get(key) is not None:
            released[key] = base[key]
    return base | released


def deepspec_tensors(draft: nn.Module, target: nn.Module | None = None, dtype: torch.dtype | None = torch.bfloat16) -> dict[str, torch.Tensor]:
    """Every tensor of the released layout, in ``dtype`` (``None``: the draft's own dtypes), contiguous on CPU."""
    if getattr(draft.config, "draft_vocab_size", None):
        raise ExportError(
            f"The draft has a reduced vocabulary of {draft.config.draft_vocab_size} tokens, which the DeepSpec layout "
            "cannot hold (its LM head covers the whole vocabulary); export a full-vocabulary draft."
        )
    state = draft.state_dict()
    if any("lora_" in name or ".base_layer." in name for name in state):
        raise ExportError("The draft carries a LoRA adapter; merge it first (dspark_hf.training.lora.merge_adapter, or --adapter).")
    if draft.config.embeddings_from_target and not getattr(draft, "_bound_target", False):
        if target is None:
            raise ExportError(
                "This draft shares its target's embedding and LM head, which the DeepSpec layout stores; "
                "pass the target it was trained for (--target)."
            )
        for name, module in (("embed_tokens.weight", target.get_input_embeddings()), ("lm_head.weight", target.get_output_embeddings())):
            if module is None or module.weight.shape != state[name].shape:
                shape = None if module is None else tuple(module.weight.shape)
                raise ExportError(f"The target's {name.split('.')[0]} has shape {shape}; the draft needs {tuple(state[name].shape)}.")
            state[name] = module.weight
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in state.items():
        tensor = tensor.detach().to("cpu", dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype)
        if tensor.data_ptr() in seen:  # tied tensors (e.g. a tied target's embedding and LM head): store both
            tensor = tensor.clone()
        seen.add(tensor.data_ptr())
        tensors[name] = tensor.contiguous()
    return tensors


def export_deepspec(
    draft: nn.Module, out_dir: str | Path, target: nn.Module | None = None, dtype: torch.dtype | None = torch.bfloat16
) -> Path:
    """Write ``draft`` to ``out_dir`` in the released DeepSpec layout; returns ``out_dir``.

    Args:
        draft: a :class:`~dspark_hf.DSparkDraft` (with any LoRA adapter merged).
        out_dir: folder to write ``config.json`` and ``model.safetensors`` into (created if needed).
        target: the target model; its text config becomes the base of config.json, and its embedding and
            LM head are written for drafts that share them (required then, unless already bound).
        dtype: dtype of the floating-point tensors (default bfloat16, as released); ``None`` keeps the draft's.
    """
    released_architecture(draft.config)
    if target is not None:
        from dspark_hf.integration.fit_checks import check_draft_fits_target

        check_draft_fits_target(draft, target)
    tensors = deepspec_tensors(draft, target, dtype)
    written_dtype = dtype if dtype is not None else draft.dtype
    config = deepspec_config(draft.config, None if target is None else target.config, written_dtype)
    try:
        import transformers

        config["transformers_version"] = transformers.__version__
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    return out
