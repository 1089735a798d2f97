"""Checks of a draft checkpoint's files, run before any model is built.

- :func:`is_local_path`: whether a name is a local path (a Hub draft id is ``owner/name``);
- :func:`check_local_folder`: the folder exists, is a folder, has ``config.json`` and safetensors
  weights (a pickle-only or weightless folder gets its own error);
- :func:`load_config_json`: the config.json object of a folder;
- :func:`safetensors_layout`: every tensor's name, shape and file, read from the safetensors headers
  (single file or sharded with an index), so a truncated or damaged file, a shard the index names but
  the folder lacks, or an index entry its shard does not hold is one line naming the file.

Every problem is one :class:`~dspark_hf.errors.CheckpointError` line.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from dspark_hf.errors import CheckpointError
from dspark_hf.json_types import json_kind

CONFIG_NAME = "config.json"
SINGLE_WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_hub_id(text: str) -> bool:
    """``owner/name`` in the Hub's repo-id characters."""
    return bool(_HUB_ID.match(text)) and ".." not in text


def is_local_path(path: str | os.PathLike, bare_names_are_local: bool = True) -> bool:
    """Whether ``path`` names a local folder rather than a Hub repo.

    A path that exists is local; so is anything that cannot be a Hub id: starting with ``.``, ``/`` or
    ``~``, or with more than one ``/``. A bare name without an owner (``my_draft``) is local when
    ``bare_names_are_local`` (drafts on the Hub are always ``owner/name``), so a mistyped folder fails
    at once instead of being looked up on the Hub.
    """
    text = str(path)
    if isinstance(path, os.PathLike) or Path(text).expanduser().exists() or text.startswith((".", "/", "~")):
        return True
    if text.count("/") == 0:
        return bare_names_are_local
    return not looks_like_hub_id(text)


def check_local_folder(folder: Path) -> None:
    """One line when ``folder`` is not a loadable draft folder (see the module docstring)."""
    if not folder.exists():
        raise CheckpointError(f"No draft checkpoint at {folder}: the path does not exist.")
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is a file; pass the folder that holds config.json and *.safetensors.")
    if not (folder / CONFIG_NAME).is_file():
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


def load_config_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; one line when it is not valid JSON or not an object."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}.") from None
    except OSError as err:
        raise CheckpointError(f"Cannot read {path}: {err.strerror or err}.") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} holds {json_kind(value)}, not an object of config keys.")
    return value


def _header(path: Path) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` from a safetensors file's header, checking the file is whole."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise CheckpointError(f"{path} is missing.")
    try:
        with safe_open(path, framework="pt") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or damaged?): {reason}.") from None


def safetensors_layout(folder: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{tensor name: (file name, shape)}`` of the weights in ``folder`` (single file or sharded)."""
    folder = Path(folder)
    if (folder / SINGLE_WEIGHTS).is_file():
        return {name: (SINGLE_WEIGHTS, shape) for name, shape in _header(folder / SINGLE_WEIGHTS).items()}
    index_path = folder / WEIGHTS_INDEX
    if not index_path.is_file():
        raise CheckpointError(f"{folder} has no {SINGLE_WEIGHTS} or {WEIGHTS_INDEX}.")
    weight_map = load_config_json(index_path).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{index_path} has no weight_map of tensor names to shard files.")
    layout: dict[str, tuple[str, tuple[int, ...]]] = {}
    for shard in sorted(set(weight_map.values())):
        if Path(shard).name != shard:
            raise CheckpointError(f"{index_path} names a shard outside the folder: {shard!r}.")
        header = _header(folder / shard)
        for name, file in weight_map.items():
            if file == shard:
                if name not in header:
                    raise CheckpointError(f"{index_path} puts {name} in {shard}, which does not hold it.")
                layout[name] = (shard, header[name])
    return layout
