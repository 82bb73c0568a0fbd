"""drop_written: what a partial gathered write leaves to write."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lambda_bulkhead.process._writes import drop_written


@given(st.lists(st.binary(max_size=20), max_size=6), st.data())
def test_what_is_left_is_the_rest_of_the_bytes(parts: list[bytes], data: st.DataObject) -> None:
    """However many bytes went, the views left hold exactly the bytes after them,
    with no empty view in front."""
    whole = b"".join(parts)
    written = data.draw(st.integers(min_value=0, max_value=len(whole)))
    views = [memoryview(part) for part in parts if part]
    drop_written(views, written)
    assert b"".join(views) == whole[written:]
    assert all(len(view) for view in views[:1])
