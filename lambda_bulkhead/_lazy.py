"""Lazy exports: a package names its public objects up front and imports the
module behind each one on first use, so importing the package costs nothing
it does not use (``lambda_bulkhead`` itself, ``lambda_bulkhead.events``)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence

TYPE_CHECKING = False
if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any

__all__ = ["lazy_exports", "when_imported"]


def lazy_exports(
    package: str, table: Mapping[str, str], namespace: dict[str, Any], exported: list[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The package's ``__getattr__`` and ``__dir__``: ``table`` maps each name to
    the module defining it; a name once imported is kept in ``namespace``."""

    def getattr_(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return exported

    return getattr_, dir_


def when_imported(name: str, callback: Callable[[ModuleType], object]) -> None:
    """Call ``callback(module)`` once the top-level module ``name`` is imported:
    now if it already is, else right after whoever imports it first has run it
    (before that import statement returns).

    So the runtime can set up :mod:`logging` for the handler (about 10 ms of
    imports here) only in a process where something uses it.
    """
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
        return
    sys.meta_path.insert(0, _AfterImport(name, callback))


class _AfterImport:
    """A ``sys.meta_path`` finder that finds nothing itself: it wraps the real
    loader of one module so that ``callback`` runs after the module's code."""

    def __init__(self, name: str, callback: Callable[[ModuleType], object]) -> None:
        self._name = name
        self._callback = callback

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name != self._name:
            return None
        sys.meta_path.remove(self)
        import importlib.util  # noqa: PLC0415 - with contextlib, ~3 ms without `python -m`

        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        run_module = loader.exec_module
        callback = self._callback

        def exec_module(module: ModuleType) -> None:
            run_module(module)
            callback(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec
