"""The package map's arrows hold: each part imports only what it may (see docs/ARCHITECTURE.md)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "unsubscribe_sync"

# part -> parts of ours it may import ("logs" is the shared logging setup, allowed everywhere but the sandbox)
ALLOWED: dict[str, set[str]] = {
    "api": set(),
    "resources": {"api"},
    "salesforce": {"api", "logs"},
    "ledger": {"api", "logs"},
    "writer": {"api", "ledger", "salesforce", "logs"},
    "worker": {"api", "ledger", "salesforce", "logs", "writer"},
    "nightly": {"api", "ledger", "salesforce", "logs", "writer"},
    "controller": {"api", "resources", "salesforce", "logs"},
    "sandbox": set(),
}
FORBIDDEN_THIRD_PARTY = {"resources": {"kopf", "kubernetes"}, "api": {"kopf", "kubernetes", "aiohttp"}}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_part_imports_only_what_it_may(part: str) -> None:
    offending = []
    for path in sorted((PACKAGE / part).rglob("*.py")):
        for name in imports_of(path):
            top = name.split(".")[0]
            if top == "unsubscribe_sync" and "." in name:
                other = name.split(".")[1]
                if other != part and other not in ALLOWED[part]:
                    offending.append(f"{path.relative_to(PACKAGE)} imports {name}")
            elif top in FORBIDDEN_THIRD_PARTY.get(part, set()):
                offending.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not offending, "\n".join(offending)


def test_operator_source_root_is_not_a_package() -> None:
    assert not (PACKAGE.parent / "__init__.py").exists(), "a package named 'operator' would shadow the stdlib"


SCHEMA_MARKS = ("x-kubernetes-validations", "openAPIV3Schema", "x-kubernetes-list-type")


def test_the_crd_schema_has_one_home_in_api() -> None:
    """The CRD schema is written beside the models in api/; no other part spells out schema of its own."""
    outside = [
        f"{path.relative_to(PACKAGE)} mentions {mark}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] != "api"
        for mark in SCHEMA_MARKS
        if mark in path.read_text()
    ]
    assert not outside, "\n".join(outside)
