"""The tree is the architecture (issue #14): each package says what it holds, and imports only point inward."""
from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "core.model", "core.rules", "core.adapters", "core.workers", "core.ops", "core.generate")

# What each layer may import from the project (besides itself). model and rules are pure; adapters are the edges;
# workers and ops use both; nothing in core reaches the composition root except ops' CLI (it is one).
ALLOWED = {
    "core/model": ("core.errors", "core.model"),
    "core/rules": ("core.errors", "core.model", "core.rules", "core.generate.component", "core.generate.config"),
    "core/adapters": ("core", "core.errors", "core.settings", "core.telemetry", "core.model", "core.rules",
                      "core.adapters"),
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("name", PACKAGES)
def test_each_package_states_its_purpose_and_its_public_names(name):
    package = importlib.import_module(name)
    assert (package.__doc__ or "").strip(), f"{name}/__init__.py has no docstring"
    if name == "core.generate":
        assert package.__all__   # a package of functions: its public names, not its modules
        return
    modules = {info.name for info in pkgutil.iter_modules(package.__path__)}
    assert set(package.__all__) == modules, f"{name}.__all__ must list exactly its modules"


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_point_inward(layer):
    allowed = ALLOWED[layer]
    offenders = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for module in _imports(path):
            if module == "core" or module.startswith("core."):
                if not any(module == ok or (ok != "core" and module.startswith(ok + ".")) for ok in allowed):
                    offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


def test_nothing_in_core_imports_azure_functions():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "core").rglob("*.py")
                 if any(m == "azure.functions" or m.startswith("azure.functions.") for m in _imports(p))]
    assert offenders == []
