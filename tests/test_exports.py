"""Every public module's ``__all__`` is exactly what it defines for users."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path
from types import ModuleType

import pytest

import lambda_bulkhead

PUBLIC_MODULES = [
    "lambda_bulkhead",
    "lambda_bulkhead.events",
    "lambda_bulkhead.responses",
    "lambda_bulkhead.emulator",
]


def source_of(module: ModuleType) -> ast.Module:
    return ast.parse(Path(inspect.getfile(module)).read_text())


def defined_names(module: ModuleType) -> set[str]:
    """Public names the module's own top level binds: definitions, assignments (type
    aliases included), and names a package imports from its own private submodules."""
    package = module.__name__
    names: set[str] = set()
    body = list(source_of(module).body)
    for node in list(body):
        # A lazy package names its exports for type checkers only.
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            body.extend(node.body)
    for node in body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module is not None
            and node.module.startswith(f"{package}._")
            and inspect.getfile(module).endswith("__init__.py")
        ):
            names.update(alias.asname or alias.name for alias in node.names)
    return {name for name in names if not name.startswith("_")}


@pytest.mark.parametrize("name", PUBLIC_MODULES[1:])
def test_all_equals_the_public_names_defined(name: str) -> None:
    """__all__ lists every public name the module defines, and nothing else."""
    module = importlib.import_module(name)
    assert sorted(module.__all__) == sorted(defined_names(module))


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_exported_name_exists(name: str) -> None:
    """Each name in __all__ is an attribute of the module, listed once."""
    module = importlib.import_module(name)
    assert len(set(module.__all__)) == len(module.__all__)
    for exported in module.__all__:
        assert getattr(module, exported) is not None, exported


def lazy_import_names() -> tuple[set[str], dict[str, str]]:
    """The names lambda_bulkhead imports for type checkers, and where from."""
    imported: dict[str, str] = {}
    for node in source_of(lambda_bulkhead).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for child in node.body:
                assert isinstance(child, ast.ImportFrom)
                assert child.module is not None
                for alias in child.names:
                    imported[alias.asname or alias.name] = child.module
    return set(imported), imported


def test_package_all_equals_its_lazy_names() -> None:
    """lambda_bulkhead's __all__, its lazy table and its TYPE_CHECKING imports agree."""
    names, origins = lazy_import_names()
    lazy: dict[str, str] = lambda_bulkhead._LAZY
    assert set(lambda_bulkhead.__all__) == names | {"__version__"}
    assert lazy == origins


def test_package_lazy_names_are_the_real_objects() -> None:
    """Each lazily exported name is the object of the module it comes from."""
    _names, origins = lazy_import_names()
    for name, origin in origins.items():
        assert getattr(lambda_bulkhead, name) is getattr(importlib.import_module(origin), name)
        assert name in importlib.import_module(origin).__all__, (origin, name)


def test_package_dir_and_unknown_names() -> None:
    """dir() shows exactly __all__; an unknown name is an AttributeError."""
    assert sorted(dir(lambda_bulkhead)) == sorted(lambda_bulkhead.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = lambda_bulkhead.nothing_here


def test_exceptions_form_one_hierarchy() -> None:
    """Every exported exception derives from BulkheadError."""
    for name in lambda_bulkhead.__all__:
        value = getattr(lambda_bulkhead, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert issubclass(value, lambda_bulkhead.BulkheadError), name
