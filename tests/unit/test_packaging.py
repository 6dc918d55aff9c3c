"""The Lambda layer's requirements (layers/hub/requirements.txt) and the project's dependencies
(pyproject.toml) say the same thing: every pin of the layer is a dependency of the project with a
range that admits it, every runtime dependency of the project is pinned in the layer, and the
client-only ones (the fapiao-hub command's) are not in the layer, nor pulled into it.

The layer is judged from requirements.txt and the metadata of the installed distributions, not from
a `sam build` (make sam-build imports every handler from the built layer)."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
LAYER_REQUIREMENTS = ROOT / "layers" / "hub" / "requirements.txt"
PACKAGE = ROOT / "layers" / "hub" / "python" / "fapiao_hub"
CLIENT_MODULES = set((ROOT / "client" / "fapiao_hub_client").rglob("*.py"))  # the command: never in Lambda


def layer_requirements() -> dict[str, Requirement]:
    lines = LAYER_REQUIREMENTS.read_text(encoding="utf-8").splitlines()
    requirements = [Requirement(line.split("#", 1)[0]) for line in lines if line.split("#", 1)[0].strip()]
    by_name = {canonicalize_name(r.name): r for r in requirements}
    assert len(by_name) == len(requirements), "a package pinned twice in requirements.txt"
    return by_name


def project_dependencies() -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in map(Requirement, PYPROJECT["project"]["dependencies"])}


def client_only() -> set[str]:
    return {canonicalize_name(name) for name in PYPROJECT["tool"]["fapiao-hub"]["packaging"]["client-only"]}


def pinned_version(requirement: Requirement) -> str:
    [spec] = requirement.specifier
    assert spec.operator == "==" and "*" not in spec.version, f"{requirement} is not pinned to one version"
    return spec.version


def closure(requirements: Iterable[Requirement]) -> set[str]:
    """Every distribution that installing ``requirements`` brings (from the installed metadata)."""
    seen: set[str] = set()
    pending = [(r, frozenset(r.extras)) for r in requirements]
    while pending:
        requirement, extras = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in seen and not extras:
            continue
        seen.add(name)
        for raw in importlib.metadata.requires(requirement.name) or []:
            dependency = Requirement(raw)
            marker: Marker | None = dependency.marker
            wanted = marker is None or any(marker.evaluate({"extra": extra}) for extra in (*extras, ""))
            if wanted:
                pending.append((dependency, frozenset(dependency.extras)))
    return seen


def _guarded(tree: ast.AST) -> set[int]:
    """ids of the import statements inside ``try: ... except ImportError`` (optional imports)."""
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers
        ):
            guarded |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    return guarded


def third_party_imports(paths: Iterable[Path], *, optional: bool = True) -> dict[str, set[Path]]:
    """Top-level names of the modules ``paths`` import (not the standard library, not fapiao_hub);
    ``optional=False`` leaves out the imports guarded by ``except ImportError``."""
    found: dict[str, set[Path]] = {}
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skip = set() if optional else _guarded(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".", 1)[0]
                if top not in sys.stdlib_module_names and top not in ("fapiao_hub", "app", "__future__"):
                    found.setdefault(top, set()).add(path)
    return found


def runtime_sources() -> list[Path]:
    """What runs in Lambda: the layer's package but the command, and each function's handler."""
    return [p for p in PACKAGE.rglob("*.py") if p not in CLIENT_MODULES] + sorted(ROOT.glob("functions/*/*.py"))


@functools.cache
def _module_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()  # scans every installed distribution: once


def distributions_of(module: str) -> set[str]:
    return {canonicalize_name(d) for d in _module_distributions().get(module, [])}


# ---------------------------------------------------------------------------- in step
def test_every_pin_of_the_layer_is_a_project_dependency_whose_range_admits_it() -> None:
    project = project_dependencies()
    for name, pin in layer_requirements().items():
        assert name in project, f"requirements.txt pins {pin}, which pyproject.toml's dependencies lack"
        assert name not in client_only(), f"{name} is client-only but the layer pins it"
        version = pinned_version(pin)
        assert project[name].specifier.contains(version, prereleases=True), (
            f"pyproject.toml's {project[name]} does not admit the layer's {pin}"
        )
        assert pin.extras == project[name].extras, f"extras differ: {pin} vs {project[name]}"
        assert pin.marker is None and project[name].marker is None, f"{name}: markers are not expected here"


def test_every_runtime_dependency_of_the_project_is_pinned_in_the_layer() -> None:
    layer = layer_requirements()
    runtime = set(project_dependencies()) - client_only()
    assert sorted(runtime - set(layer)) == [], "pyproject.toml dependencies missing from requirements.txt"


def test_client_only_dependencies_are_marked_and_are_project_dependencies() -> None:
    assert client_only() == {"click"}
    assert client_only() <= set(project_dependencies())


# ---------------------------------------------------------------------------- what the layer holds
def test_the_layer_brings_neither_click_nor_pyyaml() -> None:
    # click: the CLI is client-only. PyYAML: only the local run and tests read template.yaml.
    shipped = closure(layer_requirements().values())
    assert {"boto3", "aws-xray-sdk", "pydantic-core"} <= shipped  # the walk follows extras and dependencies
    assert shipped.isdisjoint({"click", "pyyaml"}), sorted(shipped & {"click", "pyyaml"})


def test_every_pin_of_the_layer_is_imported_by_code_that_runs_in_lambda() -> None:
    # A package nothing imports is weight in every cold start's layer (PyYAML was one).
    imported = set().union(*(distributions_of(module) for module in third_party_imports(runtime_sources())))
    assert sorted(set(layer_requirements()) - imported) == []


def test_everything_code_in_lambda_imports_comes_with_the_layer() -> None:
    shipped = closure(layer_requirements().values())
    for module, paths in sorted(third_party_imports(runtime_sources(), optional=False).items()):
        providers = distributions_of(module)
        assert providers & shipped, f"{module} (imported by {sorted(p.name for p in paths)}) is not in the layer"


def test_the_optional_imports_are_known_and_not_in_the_layer() -> None:
    # Kingdee's aes-gcm envelope needs cryptography; without it the channel refuses to be built
    # (KingdeeConfigError), so a deployment that wants it must add the package to the layer.
    everything = third_party_imports(runtime_sources())
    required = third_party_imports(runtime_sources(), optional=False)
    assert set(everything) - set(required) == {"cryptography"}
    assert "cryptography" not in closure(layer_requirements().values())


def test_only_the_command_imports_click_and_no_runtime_module_imports_the_command() -> None:
    assert "click" not in third_party_imports(runtime_sources())
    assert "click" in third_party_imports(CLIENT_MODULES)
    for path in runtime_sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {
            *(a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names),
            *(f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names),
        }
        assert not any(name.startswith("fapiao_hub_client") for name in imported), f"{path} imports the command"


# ---------------------------------------------------------------------------- the rest of the repository
@pytest.mark.parametrize("directory", ["local", "tests"])
def test_pyyaml_is_a_dependency_of_what_imports_it(directory: str) -> None:
    importers = third_party_imports((ROOT / directory).rglob("*.py")).get("yaml", set())
    assert importers, f"nothing in {directory}/ reads YAML any more: drop PyYAML from the dev extra"
    dev = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    assert "pyyaml" in dev


def test_the_layer_holds_runtime_code_only() -> None:
    """The command and its demo live in their own package (client/), not in the layer's."""
    assert not {"cli.py", "demo.py"} & {p.name for p in PACKAGE.glob("*.py")}
    assert (ROOT / "client" / "fapiao_hub_client" / "cli.py").is_file()
