"""The runtime's records (``_record.NamedTuple``): what ``typing.NamedTuple``
promises the type checker holds at run time, compared with a real one."""

from __future__ import annotations

import copy
import importlib
import pickle
import pkgutil
import typing
from typing import Any

import pytest

import lambda_bulkhead
from lambda_bulkhead._record import NamedTuple


class Point(NamedTuple):
    """A point."""

    x: int
    y: int
    label: str = "p"
    tags: tuple[str, ...] = ()

    @property
    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)

    def moved(self, dx: int) -> Point:
        return self._replace(x=self.x + dx)


class Reference(typing.NamedTuple):
    x: int
    y: int
    label: str = "p"
    tags: tuple[str, ...] = ()


def test_construction_by_position_keyword_and_defaults_matches_typing() -> None:
    assert tuple(Point(1, 2)) == tuple(Reference(1, 2)) == (1, 2, "p", ())
    assert tuple(Point(1, y=2)) == tuple(Reference(1, y=2))
    assert tuple(Point(y=2, x=1, tags=("a",))) == tuple(Reference(y=2, x=1, tags=("a",)))
    assert tuple(Point(1, 2, "q", ("b",))) == tuple(Reference(1, 2, "q", ("b",)))


@pytest.mark.parametrize(("args", "kwargs"), [
    ((1,), {}),  # y missing
    ((1, 2, "q", (), 5), {}),  # one too many
    ((1, 2), {"z": 3}),  # no such field
    ((1, 2), {"x": 3}),  # x twice
])
def test_bad_construction_is_a_type_error_as_for_typing(args: tuple[Any, ...],
                                                         kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        Reference(*args, **kwargs)
    with pytest.raises(TypeError):
        Point(*args, **kwargs)


def test_it_is_a_tuple_with_fields_as_attributes() -> None:
    point = Point(1, -2)
    plain: tuple[Any, ...] = (1, -2, "p", ())
    assert isinstance(point, tuple)
    assert point == plain
    assert hash(point) == hash(plain)
    assert (point.x, point.y, point.label, point.tags) == (1, -2, "p", ())
    x, y, *_ = point
    assert (x, y) == (1, -2)
    with pytest.raises(AttributeError):
        point.x = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        point.other = 5  # type: ignore[attr-defined]  # no __dict__


def test_the_named_tuple_api_matches_typing() -> None:
    point, reference = Point(1, 2), Reference(1, 2)
    assert Point._fields == Reference._fields == ("x", "y", "label", "tags")
    assert Point._field_defaults == Reference._field_defaults == {"label": "p", "tags": ()}
    assert Point.__match_args__ == Reference.__match_args__
    assert point._asdict() == reference._asdict()
    assert tuple(point._replace(y=5, label="z")) == tuple(reference._replace(y=5, label="z"))
    assert tuple(Point._make([3, 4, "m", ()])) == tuple(Reference._make([3, 4, "m", ()]))
    assert repr(point) == repr(reference).replace("Reference", "Point")
    with pytest.raises(ValueError, match="unexpected field names"):
        point._replace(z=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="Expected 4 arguments"):
        Point._make([1, 2])


def test_the_class_body_is_kept() -> None:
    point = Point(3, -4)
    assert Point.__doc__ == "A point."
    assert point.norm1 == 7
    assert point.moved(1) == Point(4, -4)
    assert Point.__qualname__ == "Point"
    assert Point.__module__ == __name__
    assert list(Point.__annotations__) == ["x", "y", "label", "tags"]


def test_keyword_names_and_defaults_are_per_class() -> None:
    """Classes with as many fields share one compiled constructor: each still
    takes its own names and defaults."""

    class First(NamedTuple):
        a: int
        b: int = 1

    class Second(NamedTuple):
        c: str
        d: str = "d"

    assert First(a=0) == (0, 1)
    assert Second(c="x") == ("x", "d")
    with pytest.raises(TypeError):
        First(c="x")  # type: ignore[call-arg]
    assert First.__new__.__qualname__ == "First.__new__"


def test_copies_and_pickles_keep_the_type() -> None:
    point = Point(1, 2, "q", ("a",))
    for clone in (copy.copy(point), copy.deepcopy(point), pickle.loads(pickle.dumps(point))):
        assert type(clone) is Point
        assert clone == point


def test_copy_replace_and_the_default_docstring_are_typings() -> None:
    """``__replace__`` (``copy.replace`` on 3.13), and a class without a docstring
    gets namedtuple's."""

    class Bare(NamedTuple):
        a: int
        b: str

    class BareReference(typing.NamedTuple):
        a: int
        b: str

    assert Point(1, 2).__replace__(y=5) == Point(1, 5)  # type: ignore[attr-defined]  # 3.13
    assert Bare.__doc__ == (BareReference.__doc__ or "").replace("BareReference", "Bare")


@pytest.mark.parametrize("name", ["__new__", "_make", "_fields", "_replace", "_asdict"])
def test_a_body_may_not_overwrite_the_named_tuple_api(name: str) -> None:
    metaclass: Any = type(NamedTuple)
    with pytest.raises(AttributeError, match=f"Cannot overwrite NamedTuple attribute {name}"):
        metaclass("Bad", (NamedTuple,), {
            "__module__": __name__, "__annotations__": {"a": "int"}, name: lambda: None,
        })


def test_a_bad_declaration_is_refused() -> None:
    with pytest.raises(TypeError, match="without a default follows"):
        class Bad(NamedTuple):
            a: int = 0
            b: int  # type: ignore[misc]  # as the type checker says
    with pytest.raises(ValueError, match="cannot start with _"):
        class Private(NamedTuple):
            _a: int  # type: ignore[misc]  # as the type checker says


def test_every_record_of_the_package_builds_from_its_defaults_and_fields() -> None:
    """Each record class in the package takes its required fields by keyword, fills
    in its defaults, and reads every field back."""
    records: set[Any] = set()
    for module in pkgutil.walk_packages(lambda_bulkhead.__path__, "lambda_bulkhead."):
        if module.name.endswith("__main__"):
            continue
        for value in vars(importlib.import_module(module.name)).values():
            if isinstance(value, type) and "_field_defaults" in vars(value):
                records.add(value)
    assert len(records) > 30
    for record in records:
        required = {field: (record.__name__, index) for index, field in enumerate(record._fields)
                    if field not in record._field_defaults}
        made = record(**required)
        expected = {**record._field_defaults, **required}
        assert made._asdict() == expected, record
        assert [getattr(made, field) for field in record._fields] == [
            expected[field] for field in record._fields]
