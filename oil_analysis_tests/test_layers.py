"""The layers of the package (docs/ARCHITECTURE.md, "Layers"), read from the source with ``ast``.

Top to bottom: the apps (``definitions``, the CLI, the read API, the demo generators), ``automation``,
``assets``, ``resources``, ``pipeline``, ``storage``, the pure core (``domain`` and ``report``) and
``settings``. A module imports from its own layer or a lower one, never from a higher one; the pure
core imports nothing outside itself (not even the settings); no module imports itself back through
a chain; no dagster below ``resources``.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "oil_analysis"

# (layer, rank, module prefixes); the longest matching prefix names a module's layer.
LAYERS = [
    (
        "app",
        8,
        ["oil_analysis.definitions", "oil_analysis.__main__", "oil_analysis.api", "oil_analysis.demo"],
    ),
    ("automation", 7, ["oil_analysis.automation"]),
    ("assets", 6, ["oil_analysis.assets"]),
    ("resources", 5, ["oil_analysis.resources"]),
    ("pipeline", 4, ["oil_analysis.pipeline"]),
    ("storage", 3, ["oil_analysis.storage"]),
    ("core", 2, ["oil_analysis.domain", "oil_analysis.report"]),
    ("settings", 1, ["oil_analysis", "oil_analysis.settings"]),
    ("reference", 0, ["oil_analysis.reference"]),
]
DAGSTER_FREE = ("domain", "pipeline", "storage", "report")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
PACKAGES = {module_name(p) for p in PACKAGE.rglob("__init__.py")}


def layer(module: str) -> tuple[str, int]:
    """The layer (name, rank) of a module: its longest matching prefix."""
    matches = [
        (len(prefix), name, rank)
        for name, rank, prefixes in LAYERS
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert matches, f"{module} is in no layer"
    _, name, rank = max(matches)
    return name, rank


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (never executed)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def _resolve(name: str) -> str | None:
    """The module of the package that ``name`` (a module or a name inside one) stands for."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> dict[str, int]:
    """Modules of the package imported by ``module`` (anywhere in it, also inside functions),
    with the line of the first import."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree)
    package = module if module in PACKAGES else module.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{a.name}" for a in node.names] or [stem]
        for t in targets:
            if t.split(".")[0] != "oil_analysis":
                continue
            target = _resolve(t)
            if target and target != module:
                found.setdefault(target, node.lineno)
    return found


GRAPH = {m: imports(m) for m in MODULES}


def test_every_module_has_a_layer():
    assert len(MODULES) > 60
    for m in MODULES:
        layer(m)
    # the layers the issue names exist as packages
    for pkg in ("automation", "assets", "resources", "pipeline", "storage", "domain"):
        assert f"oil_analysis.{pkg}" in PACKAGES


def test_no_import_from_a_higher_layer():
    upward = []
    for m, targets in GRAPH.items():
        name, rank = layer(m)
        for t, line in targets.items():
            t_name, t_rank = layer(t)
            if t_rank > rank:
                upward.append(
                    f"{MODULES[m].relative_to(PACKAGE.parent)}:{line} ({name}) imports {t} ({t_name})"
                )
    assert upward == []


def test_the_pure_core_imports_only_itself():
    """domain/ and report/ import no other layer, not even the settings (pure functions of their inputs)."""
    outside = [
        f"{m} imports {t}"
        for m, targets in GRAPH.items()
        if layer(m)[0] == "core"
        for t in targets
        if layer(t)[0] not in ("core", "reference")
    ]
    assert outside == []


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(GRAPH[m]):
            if state.get(t) == 1:
                cycles.append(" → ".join(path[path.index(t) :] + [t]))
            elif t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_the_graph_sees_imports():
    """The checks above would pass on an empty graph: make sure they read real edges."""
    assert "oil_analysis.pipeline.gold" in GRAPH["oil_analysis.assets.gold"]
    assert "oil_analysis.domain.classify" in GRAPH["oil_analysis.pipeline.gold"]
    assert "oil_analysis.storage.layout" in GRAPH["oil_analysis.storage.publication"]
    # relative imports of a package's own __init__ resolve inside the package
    assert "oil_analysis.domain.labs.finning" in GRAPH["oil_analysis.domain.labs"]
    # a lazy import inside a function counts
    assert "oil_analysis.assets" in GRAPH["oil_analysis.automation.failures"]


DAGSTER_IMPORT = re.compile(r"^\s*(import|from)\s+dagster(_\w+)?\b", re.MULTILINE)


def test_no_dagster_below_resources():
    """No dagster import under domain/, pipeline/, storage/ (nor report/): grep of the tree."""
    found = []
    for sub in DAGSTER_FREE:
        files = sorted((PACKAGE / sub).rglob("*.py"))
        assert files, sub
        for path in files:
            text = path.read_text(encoding="utf-8")
            found += [
                f"{path.relative_to(PACKAGE.parent)}: {m.group(0).strip()}"
                for m in DAGSTER_IMPORT.finditer(text)
            ]
            # and nothing they import at run time pulls dagster in through the package
            for t in GRAPH[module_name(path)]:
                assert layer(t)[0] in ("core", "storage", "pipeline", "settings", "reference"), (path, t)
    assert found == []
    assert DAGSTER_IMPORT.search("x = 1\n    from dagster import asset\n")  # the pattern itself works


def test_a_sample_runs_from_bronze_to_fleet_without_dagster(tmp_path):
    """Importing the pipeline (bronze intake → silver build → classification with advice) loads no
    dagster module: the steps are callable from a script."""
    code = (
        "import sys\n"
        "import oil_analysis.pipeline.bronze, oil_analysis.pipeline.silver, oil_analysis.pipeline.gold\n"
        "import oil_analysis.pipeline.publish, oil_analysis.storage.publication\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0].startswith('dagster')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.strip() == "[]", out.stdout
