"""The package's layers: imports flow one way, from a layer to those below it.

docs/supervision.md ("Architecture") draws the map.  A module may import its own
layer and the layers below; any import of a layer above (at module level or
inside a function, for the type checker or not) fails here, so the structure
cannot rot.  The leaves (the emulator, events, responses) stand beside the
runtime: nothing of the runtime imports them, and they import only foundation.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lambda_bulkhead"

#: Lowest first.  A module belongs to the first entry its dotted name starts with.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("lambda_bulkhead._errors", "lambda_bulkhead._record", "lambda_bulkhead._lazy"),
    ("lambda_bulkhead._config", "lambda_bulkhead._context", "lambda_bulkhead._streaming"),
    ("lambda_bulkhead.process",),
    ("lambda_bulkhead.wire",),
    ("lambda_bulkhead.logs",),
    ("lambda_bulkhead.handler",),
    ("lambda_bulkhead.runtime_api",),
    ("lambda_bulkhead.worker",),
    ("lambda_bulkhead.supervisor",),
    ("lambda_bulkhead._runtime", "lambda_bulkhead._inprocess"),
    ("lambda_bulkhead._cli", "lambda_bulkhead.__main__"),
)
#: Beside the runtime: they may use the two lowest layers and each other (events name
#: their responses), and only the CLI imports them (it starts the emulator for
#: ``local`` and ``invoke``).
LEAVES = ("lambda_bulkhead.emulator", "lambda_bulkhead.events", "lambda_bulkhead.responses")
LEAF_MAY_IMPORT = 2
#: ``lambda_bulkhead`` itself: the public face, which names everything lazily.
FACE = "lambda_bulkhead"


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every lambda_bulkhead module ``path`` imports."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            # ``from pkg import module`` imports the module: name it.
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] == FACE]


def _layer(name: str) -> int | None:
    for index, layer in enumerate(LAYERS):
        if any(name == prefix or name.startswith(prefix + ".") for prefix in layer):
            return index
    return None


def _leaf(name: str) -> bool:
    return any(name == leaf or name.startswith(leaf + ".") for leaf in LEAVES)


def _target(name: str) -> str:
    """The module an imported name refers to: ``lambda_bulkhead.x.y.Thing`` counts as x.y."""
    while name != FACE and _layer(name) is None and not _leaf(name):
        name = name.rpartition(".")[0]
    return name


MODULES = sorted((_name(path), path) for path in PACKAGE.rglob("*.py"))


def violations(module: str, imports: list[tuple[int, str]]) -> list[str]:
    """The imports of ``module`` that break the one-way rule."""
    own = _layer(module)
    found = []
    for line, imported in imports:
        target = _target(imported)
        if target == FACE or target.startswith(module + "."):
            # The face only re-exports names: importing it (for __version__, say)
            # does not import a layer.
            continue
        if _leaf(module):
            layer = _layer(target)
            ok = _leaf(target) or (layer is not None and layer < LEAF_MAY_IMPORT)
        elif _leaf(target):
            ok = module.startswith("lambda_bulkhead._cli")
        else:
            layer = _layer(target)
            ok = own is not None and layer is not None and layer <= own
        if not ok:
            found.append(f"{module}:{line} imports {imported}")
    return found


def test_every_module_has_a_place() -> None:
    """A new module is placed in a layer (or is a leaf), not left outside the map."""
    homeless = [m for m, _ in MODULES if m != FACE and _layer(m) is None and not _leaf(m)]
    assert homeless == []


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_imports_flow_one_way(module: str, path: Path) -> None:
    assert violations(module, _imports(path, module)) == []


def test_the_check_sees_an_upward_import() -> None:
    """The check itself works: the wire importing the supervisor, a leaf importing the
    runtime, and the runtime importing the emulator are all caught."""
    assert violations("lambda_bulkhead.wire._frames", [(3, "lambda_bulkhead.supervisor._slot")])
    assert violations("lambda_bulkhead.events._sqs", [(3, "lambda_bulkhead.handler._handler")])
    assert violations("lambda_bulkhead.supervisor._slot", [(3, "lambda_bulkhead.emulator")])
    assert not violations("lambda_bulkhead.supervisor._slot", [(3, "lambda_bulkhead.wire._pipes")])
