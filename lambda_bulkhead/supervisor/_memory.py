"""How much memory a worker holds: its own and its descendants' resident pages.

The memory cap counts what is resident, never what is reserved (thread
stacks, arenas, an untouched ``np.zeros``, OpenBLAS's buffers): RSS of the
worker and of every process it started, less the worker's baseline.

* The worker's own RSS is read every sample through an fd kept open on its
  ``statm`` (one ``pread``, 2 µs against psutil's 16 µs): the cap holds from
  the first invocation, which runs before the supervisor imports psutil
  (28 ms; docs/benchmarks.md, "/proc readers or psutil").
* Its descendants are found with psutil (a scan of every process, about 1.5 ms
  with 70 processes) at most every :data:`DESCENDANT_SCAN_S`, and their RSS
  added at every sample.  A descendant's pages shared with the worker count
  twice: the cap errs on the side of stopping.  (PSS would not count them
  twice, but psutil reads it from ``smaps_rollup`` in about 1 ms for a 100 MB
  worker: a tenth of a core per busy worker at the default 10 ms sampling.)

:func:`oom_kills` reads the kernel's count of OOM kills, so that a worker the
kernel killed for memory (it is the first victim: ``oom_score_adj`` 1000) is
told from one killed by anything else.
"""

from __future__ import annotations

import threading

from lambda_bulkhead.process._procfs import RssReader

TYPE_CHECKING = False
if TYPE_CHECKING:
    import psutil

__all__ = ["DESCENDANT_SCAN_S", "OomKills", "WorkerMemory", "oom_kills"]

#: How often a worker's descendants are looked for while it runs an invocation.
DESCENDANT_SCAN_S = 0.1


class WorkerMemory:
    """Samples the resident memory of a worker and its descendants."""

    __slots__ = ("_descendants", "_next_scan", "_pid", "_process", "_rss")

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._rss = RssReader(pid)
        self._process: psutil.Process | None = None
        self._descendants: list[psutil.Process] = []
        self._next_scan: float | None = None

    def start(self, now: float) -> None:
        """An invocation starts: its first descendant scan is due a period from now
        (most invocations end first, and never pay for one)."""
        self._next_scan = now + DESCENDANT_SCAN_S
        self._descendants = []

    def sample(self, now: float) -> int | None:
        """Resident bytes of the worker and its descendants; None once it is gone."""
        total = self._rss.read()
        if total is None:
            return None
        if self._next_scan is not None and now >= self._next_scan:
            self._next_scan = now + DESCENDANT_SCAN_S
            self._descendants = self._scan()
        for process in self._descendants:
            total += _rss_of(process)
        return total

    def _scan(self) -> list[psutil.Process]:
        import psutil  # noqa: PLC0415 - the main thread imports it after the first answer

        if self._process is None:
            try:
                self._process = psutil.Process(self._pid)
            except psutil.Error:
                return []
        try:
            return self._process.children(recursive=True)
        except psutil.Error:
            return []

    def close(self) -> None:
        self._rss.close()


def _rss_of(process: psutil.Process) -> int:
    import psutil  # noqa: PLC0415 - imported already by _scan

    try:
        return int(process.memory_info().rss)
    except psutil.Error:
        return 0


def oom_kills() -> int | None:
    """How many processes the kernel's OOM killer has killed since boot (None:
    not told, as on kernels before 4.13)."""
    try:
        with open("/proc/vmstat", "rb") as vmstat:
            for line in vmstat:
                if line.startswith(b"oom_kill "):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class OomKills:
    """The kernel's OOM kills, each claimed by at most one worker's death.

    Shared by the slots: a worker that died of SIGKILL (not ours) was the OOM
    killer's victim when the kernel's count has gone up since the last kill a
    death accounted for (workers are its first victims, ``oom_score_adj``
    1000); a kill long ago, or another worker's, is not claimed twice.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounted = oom_kills()

    def claim(self) -> bool:
        """Whether an OOM kill no death has claimed yet happened (and claim it)."""
        with self._lock:
            now = oom_kills()
            if now is None or self._accounted is None or now <= self._accounted:
                return False
            self._accounted += 1
            return True
