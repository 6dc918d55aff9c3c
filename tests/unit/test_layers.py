"""The layer's floors (docs/architecture.md): the import contracts in pyproject.toml hold, and no
module of the layer is part of an import cycle (imports inside functions count: a cycle is a cycle)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import grimp

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative: the graph is small,
    and grimp 3.x has no cycle finder of its own)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_import_contracts_hold():
    """`lint-imports` (import-linter) with the contracts in pyproject.toml: no import points up a floor."""
    lint = pathlib.Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False,  # noqa: S603
                         env={"NO_COLOR": "1", "PATH": str(lint.parent)})  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr


def test_no_module_of_the_layer_is_in_an_import_cycle():
    graph = grimp.build_graph("fapiao_hub", cache_dir=None)
    assert _cycles(graph) == []
