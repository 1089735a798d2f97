"""Calibration metrics of probability predictions ``p`` against binary outcomes ``y`` (1-D tensors).

ECE uses ``bins`` equal-width bins over [0, 1]: ``sum_b (n_b / n) |mean(p_b) - mean(y_b)|``. AUROC is
the Mann-Whitney statistic with tied scores counted one half (NaN when one class is absent). Brier is
``mean((p - y)^2)``.
"""

from __future__ import annotations

import math

import torch

DEFAULT_BINS = 15


def _bin_index(p: torch.Tensor, bins: int) -> torch.Tensor:
    return (p.double() * bins).long().clamp(0, bins - 1)


def reliability_bins(p: torch.Tensor, y: torch.Tensor, bins: int = DEFAULT_BINS) -> list[tuple[float, float, int]]:
    """``(mean prediction, observed frequency, count)`` of every non-empty bin."""
    idx = _bin_index(p, bins)
    out = []
    for b in range(bins):
        mask = idx == b
        n = int(mask.sum())
        if n:
            out.append((float(p[mask].double().mean()), float(y[mask].double().mean()), n))
    return out


def expected_calibration_error(p: torch.Tensor, y: torch.Tensor, bins: int = DEFAULT_BINS) -> float:
    if p.numel() == 0:
        return float("nan")
    return sum(n * abs(conf - freq) for conf, freq, n in reliability_bins(p, y, bins)) / p.numel()


def auroc(p: torch.Tensor, y: torch.Tensor) -> float:
    p, y = p.double().flatten(), y.bool().flatten()
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = torch.argsort(p)
    sorted_p = p[order]
    ranks = torch.empty_like(p)
    ranks[order] = torch.arange(1, p.numel() + 1, dtype=torch.float64)
    # average ranks over ties
    unique, inverse, counts = torch.unique(sorted_p, return_inverse=True, return_counts=True)
    if unique.numel() < p.numel():
        ends = torch.cumsum(counts, 0).double()
        average = ends - (counts.double() - 1) / 2
        ranks[order] = average[inverse]
    rank_sum = float(ranks[y].sum())
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def brier(p: torch.Tensor, y: torch.Tensor) -> float:
    if p.numel() == 0:
        return float("nan")
    return float(((p.double() - y.double()) ** 2).mean())


def summary(p: torch.Tensor, y: torch.Tensor, bins: int = DEFAULT_BINS) -> dict[str, float]:
    """``{"ece", "auroc", "brier", "n", "rate"}`` (``rate``: observed positive frequency)."""
    return {
        "ece": expected_calibration_error(p, y, bins),
        "auroc": auroc(p, y),
        "brier": brier(p, y),
        "n": int(p.numel()),
        "rate": float(y.double().mean()) if p.numel() else math.nan,
    }
