"""The direction of dependencies DESIGN.md draws, checked on the source: front doors never
import the daemon, store/ never imports core/, the shim imports nothing of runtimed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (TYPE_CHECKING blocks included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for module in imported_modules(path):
            if module.startswith(forbidden):
                bad.append(f"{path.relative_to(ROOT)} imports {module}")
    return bad


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("runtimed/api", ("runtimed.daemon",)),
        ("runtimed/streaming", ("runtimed.daemon",)),
        ("runtimed/dockerapi", ("runtimed.daemon",)),
        ("runtimed/store", ("runtimed.core", "runtimed.api", "runtimed.daemon")),
        ("runtimed/core", ("runtimed.api", "runtimed.daemon")),
        ("shim/runtimed_shim", ("runtimed.", "grpc")),
    ],
)
def test_dependencies_point_down(package: str, forbidden: tuple[str, ...]) -> None:
    assert offenders(package, forbidden) == []


def test_the_check_sees_an_import() -> None:
    assert "runtimed.services" in imported_modules(ROOT / "runtimed/api/cri_runtime.py")
