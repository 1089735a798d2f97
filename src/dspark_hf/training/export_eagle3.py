"""Export an EAGLE-3 draft to the layout DeepSpec releases its EAGLE-3 drafts in.

- ``config.json``: a Qwen3 config (``model_type: qwen3``, ``architectures: ["Qwen3Eagle3Model"]``,
  ``num_hidden_layers: 1``) with the EAGLE-3 keys ``target_layer_ids``, ``num_target_layers``,
  ``ttt_length``, ``step_loss_decay``, ``draft_num_hidden_layers`` and ``target_model_name_or_path``
  (:func:`dspark_hf.models.eagle3.configuration_eagle3.to_released_eagle3_config`);
- ``model.safetensors``: the draft's 16 tensors under its own names (``embed_tokens.weight``,
  ``fc.weight``, ``layers.0.*``, ``norm.weight``, ``lm_head.weight``; no ``model.`` prefix, no rotary
  buffer), bfloat16 unless told otherwise.

The folder loads back with :meth:`Eagle3Draft.from_pretrained` / ``DSparkDraft.from_pretrained``, and
with DeepSpec's own ``Qwen3Eagle3Model.from_pretrained``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from dspark_hf.models.eagle3.configuration_eagle3 import to_released_eagle3_config
from dspark_hf.models.eagle3.modeling_eagle3 import Eagle3Draft


def eagle3_tensors(draft: Eagle3Draft, dtype: torch.dtype | None = torch.bfloat16) -> dict[str, torch.Tensor]:
    """Every tensor of the released layout, in ``dtype`` (``None``: the draft's own), contiguous on CPU."""
    return {
        name: tensor.detach().to("cpu", dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype).contiguous()
        for name, tensor in draft.state_dict().items()
    }


def export_eagle3(draft: Eagle3Draft, out_dir: str | Path, dtype: torch.dtype | None = torch.bfloat16) -> Path:
    """Write ``draft`` to ``out_dir`` (created if needed) in DeepSpec's EAGLE-3 layout; returns ``out_dir``.

    ``dtype``: of the floating-point tensors (default bfloat16, as released); ``None`` keeps the draft's.
    """
    tensors = eagle3_tensors(draft, dtype)
    written = dtype if dtype is not None else draft.dtype
    config = to_released_eagle3_config(draft.config, dtype=str(written).removeprefix("torch."))
    import transformers

    config["transformers_version"] = transformers.__version__
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    return out
