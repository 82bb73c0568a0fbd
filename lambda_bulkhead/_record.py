"""``NamedTuple`` for the runtime's records, without importing ``typing`` and
without compiling code for each record class.

Every process of the runtime pays its imports on the cold start.  ``typing``
(with ``dataclasses``, which pulls in ``inspect``, ``ast`` and ``dis``) was a
fifth of it; then ``collections.namedtuple`` for each record class, which
compiles a ``__new__`` with ``eval``: 60 to 130 µs a class in a fresh
process, 37 classes, about 3 ms of the supervisor's start and 2 ms before
its first fork.

The records are written as ``typing.NamedTuple`` classes, which is what type
checkers see.  At run time the same class body becomes a tuple subclass with
what a ``typing.NamedTuple`` has (fields from the annotations, defaults from
the values, ``_fields``, ``_field_defaults``, ``_make``, ``_replace``,
``_asdict``, ``__match_args__``, the same ``repr``), and the body's methods,
properties and class attributes.  Its ``__new__`` is namedtuple's, compiled
once per number of fields and given the fields' names with
``CodeType.replace`` (construction by position or keyword at namedtuple's
speed); its fields' descriptors are those of one namedtuple made once, each
reading item i of any tuple (a field read at namedtuple's speed).
"""

from __future__ import annotations

import collections

TYPE_CHECKING = False

__all__ = ["NamedTuple"]

if TYPE_CHECKING:
    from typing import NamedTuple as NamedTuple  # noqa: PLC0414 (explicit re-export)
else:
    _CLASS_KEYS = frozenset(("__module__", "__qualname__", "__annotations__", "__slots__"))
    #: What a class body may not define, as for ``typing.NamedTuple``.
    _RESERVED = frozenset((
        "__new__", "__init__", "__getnewargs__", "_fields", "_field_defaults", "_make",
        "_replace", "_asdict", "_source",
    ))
    #: ``__new__``'s code for each number of fields, its arguments named ``_0`` ...
    _CONSTRUCTORS = {}
    _CONSTRUCTOR_GLOBALS = {"_tuple_new": tuple.__new__, "__builtins__": {}}
    _function = type(lambda: None)
    #: The field descriptors of one namedtuple (each reads item i of any tuple),
    #: shared by every record class: attribute reads at namedtuple's speed.
    _GETTERS = []

    def _constructor(name, fields, defaults):
        """``__new__(_cls, <fields>)``, as ``collections.namedtuple`` makes it."""
        code = _CONSTRUCTORS.get(len(fields))
        if code is None:
            arguments = "".join(f"_{index}, " for index in range(len(fields)))
            code = eval(  # noqa: S307 - our own source, once per number of fields
                f"lambda _cls, {arguments}: _tuple_new(_cls, ({arguments}))",
                _CONSTRUCTOR_GLOBALS,
            ).__code__
            _CONSTRUCTORS[len(fields)] = code
        code = code.replace(
            co_varnames=("_cls", *fields), co_name="__new__", co_qualname=f"{name}.__new__"
        )
        return _function(code, _CONSTRUCTOR_GLOBALS, "__new__", defaults or None)

    def _getters(count):
        if len(_GETTERS) < count:
            names = [f"f{index}" for index in range(max(count, 24))]
            model = collections.namedtuple("_Fields", names)
            _GETTERS[:] = [vars(model)[name] for name in names]
        return _GETTERS[:count]

    class _Record(tuple):
        """What every record class has, whatever its fields."""

        __slots__ = ()
        _fields = ()

        @classmethod
        def _make(cls, iterable):
            record = tuple.__new__(cls, iterable)
            if len(record) != len(cls._fields):
                raise TypeError(f"Expected {len(cls._fields)} arguments, got {len(record)}")
            return record

        def _replace(self, /, **changes):
            record = self._make(map(changes.pop, self._fields, self))
            if changes:
                raise ValueError(f"Got unexpected field names: {list(changes)!r}")
            return record

        __replace__ = _replace  # copy.replace (Python 3.13)

        def _asdict(self):
            return dict(zip(self._fields, self, strict=True))

        def __getnewargs__(self):
            return tuple(self)

        def __repr__(self):
            pairs = ", ".join(
                f"{field}={value!r}" for field, value in zip(self._fields, self, strict=True)
            )
            return f"{type(self).__name__}({pairs})"

    class _NamedTupleMeta(type):
        def __new__(mcls, name, bases, namespace):
            if not bases:  # NamedTuple itself
                return super().__new__(mcls, name, bases, namespace)
            annotations = namespace.get("__annotations__", {})
            fields = tuple(annotations)
            for field in fields:
                if field.startswith("_"):
                    raise ValueError(f"{name}: a field name cannot start with _: {field}")
            defaults = tuple(namespace[field] for field in fields if field in namespace)
            if any(field not in namespace for field in fields[len(fields) - len(defaults) :]):
                raise TypeError(f"{name}: a field without a default follows one with a default")
            for key in _RESERVED.intersection(namespace):
                raise AttributeError(f"Cannot overwrite NamedTuple attribute {key}")
            members = {
                key: value for key, value in namespace.items()
                if key not in annotations and key not in _CLASS_KEYS
            }
            members.setdefault("__doc__", f"{name}({', '.join(fields)})")
            members.update(
                __module__=namespace["__module__"],
                __qualname__=namespace.get("__qualname__", name),
                __annotations__=annotations,
                __slots__=(),
                __new__=_constructor(name, fields, defaults),
                __match_args__=fields,
                _fields=fields,
                _field_defaults=dict(
                    zip(fields[len(fields) - len(defaults) :], defaults, strict=True)
                ),
            )
            members.update(zip(fields, _getters(len(fields)), strict=True))
            return type(name, (_Record,), members)

    class NamedTuple(metaclass=_NamedTupleMeta):
        pass
