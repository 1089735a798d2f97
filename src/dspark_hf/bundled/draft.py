"""The default draft shipped with the package: a DSpark draft for the embedded SmolLM2-135M-Instruct
target (see :mod:`dspark_hf.bundled.target`), stored in ``dspark_hf/default_draft/``.

It shares the target's embedding and LM head (``embeddings_from_target``), so only the backbone and
heads ship. How it was trained, on what and how well it drafts: ``hub_cards/dspark_smollm2_135m.md``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dspark_hf.errors import CheckpointError

DEFAULT_DRAFT_DIR = Path(__file__).resolve().parent / "default_draft"


def default_draft_dir() -> Path:
    """The shipped draft's folder; a clear error if this build does not include it."""
    if not (DEFAULT_DRAFT_DIR / "config.json").is_file():
        raise CheckpointError(
            f"The default draft is not in this build ({DEFAULT_DRAFT_DIR}); pass --draft PATH_OR_HUB_ID."
        )
    return DEFAULT_DRAFT_DIR


def load_default_draft(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """The shipped draft as a :class:`DSparkDraft` in eval mode (bind it to the target before use, or
    let ``generate`` do it)."""
    from dspark_hf.models.dspark.modeling_dspark import DSparkDraft

    return DSparkDraft.from_pretrained(default_draft_dir(), dtype=dtype).to(device).eval()
