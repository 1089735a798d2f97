"""Training checkpoints that resume exactly: the draft's trainable weights (safetensors), the
optimizer and scheduler states, every RNG state and the step reached (which fixes the data position,
since data order and anchors are derived from the seed and the step).

A checkpoint is written to a temporary folder and renamed into place, so a run killed while saving
leaves the previous checkpoint intact; ``latest_checkpoint`` finds the newest complete one.

Under FSDP (see :mod:`.fsdp`) the model and optimizer are saved sharded by every process into
``SHARDED_DIR`` (``torch.distributed.checkpoint``), next to the same full ``draft.safetensors``,
scheduler, RNG and step files; the pieces below (``stage`` -> write -> ``commit``) let the trainer run
the collective part between them. ``save_checkpoint`` / ``load_checkpoint`` are the single-writer case.
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
SHARDED_DIR = "sharded"  # FSDP: model + optimizer state written by torch.distributed.checkpoint


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


def staging_path(directory: str | Path, step: int) -> Path:
    """Where checkpoint ``step`` is written before :func:`commit_checkpoint` renames it into place."""
    return Path(directory) / f".tmp-{PREFIX}{step}"


def stage_checkpoint(directory: str | Path, step: int) -> Path:
    """A fresh, empty staging folder for checkpoint ``step`` (main process only)."""
    tmp = staging_path(directory, step)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def write_training_state(folder: str | Path, step: int, scheduler, draft_state: dict[str, torch.Tensor] | None = None,
                         optimizer=None, extra: dict | None = None) -> None:
    """Write the draft's trainable weights (if given), the optimizer (if given; FSDP saves it sharded
    instead), scheduler, RNG states and, last, ``trainer_state.json`` with the step."""
    folder = Path(folder)
    if draft_state is not None:
        save_file(draft_state, str(folder / "draft.safetensors"))
    if optimizer is not None:
        torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    torch.save(scheduler.state_dict(), folder / "scheduler.pt")
    _save_rng_state(folder)
    (folder / "trainer_state.json").write_text(json.dumps({"step": step, **(extra or {})}, indent=1))


def commit_checkpoint(directory: str | Path, step: int, keep: int = 2) -> Path:
    """Rename the staged checkpoint ``step`` into place and keep only the ``keep`` newest."""
    directory = Path(directory)
    final = directory / f"{PREFIX}{step}"
    shutil.rmtree(final, ignore_errors=True)
    staging_path(directory, step).rename(final)
    for old in list_checkpoints(directory)[:-keep] if keep else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_checkpoint(directory: str | Path, step: int, draft, optimizer, scheduler, keep: int = 2, extra: dict | None = None) -> Path:
    """Write ``directory/checkpoint-{step}`` atomically and keep only the ``keep`` newest."""
    tmp = stage_checkpoint(directory, step)
    write_training_state(tmp, step, scheduler, draft_state=trainable_state(draft), optimizer=optimizer, extra=extra)
    return commit_checkpoint(directory, step, keep)


def is_sharded(path: str | Path) -> bool:
    """Whether checkpoint ``path`` was written under FSDP."""
    return (Path(path) / SHARDED_DIR).is_dir()


def list_checkpoints(directory: str | Path) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / "trainer_state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def latest_checkpoint(directory: str | Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def load_training_position(path: str | Path, scheduler) -> int:
    """Restore the scheduler and the RNGs of checkpoint ``path``; returns its step."""
    path = Path(path)
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    _load_rng_state(path)
    return int(json.loads((path / "trainer_state.json").read_text())["step"])


def load_checkpoint(path: str | Path, draft, optimizer, scheduler) -> int:
    """Restore a checkpoint into ``draft`` / ``optimizer`` / ``scheduler`` and the RNGs; returns its step."""
    from dspark_hf.errors import CheckpointError

    path = Path(path)
    if is_sharded(path):
        raise CheckpointError(f"Checkpoint {path} was written under FSDP: resume it with FSDP (accelerate launch --use_fsdp ...).")
    state = load_file(str(path / "draft.safetensors"))
    missing, unexpected = draft.load_state_dict(state, strict=False)
    if unexpected or set(trainable_state(draft)) - set(state):
        raise CheckpointError(f"Checkpoint {path} does not match this draft (unexpected {unexpected[:3]}).")
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    return load_training_position(path, scheduler)
