"""What a handler's import leaves behind that a ``fork()`` would break.

Two things the handler's module commonly starts at import do not survive
being copied into several processes:

* **Threads.**  ``fork`` copies only the calling thread.  A native pool
  started at import (GNU OpenMP through torch or a C extension, gRPC) keeps
  believing its threads exist and the child hangs on its first parallel
  region; a Python thread's locks may be held forever.  :func:`thread_count`
  tells the template how many threads it has after the import (native ones
  included); more than one and the supervisor does not fork workers from it
  (``BULKHEAD_WORKER_START``, docs/supervision.md).
* **Connections.**  A keep-alive connection opened at import (an SDK client,
  a secrets fetch) would be one TCP or TLS stream written and read by every
  worker, and answers would be cross-wired.  :func:`inherited_connections`
  finds the connected stream sockets; :func:`retire_connections` puts a
  socket that reads as closed in their place, so that a client which checks
  its pooled connection before reuse (urllib3, requests, botocore, httpx)
  opens its own.  The template does that right after forking its first
  worker, which keeps the live connections: each is used by one process only.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from lambda_bulkhead._record import NamedTuple

__all__ = [
    "Connection",
    "inherited_connections",
    "retire_connections",
    "thread_count",
    "threads_surviving_fork",
]

def thread_count() -> int:
    """This process's threads, native ones included (1 where /proc is absent)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


#: OpenBLAS's pool size and threading layer, under the names its builds export
#: (plain, 64-bit interface, numpy's and scipy's own scipy_openblas).
_OPENBLAS_THREADS = (
    "openblas_get_num_threads", "openblas_get_num_threads64_",
    "scipy_openblas_get_num_threads", "scipy_openblas_get_num_threads64_",
)
_OPENBLAS_PARALLEL = (
    "openblas_get_parallel", "openblas_get_parallel64_",
    "scipy_openblas_get_parallel", "scipy_openblas_get_parallel64_",
)
_OPENBLAS_PTHREADS = 1


def threads_surviving_fork() -> int:
    """How many of this process's threads belong to pools known to survive fork.

    Only OpenBLAS's own pool (its pthreads layer, numpy's default): it is torn
    down before a fork and started again in the child, so a template whose
    only extra threads are that pool can be forked from.  An OpenBLAS built on
    OpenMP counts none (GNU OpenMP does not survive fork).
    """
    import ctypes  # noqa: PLC0415 - only once the template has threads

    found = 0
    for path in _mapped_libraries("openblas"):
        try:
            library = ctypes.CDLL(path)  # loaded already: the same handle, no init
        except OSError:
            continue
        threads = _first_symbol(library, _OPENBLAS_THREADS)
        parallel = _first_symbol(library, _OPENBLAS_PARALLEL)
        if threads is not None and parallel is not None and parallel() == _OPENBLAS_PTHREADS:
            found += max(0, int(threads()) - 1)  # the calling thread is one of them
    return found


def _mapped_libraries(word: str) -> set[str]:
    """The shared libraries mapped into this process whose file name holds ``word``."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(maxsplit=5)[-1].strip() for line in maps if word in line.lower()}
    except OSError:
        return set()
    return {path for path in paths if word in os.path.basename(path).lower()}


def _first_symbol(library: object, names: tuple[str, ...]) -> Callable[[], int] | None:
    for name in names:
        function = getattr(library, name, None)
        if function is not None:
            return function  # type: ignore[no-any-return]
    return None


class Connection(NamedTuple):
    """A connected stream socket found on an inherited fd."""

    fd: int
    #: ``tcp 10.0.0.1:443``, ``tcp6 [::1]:8443`` or ``unix /run/db.sock``.
    peer: str


def inherited_connections(exclude: set[int]) -> list[Connection]:
    """The connected TCP and Unix stream sockets among this process's fds,
    but for those in ``exclude`` (the runtime's own)."""
    candidates = []
    for name in _fd_names():
        fd = int(name)
        if fd in exclude:
            continue
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                candidates.append(fd)
        except OSError:
            continue  # the fd listing's own, closed by now
    if not candidates:
        return []
    import socket  # noqa: PLC0415 - only when there is a socket to look at

    families = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)
    found = []
    for fd in candidates:
        probe = socket.socket(fileno=fd)
        try:
            if probe.type != socket.SOCK_STREAM or probe.family not in families:
                continue
            try:
                peer = probe.getpeername()
            except OSError:
                continue  # listening, or not connected
            found.append(Connection(fd, _describe(probe.family, peer)))
        finally:
            probe.detach()  # the fd stays the handler's
    return found


def retire_connections(connections: list[Connection]) -> None:
    """Put a socket that reads as closed (end of stream) on each connection's fd.

    The objects the handler's code holds keep their fd numbers; the next
    process to check one before use sees it dropped and reconnects.  The
    connection itself is not shut down: the process that already holds it
    (the first worker) goes on using it.
    """
    if not connections:
        return
    import socket  # noqa: PLC0415

    dead, peer = socket.socketpair()
    peer.close()
    try:
        for connection in connections:
            os.dup2(dead.fileno(), connection.fd, inheritable=False)
    finally:
        dead.close()


def _fd_names() -> list[str]:
    try:
        return os.listdir("/proc/self/fd")
    except OSError:
        return []


def _describe(family: int, peer: object) -> str:
    import socket  # noqa: PLC0415

    if family == socket.AF_UNIX:
        return f"unix {peer if isinstance(peer, str) and peer else '(unnamed)'}"
    if family == socket.AF_INET6 and isinstance(peer, tuple):
        return f"tcp6 [{peer[0]}]:{peer[1]}"
    if isinstance(peer, tuple):
        return f"tcp {peer[0]}:{peer[1]}"
    return f"socket {peer!r}"


