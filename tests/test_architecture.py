"""The house stays one-way: the import rules of docs/architecture.md, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Each package may import itself and what is listed; "examtrail.<x>" names a module or package.
PLUMBING = {"examtrail.core"}
TOP = {"app", "tasks", "cli", "models", "migrations", "openapi"}
ALLOWED: dict[str, set[str]] = {
    "examtrail.core": set(),
    "examtrail.storage": PLUMBING,
    "examtrail.queue": PLUMBING,
    "examtrail.runtime": PLUMBING | {"examtrail.storage", "examtrail.queue"},
    "examtrail.deps": PLUMBING | {"examtrail.runtime"},
}
PLATFORM = PLUMBING | {"examtrail.storage", "examtrail.queue", "examtrail.runtime", "examtrail.deps"}
# ui (the review pages) sits above the features it reads.
FEATURES = [
    "examtrail.audit",
    "examtrail.auth",
    "examtrail.ingest",
    "examtrail.signing",
    "examtrail.exports",
    "examtrail.lifecycle",
    "examtrail.webhooks",
    "examtrail.ui",
]
for rank, feature in enumerate(FEATURES):
    # A feature may use the features before it in this list, never those after it.
    ALLOWED[feature] = PLATFORM | set(FEATURES[:rank])


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    found: set[str] = set()
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("examtrail.")}


def _owner(name: str) -> str | None:
    for package in ALLOWED:
        if name == package or name.startswith(package + "."):
            return package
    return None


def test_every_import_points_down_the_layers() -> None:
    wrong = []
    for path in sorted((SRC / "examtrail").rglob("*.py")):
        source = _owner(_module_name(path))
        if source is None:
            continue  # the top: app, tasks, cli, models, migrations may import anything
        for target in _imports(path):
            owner = _owner(target)
            if owner is None and target.split(".")[1] in {
                "app",
                "tasks",
                "cli",
                "models",
                "migrations",
                "openapi",
            }:
                wrong.append(f"{_module_name(path)} imports {target} (the top)")
            elif owner is not None and owner != source and owner not in ALLOWED[source]:
                wrong.append(f"{_module_name(path)} imports {target}")
    assert wrong == []


def test_the_rules_see_real_imports() -> None:
    """Guard against a checker that passes because it finds nothing."""
    imports = _imports(SRC / "examtrail" / "webhooks" / "service.py")
    assert any(name.startswith("examtrail.exports") for name in imports)
    assert any(name.startswith("examtrail.core") for name in imports)
