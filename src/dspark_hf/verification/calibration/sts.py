"""Sequential temperature scaling (DSpark paper, section on confidence calibration).

Data: one row per drafting round, ``logits [N, gamma]`` (pre-sigmoid confidences of the slots) and
``verified [N]`` / ``accepted [N]`` (how many slots the target checked, how many it accepted, from the
left). Slot ``k``'s outcome is ``y_k = 1[k < accepted]`` (the first ``k + 1`` drafted tokens all
survived), known only where ``k < verified``. The prediction for it is the cumulative product
``a_k = prod_{i<=k} sigmoid(l_i / T_i)``.

Fitting goes left to right: for slot ``k`` every grid temperature is tried with ``T_0 .. T_{k-1}``
fixed at their chosen values, and the one with the lowest ECE of ``a_k`` is kept (ties: the one
closest to 1).
"""

from __future__ import annotations

import math

import torch

from dspark_hf.verification.calibration.metrics import DEFAULT_BINS, expected_calibration_error

DEFAULT_GRID = tuple(float(t) for t in torch.logspace(-1.0, 1.0, 81, dtype=torch.float64).tolist())  # 0.1 .. 10


def outcomes(verified: torch.Tensor, accepted: torch.Tensor, gamma: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y [N, gamma] bool, known [N, gamma] bool)`` from per-round verified / accepted counts."""
    k = torch.arange(gamma)[None]
    return k < accepted[:, None], k < verified[:, None]


def survival_predictions(logits: torch.Tensor, temperatures) -> torch.Tensor:
    """``a [N, gamma]``: cumulative products of the tempered per-slot confidences."""
    temps = torch.as_tensor(list(temperatures), dtype=torch.float64)
    return torch.cumprod(torch.sigmoid(logits.double() / temps[None]), dim=1)


def fit_sequential_temperatures(
    logits: torch.Tensor, verified: torch.Tensor, accepted: torch.Tensor, grid=DEFAULT_GRID, bins: int = DEFAULT_BINS
) -> list[float]:
    """One temperature per slot, fitted left to right (see the module docstring). Slots with no known
    outcome keep ``T = 1``."""
    gamma = logits.shape[1]
    y, known = outcomes(verified, accepted, gamma)
    logits = logits.double()
    chosen: list[float] = []
    running = torch.ones(logits.shape[0], dtype=torch.float64)  # a_{k-1} with the chosen temperatures
    for k in range(gamma):
        mask = known[:, k]
        best_t = 1.0
        if bool(mask.any()):
            best_ece = float("inf")
            for t in sorted(grid, key=lambda t: abs(math.log(t))):  # ties: the mildest temperature
                pred = running[mask] * torch.sigmoid(logits[mask, k] / t)
                ece = expected_calibration_error(pred, y[mask, k], bins)
                if ece < best_ece - 1e-12:
                    best_ece, best_t = ece, float(t)
        chosen.append(best_t)
        running = running * torch.sigmoid(logits[:, k] / best_t)
    return chosen
