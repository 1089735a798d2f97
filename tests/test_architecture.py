"""The package's layering, checked from the source: no import circle (imports inside functions count),
and lower layers never import higher ones.

Layers, bottom up: ``errors`` / ``telemetry`` / ``transformers_compat`` / ``checkpoints`` (files, formats,
the one Hub fetcher) -> ``models`` -> ``drafting`` -> ``verification`` -> ``integration`` -> ``batching``
(speculative continuous batching), ``loading``, ``precision``, ``bundled``, ``hub`` -> ``training``,
``benchmarks``, ``demo`` -> ``cli``. Fails when, e.g., a model
module imports ``dspark_hf.hub`` (as ``v4/checkpoint.py`` did on main) or training imports the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dspark_hf"


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def import_graph() -> dict[str, set[str]]:
    """``{module: modules of dspark_hf it imports}``, anywhere in the file (function bodies included)."""
    files = {(_module_name(p)): p for p in PACKAGE.rglob("*.py")}
    modules = {name for name, _ in files}
    graph: dict[str, set[str]] = {}
    for (name, is_package), path in files.items():
        base = name.split(".") if is_package else name.split(".")[:-1]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else [])) if node.level else node.module or ""
                for candidate in [target] + [f"{target}.{alias.name}" for alias in node.names]:
                    if candidate in modules and candidate != name:
                        deps.add(candidate)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names if alias.name in modules and alias.name != name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    assert cycles(import_graph()) == []


# (layer prefix, prefixes it must not import)
FORBIDDEN = [
    ("dspark_hf.checkpoints", ["dspark_hf.batching", "dspark_hf.precision", "dspark_hf.models", "dspark_hf.drafting", "dspark_hf.verification", "dspark_hf.integration", "dspark_hf.hub", "dspark_hf.cli"]),
    ("dspark_hf.models", ["dspark_hf.batching", "dspark_hf.precision", "dspark_hf.hub", "dspark_hf.verification", "dspark_hf.integration", "dspark_hf.drafting", "dspark_hf.cli", "dspark_hf.training", "dspark_hf.loading"]),
    ("dspark_hf.drafting", ["dspark_hf.batching", "dspark_hf.precision", "dspark_hf.hub", "dspark_hf.verification", "dspark_hf.integration", "dspark_hf.cli"]),
    ("dspark_hf.verification", ["dspark_hf.batching", "dspark_hf.precision", "dspark_hf.hub", "dspark_hf.integration", "dspark_hf.cli", "dspark_hf.training", "dspark_hf.benchmarks", "dspark_hf.bundled", "dspark_hf.loading"]),
    ("dspark_hf.integration", ["dspark_hf.batching", "dspark_hf.precision", "dspark_hf.hub", "dspark_hf.cli", "dspark_hf.training", "dspark_hf.benchmarks", "dspark_hf.demo", "dspark_hf.loading"]),
    ("dspark_hf.batching", ["dspark_hf.precision", "dspark_hf.hub", "dspark_hf.cli", "dspark_hf.training", "dspark_hf.benchmarks", "dspark_hf.demo", "dspark_hf.loading", "dspark_hf.bundled"]),
    ("dspark_hf.precision", ["dspark_hf.hub", "dspark_hf.cli", "dspark_hf.training", "dspark_hf.benchmarks", "dspark_hf.demo", "dspark_hf.loading", "dspark_hf.bundled"]),
    ("dspark_hf.training", ["dspark_hf.cli"]),
    ("dspark_hf.benchmarks", ["dspark_hf.cli"]),
    ("dspark_hf.demo", ["dspark_hf.cli"]),
]


@pytest.mark.parametrize("layer,forbidden", FORBIDDEN, ids=[layer for layer, _ in FORBIDDEN])
def test_lower_layers_never_import_higher_ones(layer, forbidden):
    graph = import_graph()
    offending = sorted(
        f"{module} -> {dep}"
        for module, deps in graph.items()
        if module == layer or module.startswith(layer + ".")
        for dep in deps
        if any(dep == f or dep.startswith(f + ".") for f in forbidden)
    )
    assert offending == []


def test_only_checkpoints_fetch_talks_to_the_hub():
    """One place fetches from the Hub: only ``checkpoints/fetch.py`` downloads (``hf_hub_download`` /
    ``snapshot_download`` / transformers' ``cached_file``); ``hub/push.py`` uploads."""
    users = sorted(
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if any(name in p.read_text() for name in ("hf_hub_download", "snapshot_download", "cached_file("))
    )
    assert users == ["checkpoints/fetch.py"]
