"""The house rules of protlc's import graph: no cycles, imports only run downwards, Lightning stays in training.

The graph is read from the source (every ``import`` and ``from ... import``, including those inside
functions), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "protlc"

# Lower layers never import higher ones; within one layer, only modules of the same package import each other.
LAYERS = (
    ("protlc", "protlc.errors", "protlc.columns", "protlc.validate", "protlc.atomic", "protlc.jsonio",
     "protlc.alphabet", "protlc.progress"),
    ("protlc.data", "protlc.losses", "protlc.metrics", "protlc.calibration", "protlc.homology",
     "protlc.unknown"),
    ("protlc.model", "protlc.dms.mutations", "protlc.dms.tables", "protlc.dms.splits", "protlc.dms.ridge",
     "protlc.dms.rejects", "protlc.dms.encoding", "protlc.dms.library"),
    ("protlc.inference", "protlc.dms.epistasis"),
    ("protlc.predict", "protlc.audit", "protlc.dms.scoring", "protlc.training"),
    ("protlc.reproduce",),
    ("protlc.cli",),
    ("protlc.__main__",),
)
LIGHTNING = ("pytorch_lightning", "lightning", "torchmetrics")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str] = frozenset()) -> set[str]:
    """Absolute names of what ``path`` imports: ``from a import b`` is module ``a.b`` when that is one of
    ``modules``, else ``a`` itself."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in modules else node.module)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path, set(files)) if m in files and m != name} for name, path in files.items()}


def _layer(module: str) -> tuple[int, str]:
    """``(layer index, the layer entry the module belongs to)``, by the longest matching prefix."""
    best = None
    for index, layer in enumerate(LAYERS):
        for prefix in layer:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > len(best[1]):
                    best = (index, prefix)
    assert best is not None, f"{module} is in no layer of LAYERS: place it"
    return best


GRAPH = _graph()


def test_every_module_has_a_layer():
    for module in GRAPH:
        _layer(module)


def test_no_import_cycles():
    # Tarjan's strongly connected components; any component of more than one module is a cycle
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in GRAPH[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert cycles == []


def test_imports_only_run_downwards():
    upward = []
    for module, imported in GRAPH.items():
        level, entry = _layer(module)
        for target in imported:
            target_level, target_entry = _layer(target)
            if module.startswith(target + ".") and target == entry:
                continue  # a module may import its own package (e.g. ``from protlc.data import noise``)
            same_package = module.rsplit(".", 1)[0] == target.rsplit(".", 1)[0] or entry == target_entry
            if target_level > level or (target_level == level and not same_package):
                upward.append(f"{module} -> {target}")
    assert sorted(upward) == []


def test_predict_audit_and_score_never_import_training_and_training_never_imports_them():
    users = ("protlc.predict", "protlc.audit", "protlc.dms.scoring")
    for module in users:
        assert not any(t.startswith("protlc.training") for t in GRAPH[module]), module
    for module, imported in GRAPH.items():
        if module.startswith("protlc.training"):
            assert not set(imported) & {*users, "protlc.cli", "protlc.reproduce"}, module


def test_lightning_is_imported_only_by_training_and_reproduction():
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        if module.startswith(("protlc.training", "protlc.reproduce")):
            continue
        heavy = {m for m in _imports(path) if m.split(".")[0] in LIGHTNING}
        assert not heavy, f"{module} imports {sorted(heavy)}"


@pytest.mark.parametrize("module", ["protlc.predict", "protlc.audit", "protlc.dms.scoring"])
def test_inference_commands_load_without_lightning(module):
    code = f"import sys, {module}; print(any(m.split('.')[0] in {LIGHTNING!r} for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
