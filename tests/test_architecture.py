"""Dependencies point one way (DESIGN.md): checked on the source, so a stray import fails CI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imports_of(package: str) -> list[tuple[Path, str]]:
    found = []
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found += [(path, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((path, node.module))
    return found


@pytest.mark.parametrize(
    ("package", "forbidden", "allowed"),
    [
        ("gateway", ("idp",), ("idp.common", "idp.config")),
        ("idp/common", ("idp", "flask"), ("idp.common",)),
        ("idp/services", ("idp.views", "idp.app", "idp.cli", "idp.web"), ()),
        ("idp/models", ("idp.services", "idp.views", "idp.app"), ()),
    ],
)
def test_layer_imports(package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    bad = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path, module in imports_of(package)
        if any(module == f or module.startswith(f + ".") for f in forbidden)
        and not any(module == a or module.startswith(a + ".") for a in allowed)
    ]
    assert bad == []


def test_config_stands_alone() -> None:
    """The gateway reads the same settings as the IdP, so idp/config.py imports no IdP code."""
    tree = ast.parse((ROOT / "idp" / "config.py").read_text())
    imported = [
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    ]
    assert [m for m in imported if m.split(".")[0] in {"idp", "flask", "gateway"}] == []


def test_services_never_touch_the_request() -> None:
    """Services get what they need as arguments: no request, session or g from Flask."""
    bad = []
    for path in (ROOT / "idp" / "services").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "flask":
                names = {alias.name for alias in node.names}
                if names & {"request", "session", "g", "current_app"}:
                    bad.append(f"{path.name}: {sorted(names)}")
    assert bad == []
