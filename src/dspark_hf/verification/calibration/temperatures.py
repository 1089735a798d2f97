"""Per-slot confidence temperatures (sequential temperature scaling) and where they are stored.

A calibrated draft carries ``confidence_temperatures`` (one ``T_k`` per slot) in its ``config.json``;
slot ``k``'s calibrated confidence is ``sigmoid(logit(c_k) / T_k)``. Until the draft model applies them
itself, the policies that read confidences as probabilities (survival, hardware) apply them with
:func:`apply_temperatures`; a draft class that already divides its confidence logits declares it with
the class attribute ``applies_confidence_temperatures = True`` and is then left alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

CONFIG_KEY = "confidence_temperatures"


def logit(probabilities: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    p = probabilities.double().clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)


def apply_temperatures(confidences: torch.Tensor, temperatures) -> torch.Tensor:
    """``sigmoid(logit(c_k) / T_k)`` over the last dimension (slots beyond the list keep ``T = 1``)."""
    if temperatures is None:
        return confidences
    temps = torch.ones(confidences.shape[-1], dtype=torch.float64)
    given = torch.as_tensor(list(temperatures)[: confidences.shape[-1]], dtype=torch.float64)
    temps[: given.numel()] = given
    return torch.sigmoid(logit(confidences) / temps.to(confidences.device)).to(confidences.dtype)


def draft_temperatures(draft) -> list[float] | None:
    """The draft's stored temperatures, or ``None`` (uncalibrated, or already applied by the model).

    Read from ``draft.config.confidence_temperatures``; released-format folders, whose config loader
    keeps only the keys it knows, are read back from ``config.json`` in ``draft.name_or_path``."""
    if getattr(type(draft), "applies_confidence_temperatures", False):
        return None
    temps = getattr(draft.config, CONFIG_KEY, None)
    if temps is None:
        folder = Path(str(getattr(draft, "name_or_path", "") or ""))
        config = folder / "config.json"
        if str(folder) and config.is_file():
            try:
                temps = json.loads(config.read_text()).get(CONFIG_KEY)
            except (OSError, ValueError):
                temps = None
    return [float(t) for t in temps] if temps else None


def store_temperatures(draft_dir: Path | str, temperatures: list[float]) -> Path:
    """Write ``confidence_temperatures`` into ``draft_dir/config.json`` (other keys untouched)."""
    path = Path(draft_dir) / "config.json"
    config = json.loads(path.read_text())
    config[CONFIG_KEY] = [float(t) for t in temperatures]
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return path
