"""Checks and config resolution that run before `DSparkDraft.from_pretrained` hands over to transformers.

- A local path that does not exist, a folder without ``config.json``, a folder with only pickle
  weights (``*.bin`` / ``*.pt`` / ``*.pth``) or with no weights at all: one clear error each.
- A released-layout ``config.json`` (``Qwen3DSparkModel`` / ``Gemma4DSparkModel``) is translated into a
  :class:`DSparkConfig` and passed to transformers as ``config=``.
- Weights are loaded from safetensors only (``use_safetensors=True``): nothing here unpickles.
- A DeepSeek-V4 repo (``model_type: deepseek_v4``, the drafter is its ``mtp.*`` tensors) is recognised
  by :func:`is_v4_repo`; :mod:`dspark_hf.models.deepseek_v4` loads it instead of transformers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dspark_hf.models.dspark.configuration_dspark import DSparkConfig
from dspark_hf.errors import CheckpointError
from dspark_hf.models.dspark.released_format import from_released_config, is_released_config

_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def check_local_folder(folder: Path) -> None:
    if not folder.exists():
        raise CheckpointError(f"No draft checkpoint at {folder}: the path does not exist.")
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is a file; pass the folder that holds config.json and *.safetensors.")
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder} has no config.json; it is not a draft checkpoint folder.")
    files = [p.name for p in folder.iterdir()]
    # transformers' weight names: model.safetensors, model.<variant>.safetensors, sharded with an index.
    if any(name.startswith("model") and name.endswith((".safetensors", ".safetensors.index.json")) for name in files):
        return
    pickles = [name for name in files if name.endswith(_PICKLE_SUFFIXES)]
    if pickles:
        raise CheckpointError(
            f"{folder} holds only pickle weights ({', '.join(sorted(pickles))}); dspark_hf loads safetensors only. "
            "Convert them with safetensors.torch.save_file and try again."
        )
    raise CheckpointError(f"{folder} has no model*.safetensors weights.")


def read_config_dict(path: str | os.PathLike, **hub_kwargs: Any) -> dict[str, Any]:
    """The raw config.json of a local folder or Hub repo."""
    local = Path(path)
    if local.is_dir():
        config_file = local / hub_kwargs.get("subfolder", "") / "config.json"
    else:
        from transformers.utils import cached_file

        try:
            config_file = Path(cached_file(str(path), "config.json", **hub_kwargs))
        except OSError as err:
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"Cannot find a draft named {path!s} locally or on the Hub: {first_line}") from None
    try:
        return json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{config_file} is not valid JSON: {err}.") from None


def is_local_path(path: str | os.PathLike) -> bool:
    """A path that exists, or that cannot be a Hub id (``owner/name`` has exactly one slash)."""
    text = str(path)
    return Path(text).expanduser().exists() or text.startswith((".", "/", "~")) or text.count("/") > 1


def is_v4_repo(path: str | os.PathLike, kwargs: dict[str, Any]) -> bool:
    """Whether ``path`` (local folder or Hub id) is a DeepSeek-V4 repo, whose drafter is ``mtp.*``."""
    from dspark_hf.models.deepseek_v4.checkpoint import is_v4_config

    if kwargs.get("config") is not None:
        return False
    if is_local_path(path):
        folder = Path(path).expanduser() / kwargs.get("subfolder", "")
        if not (folder / "config.json").is_file():
            return False  # prepare_from_pretrained reports what is wrong with the folder
        return is_v4_config(read_config_dict(folder))
    return is_v4_config(read_config_dict(path, **{k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}))


def prepare_from_pretrained(path: str | os.PathLike, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Validate ``path`` and return the kwargs to give transformers' ``from_pretrained``."""
    kwargs = dict(kwargs)
    looks_local = is_local_path(path)
    if looks_local:
        check_local_folder(Path(path).expanduser() / kwargs.get("subfolder", ""))
    if kwargs.get("config") is None:
        hub_kwargs = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
        raw = read_config_dict(Path(path).expanduser() if looks_local else path, **hub_kwargs)
        if is_released_config(raw):
            kwargs["config"] = from_released_config(raw, source=f"{path}/config.json")
        elif raw.get("model_type") != DSparkConfig.model_type:
            raise CheckpointError(
                f"{path} is not a DSpark draft: its config has model_type={raw.get('model_type')!r} and "
                f"architectures={raw.get('architectures')}."
            )
    if kwargs.get("use_safetensors") is False:
        raise CheckpointError("dspark_hf loads safetensors only; use_safetensors=False is not supported.")
    kwargs["use_safetensors"] = True
    return kwargs
