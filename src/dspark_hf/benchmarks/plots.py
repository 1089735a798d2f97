"""PNG figures of a benchmark report (matplotlib, Agg backend; nothing is shown on screen).

- ``acceptance_per_slot.png``: per-slot acceptance (survival to slot ``k``) against ``k``, one line
  per method, pooled over datasets;
- ``tau_per_dataset.png``: tau per dataset, one bar per method;
- ``speedup_per_method.png``: median speed-up over plain generation per method and dataset, whiskers
  from the first to the third quartile of the per-prompt speed-ups;
- cost mode, ``cost_speedup.png``: measured speed-up against verified length ``L``, next to the ideal
  ``L + 1``.
"""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(report: dict, row: dict) -> str:
    """The method's label, with its suite (target) when the report has several."""
    return row["label"] if len(report.get("suites", [])) <= 1 else f"{row['label']} [{row['suite']}]"


def _pooled_rows(report: dict) -> list[dict]:
    """Per suite, its pooled "all" rows, or its rows when it ran one dataset."""
    out = []
    for suite in dict.fromkeys(r["suite"] for r in report["results"]):
        rows = [r for r in report["results"] if r["suite"] == suite]
        out += [r for r in rows if r["dataset"] == "all"] or rows
    return out


def _legend_outside(ax) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def acceptance_per_slot(report: dict, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9.0, 4.0))
    drew = False
    rows = [r for r in _pooled_rows(report) if r["per_slot_acceptance"]]
    for r, colour in zip(rows, method_colours(len(rows))):
        values = r["per_slot_acceptance"]
        ks = [k + 1 for k, v in enumerate(values) if v is not None]
        ax.plot(ks, [v for v in values if v is not None], marker="o", label=f"{_label(report, r)} ({r['dataset']})", linewidth=1.2,
                color=colour)
        drew = True
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("slot k")
    ax.set_ylabel("acceptance (survival to slot k)")
    ax.set_ylim(0, 1.02)
    ax.set_title("Per-slot acceptance")
    if drew:
        _legend_outside(ax)
    else:
        ax.text(0.5, 0.5, "no drafting rounds", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)


def method_colours(count: int) -> list:
    """``count`` distinct colours: matplotlib's tab10 up to 10 methods, tab20 up to 20, then a
    continuous map (``--policies all`` measures 13 methods or more)."""
    from matplotlib import colormaps

    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [colormaps["tab20"](i) for i in range(count)]
    return [colormaps["turbo"](i / (count - 1)) for i in range(count)]


def _grouped_bars(ax, datasets, methods, value, errors=None):
    width = 0.8 / max(1, len(methods))
    colours = method_colours(len(methods))
    for j, (mid, label) in enumerate(methods):
        xs = [i + (j - (len(methods) - 1) / 2) * width for i in range(len(datasets))]
        ys = [value(d, mid) for d in datasets]
        yerr = None
        if errors is not None:
            lo_hi = [errors(d, mid) for d in datasets]
            yerr = [[max(0.0, y - lo) for y, (lo, _) in zip(ys, lo_hi)], [max(0.0, hi - y) for y, (_, hi) in zip(ys, lo_hi)]]
        ax.bar(xs, ys, width=width, label=label, yerr=yerr, capsize=2 if yerr else 0, color=colours[j])
    ax.set_xticks(range(len(datasets)))
    ax.set_xticklabels(datasets, fontsize=8)


def _index(report: dict):
    rows = report["results"]
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    methods = list(dict.fromkeys(((r["suite"], r["method"]), _label(report, r)) for r in rows))
    by = {(r["dataset"], (r["suite"], r["method"])): r for r in rows}
    return datasets, methods, by


def tau_per_dataset(report: dict, path: Path) -> Path:
    plt = _pyplot()
    datasets, methods, by = _index(report)
    fig, ax = plt.subplots(figsize=(9.5, 4.0))
    _grouped_bars(ax, datasets, methods, lambda d, m: (by.get((d, m)) or {}).get("tau") or 0.0)
    ax.set_ylabel("tau (tokens per verification round)")
    ax.set_title("tau per dataset")
    _legend_outside(ax)
    return _save(fig, path)


def speedup_per_method(report: dict, path: Path) -> Path:
    plt = _pyplot()
    datasets, methods, by = _index(report)

    def value(d, m):
        return ((by.get((d, m)) or {}).get("speedup") or {}).get("median") or 0.0

    def errors(d, m):
        s = (by.get((d, m)) or {}).get("speedup") or {}
        v = value(d, m)
        return (s.get("q25", v) or v, s.get("q75", v) or v)

    fig, ax = plt.subplots(figsize=(9.5, 4.0))
    _grouped_bars(ax, datasets, methods, value, errors)
    ax.axhline(1.0, color="0.4", linewidth=0.8, linestyle="--")
    ax.set_ylabel("speed-up over plain generate (median, IQR)")
    ax.set_title("Speed-up per method")
    _legend_outside(ax)
    return _save(fig, path)


def cost_speedup(report: dict, path: Path) -> Path:
    plt = _pyplot()
    results = report["cost"]["results"]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    lengths = sorted({r["length"] for r in results})
    ax.plot(lengths, [length + 1 for length in lengths], linestyle="--", color="0.5", label="ideal L + 1")
    for policy in dict.fromkeys(r["policy"] for r in results):
        mine = sorted((r for r in results if r["policy"] == policy), key=lambda r: r["length"])
        xs = [r["length"] for r in mine]
        med = [r["speedup"]["median"] for r in mine]
        lo = [r["speedup"]["median"] - r["speedup"]["q25"] for r in mine]
        hi = [r["speedup"]["q75"] - r["speedup"]["median"] for r in mine]
        ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3, label=f"measured ({policy})")
    ax.set_xlabel("verified length L (all accepted)")
    ax.set_ylabel("speed-up over plain generate")
    ax.set_title(f"Cost mode: {report['cost']['target_shape']} on {report['machine']['device_name']}", fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, path)


def write_plots(report: dict, folder: Path | str) -> list[Path]:
    """All figures that apply to the report's mode, in ``folder``."""
    folder = Path(folder)
    if report.get("mode") == "cost":
        return [cost_speedup(report, folder / "cost_speedup.png")]
    return [
        acceptance_per_slot(report, folder / "acceptance_per_slot.png"),
        tau_per_dataset(report, folder / "tau_per_dataset.png"),
        speedup_per_method(report, folder / "speedup_per_method.png"),
    ]
