"""The layout's rules, checked on the source: who may import whom, how big a module or a
function may grow, and what the API process loads."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {"coordinator": "gridx.coordinator", "node": "gridx.node", "schemas": "gridx.schemas"}

# (importer prefix, imported prefix): edges that must not exist. README: "Where things live".
FORBIDDEN = [
    ("gridx.coordinator.api", "gridx.coordinator.db"),
    ("gridx.coordinator.api", "gridx.coordinator.storage"),
    ("gridx.coordinator.api", "gridx.coordinator.aggregation"),
    ("gridx.coordinator.services", "gridx.coordinator.api"),
    ("gridx.coordinator.services", "gridx.coordinator.cli"),
    ("gridx.coordinator.db", "gridx.coordinator.services"),
    ("gridx.coordinator.db", "gridx.coordinator.api"),
    ("gridx.coordinator.storage", "gridx.coordinator.services"),
    ("gridx.coordinator.storage", "gridx.coordinator.db"),
    ("gridx.coordinator.aggregation", "gridx.coordinator.services"),
    ("gridx.coordinator.aggregation", "gridx.coordinator.db"),
    ("gridx.node", "gridx.coordinator"),
    ("gridx.coordinator", "gridx.node"),
    ("gridx.schemas", "gridx.coordinator"),
    ("gridx.schemas", "gridx.node"),
]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80  # with complexity bounded by ruff (C901, max 12): see pyproject.toml


def modules(folders: tuple[str, ...] = tuple(PACKAGES)) -> Iterator[tuple[str, Path]]:
    """(dotted module name, file) of every module of ours under `folders`."""
    for folder in folders:
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join((PACKAGES[folder], *parts)), path


def imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported module, line) of every import in a file, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            yield base, node.lineno


def under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(rules: list[tuple[str, str]]) -> list[str]:
    found = []
    for name, path in modules():
        for target, line in imports(name, path):
            for importer, imported in rules:
                if under(name, importer) and under(target, imported):
                    found.append(f"{path.relative_to(REPO)}:{line}: {name} imports {target}")
    return found


def test_no_forbidden_import_edges() -> None:
    assert violations(FORBIDDEN) == []


def test_the_rule_check_sees_a_forbidden_edge() -> None:
    # the checker itself can fail: the API does import services, so forbidding it is caught
    found = violations([("gridx.coordinator.api", "gridx.coordinator.services")])
    assert any("coordinator/api/jobs.py" in v for v in found), found


def test_no_module_or_function_too_long_nor_packed_to_look_shorter() -> None:
    too_long = []
    for _, path in modules(("coordinator", "node")):
        source = path.read_text()
        if "fmt: skip" in source or "fmt: off" in source:
            too_long.append(f"{path.relative_to(REPO)}: lines kept from the formatter")
        lines = len(source.splitlines())
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(REPO)}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {size}")
    assert too_long == []


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_the_api_imports_no_torch_until_its_pool_runs() -> None:
    out = _run(
        "import sys; import gridx.coordinator.api.app, gridx.coordinator.cli.main; "
        "print(sorted(m for m in ('torch', 'numpy', 'safetensors') if m in sys.modules))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_sharding_tests_run_without_torch_or_the_coordinator_extras() -> None:
    # None in sys.modules makes `import x` fail, as in a venv that lacks x
    blocked = ("torch", "numpy", "safetensors", "litestar", "aiosqlite", "asyncpg", "uvicorn")
    out = _run(
        "import sys\n"
        f"for m in {blocked!r}: sys.modules[m] = None\n"
        "import pytest\n"
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-p', 'no:xdist', "
        "'-p', 'no:schemathesis', 'tests/unit/test_sharding.py']))\n"
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert " passed" in out.stdout
