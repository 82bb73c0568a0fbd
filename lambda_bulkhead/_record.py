"""``NamedTuple`` for the runtime's records, without importing ``typing``.

Every process of the runtime pays its imports on the cold start, and
``typing`` (with ``dataclasses``, which pulls in ``inspect``, ``ast`` and
``dis``) was a fifth of it.  The records are written as ``typing.NamedTuple``
classes, which is what type checkers see; at run time the same class body
becomes a ``collections.namedtuple`` (a light import): fields from the
annotations, defaults from the values, methods, properties and class
attributes carried over.
"""

from __future__ import annotations

import collections

TYPE_CHECKING = False

__all__ = ["NamedTuple"]

if TYPE_CHECKING:
    from typing import NamedTuple as NamedTuple  # noqa: PLC0414 (explicit re-export)
else:
    _CLASS_KEYS = frozenset(("__module__", "__qualname__", "__annotations__", "__slots__"))

    class _NamedTupleMeta(type):
        def __new__(mcls, name, bases, namespace):
            if not bases:  # NamedTuple itself
                return super().__new__(mcls, name, bases, namespace)
            annotations = namespace.get("__annotations__", {})
            fields = tuple(annotations)
            defaults = [namespace[field] for field in fields if field in namespace]
            if any(field not in namespace for field in fields[len(fields) - len(defaults) :]):
                raise TypeError(f"{name}: a field without a default follows one with a default")
            record = collections.namedtuple(
                name, fields, defaults=defaults, module=namespace["__module__"]
            )
            for key, value in namespace.items():
                if key not in fields and key not in _CLASS_KEYS:
                    setattr(record, key, value)
            record.__qualname__ = namespace.get("__qualname__", name)
            record.__annotations__ = annotations
            return record

    class NamedTuple(metaclass=_NamedTupleMeta):
        pass
