"""Dependencies that say the truth: every third-party package the product imports directly is a
declared dependency of pyproject.toml (not only pulled in by another one), and Dagster's libraries
are pinned to the release line of dagster itself."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib

from .conftest import REPO

PACKAGE = REPO / "oil_analysis"


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9_.\-]+)", requirement).group(1)).lower()


def declared() -> dict[str, str]:
    """Normalized distribution name → requirement string of [project].dependencies."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return {_name(d): d for d in deps}


def imported_top_level() -> dict[str, set[str]]:
    """Top-level module → files of oil_analysis/ importing it (absolute imports only)."""
    out: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                out.setdefault(name.split(".")[0], set()).add(path.relative_to(REPO).as_posix())
    return out


def test_every_third_party_import_is_a_declared_dependency():
    dists = importlib.metadata.packages_distributions()
    deps = declared()
    undeclared = {}
    for module, files in sorted(imported_top_level().items()):
        if module in sys.stdlib_module_names or module == "oil_analysis" or module == "__future__":
            continue
        owners = {_name(d) for d in dists.get(module, [])}
        assert owners, f"{module} (imported by {sorted(files)}) belongs to no installed distribution"
        if not owners & set(deps):
            undeclared[module] = (sorted(owners), sorted(files))
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_the_scan_sees_the_direct_imports():
    seen = imported_top_level()
    assert {"dagster", "pandas", "pyarrow", "dotenv", "pydantic_settings", "markupsafe"} <= set(seen)
    assert {"python-dotenv", "pydantic-settings", "markupsafe", "dagster-shared"} <= set(declared())


def test_dagster_libraries_are_pinned_with_dagster():
    """dagster-* 1.13 libraries as ==1.13.*, the integration packages (0.29 line) as ==0.29.*."""
    deps = declared()
    assert deps["dagster"] == "dagster==1.13.*"
    for name, req in deps.items():
        if name.startswith("dagster-"):
            assert re.search(r"==(1\.13|0\.29)\.\*$", req), req
    assert deps["dagster-aws"] == "dagster-aws==0.29.*"
    assert importlib.metadata.version("dagster-aws").startswith("0.29.")
