"""Training checkpoints that resume exactly: the draft's trainable weights (safetensors), the
optimizer and scheduler states, every RNG state and the step reached (which fixes the data position,
since data order and anchors are derived from the seed and the step).

A checkpoint is written to a temporary folder and renamed into place, so a run killed while saving
leaves the previous checkpoint intact; ``latest_checkpoint`` finds the newest complete one.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

PREFIX = "checkpoint-"


def trainable_state(draft) -> dict[str, torch.Tensor]:
    """The draft's parameters that training updates (target-owned embeddings excluded)."""
    names = {name for name, p in draft.named_parameters() if p.requires_grad}
    return {k: v.detach().cpu().contiguous() for k, v in draft.state_dict().items() if k in names}


def _save_rng_state(folder: Path) -> None:
    """Torch (and CUDA) generator states as safetensors, Python's and NumPy's as JSON: no pickle."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(tensors, str(folder / "rng.safetensors"))
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    (folder / "rng.json").write_text(
        json.dumps({"python": [version, list(internal), gauss], "numpy": [kind, keys.tolist(), pos, has_gauss, cached]})
    )


def _load_rng_state(folder: Path) -> None:
    tensors = load_file(str(folder / "rng.safetensors"))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors) - 1)]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    state = json.loads((folder / "rng.json").read_text())
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_checkpoint(directory: str | Path, step: int, draft, optimizer, scheduler, keep: int = 2, extra: dict | None = None) -> Path:
    """Write ``directory/checkpoint-{step}`` atomically and keep only the ``keep`` newest."""
    directory = Path(directory)
    final = directory / f"{PREFIX}{step}"
    tmp = directory / f".tmp-{PREFIX}{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(trainable_state(draft), str(tmp / "draft.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    _save_rng_state(tmp)
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **(extra or {})}, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in list_checkpoints(directory)[:-keep] if keep else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(directory: str | Path) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / "trainer_state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def latest_checkpoint(directory: str | Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def load_checkpoint(path: str | Path, draft, optimizer, scheduler) -> int:
    """Restore a checkpoint into ``draft`` / ``optimizer`` / ``scheduler`` and the RNGs; returns its step."""
    path = Path(path)
    state = load_file(str(path / "draft.safetensors"))
    missing, unexpected = draft.load_state_dict(state, strict=False)
    if unexpected or set(trainable_state(draft)) - set(state):
        from ..errors import CheckpointError

        raise CheckpointError(f"Checkpoint {path} does not match this draft (unexpected {unexpected[:3]}).")
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    _load_rng_state(path)
    return int(json.loads((path / "trainer_state.json").read_text())["step"])
