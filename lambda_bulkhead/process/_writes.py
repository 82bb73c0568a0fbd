"""Gathered writes (``os.writev``, ``socket.sendmsg``) that may write part of
what they were given."""

from __future__ import annotations

__all__ = ["drop_written"]


def drop_written(views: list[memoryview], written: int) -> None:
    """Remove the first ``written`` bytes of ``views`` (whole views, then the
    front of the next), leaving what a gathered write has yet to write."""
    while written and views:
        first = views[0]
        if written >= len(first):
            written -= len(first)
            views.pop(0)
        else:
            views[0] = first[written:]
            written = 0
