"""Before/after STS: per-slot metrics of the survival predictions and a reliability diagram (PNG)."""

from __future__ import annotations

from pathlib import Path

import torch

from dspark_hf.verification.calibration.metrics import DEFAULT_BINS, reliability_bins, summary
from dspark_hf.verification.calibration.sts import outcomes, survival_predictions


def per_slot_metrics(logits: torch.Tensor, verified: torch.Tensor, accepted: torch.Tensor, temperatures, bins: int = DEFAULT_BINS) -> list[dict]:
    """For each slot ``k``: ECE, AUROC, Brier of ``a_k`` against ``y_k`` over rounds that verified slot ``k``."""
    gamma = logits.shape[1]
    y, known = outcomes(verified, accepted, gamma)
    a = survival_predictions(logits, temperatures)
    return [{"slot": k + 1, **summary(a[known[:, k], k], y[known[:, k], k], bins)} for k in range(gamma)]


def format_table(before: list[dict], after: list[dict], temperatures) -> str:
    lines = ["slot  T      n     accept   ECE before/after   AUROC before/after   Brier before/after"]
    for b, a, t in zip(before, after, temperatures):
        lines.append(
            f"{b['slot']:>4}  {t:<5.2f} {b['n']:>5}  {b['rate']:>6.3f}   {b['ece']:.4f} / {a['ece']:.4f}    "
            f"{b['auroc']:.4f} / {a['auroc']:.4f}      {b['brier']:.4f} / {a['brier']:.4f}"
        )
    mean = lambda rows, key: sum(r[key] * r["n"] for r in rows) / max(1, sum(r["n"] for r in rows))  # noqa: E731
    lines.append(
        f"all         {sum(r['n'] for r in before):>5}           {mean(before, 'ece'):.4f} / {mean(after, 'ece'):.4f}    "
        f"(n-weighted)          {mean(before, 'brier'):.4f} / {mean(after, 'brier'):.4f}"
    )
    return "\n".join(lines)


def reliability_diagram(logits, verified, accepted, temperatures, path: Path | str, title: str = "", bins: int = DEFAULT_BINS) -> Path:
    """One panel per slot: observed survival frequency against predicted ``a_k``, before (T = 1) and
    after STS, with the diagonal; marker area grows with the bin's count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gamma = logits.shape[1]
    y, known = outcomes(verified, accepted, gamma)
    before = survival_predictions(logits, [1.0] * gamma)
    after = survival_predictions(logits, temperatures)
    cols = min(gamma, 4)
    rows = (gamma + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for k in range(gamma):
        ax = axes[k // cols][k % cols]
        mask = known[:, k]
        ax.plot([0, 1], [0, 1], color="0.6", linewidth=1, linestyle="--")
        for preds, label, color in ((before, "before", "tab:red"), (after, f"after (T={temperatures[k]:.2f})", "tab:blue")):
            points = reliability_bins(preds[mask, k], y[mask, k], bins)
            if points:
                xs, ys, ns = zip(*points)
                ax.plot(xs, ys, marker="o", color=color, label=label, linewidth=1)
                ax.scatter(xs, ys, s=[10 + 200 * n / max(ns) for n in ns], color=color, alpha=0.3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"slot {k + 1} (n={int(mask.sum())})", fontsize=9)
        ax.set_xlabel("predicted a_k", fontsize=8)
        ax.set_ylabel("observed survival", fontsize=8)
        ax.legend(fontsize=7, loc="upper left")
    for k in range(gamma, rows * cols):
        axes[k // cols][k % cols].axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
