"""Tests for lambda_bulkhead.supervisor._output: captured fd 1/2 bytes as records,
on real pipes (what the supervisor reads from the template and the workers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from lambda_bulkhead.logs._format import LogFormat, LogSettings
from lambda_bulkhead.supervisor._output import OutputSink, PipeOutput

T = 1795238169.123


class Written:
    """What a sink hands to the log writer, as records."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def __call__(self, data: bytes) -> None:
        assert data.endswith(b"\n")
        self.chunks.append(data)

    def records(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in b"".join(self.chunks).splitlines()]


def _pipes() -> tuple[tuple[int, int], tuple[int, int]]:
    """Two pipes (stdout, stderr): non-blocking read ends (PipeOutput closes them),
    blocking write ends (the test closes them)."""
    out = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    err = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    for _, write_end in (out, err):
        os.set_blocking(write_end, True)
    return out, err


def test_sink_tags_lines_with_the_invocation_and_flushes_partial_lines_at_end() -> None:
    """Lines carry the request id of the invocation in progress; end() flushes the rest;
    output after end() is still that invocation's until the next begin()."""
    written = Written()
    sink = OutputSink(LogSettings(), written, clock=lambda: T)
    sink.begin("req-1", "tenant-1")
    sink.feed("stdout", b"one\ntw")
    sink.feed("stderr", b"warn")
    sink.feed("stdout", b"o\n")
    sink.end()
    sink.feed("stdout", b"later\n")
    sink.begin(None, None)
    sink.feed("stdout", b"nobody's\n")
    records = written.records()
    assert [(r["message"], r["requestId"], r.get("tenantId"), r["stream"]) for r in records] == [
        ("one", "req-1", "tenant-1", "stdout"),
        ("two", "req-1", "tenant-1", "stdout"),
        ("warn", "req-1", "tenant-1", "stderr"),
        ("later", "req-1", "tenant-1", "stdout"),
        ("nobody's", "", None, "stdout"),
    ]


def test_sink_writes_a_read_in_one_call() -> None:
    """All lines completed by one read reach the writer in one write (one lock, one syscall)."""
    written = Written()
    sink = OutputSink(LogSettings(), written, clock=lambda: T)
    sink.feed("stdout", b"a\nb\nc\n")
    assert len(written.chunks) == 1
    assert written.chunks[0].count(b"\n") == 3


def test_sink_drops_lines_below_the_level() -> None:
    """AWS_LAMBDA_LOG_LEVEL=ERROR: stdout and plain stderr go, traceback-shaped stderr stays."""
    written = Written()
    sink = OutputSink(LogSettings(level=40), written, clock=lambda: T)
    sink.feed("stdout", b"info\n")
    sink.feed("stderr", b"warning\nValueError: bad\n")
    assert [r["message"] for r in written.records()] == ["ValueError: bad"]


def test_pipe_output_reads_a_process_output_without_a_request_id() -> None:
    """A child's fd 1/2 (as the template's): records with requestId "", partial line at the end."""
    (out_r, out_w), (err_r, err_w) = _pipes()
    written = Written()
    output = PipeOutput(out_r, err_r, OutputSink(LogSettings(), written, clock=lambda: T))
    code = "import os; print('hello'); os.write(2, b'oops\\n'); os.write(1, b'no newline')"
    subprocess.run([sys.executable, "-c", code], stdout=out_w, stderr=err_w, check=True)
    os.close(out_w)
    os.close(err_w)
    while output.fds:
        for fd in output.fds:
            output.read(fd)
    output.drain()
    records = written.records()
    assert sorted((r["message"], r["stream"], r["requestId"]) for r in records) == [
        ("hello", "stdout", ""), ("no newline", "stdout", ""), ("oops", "stderr", ""),
    ]


def test_pipe_output_drain_reads_only_what_is_there() -> None:
    """A pipe still held open (by a process's children) never blocks drain()."""
    (out_r, out_w), (err_r, err_w) = _pipes()
    written = Written()
    output = PipeOutput(out_r, err_r, OutputSink(LogSettings(format=LogFormat.TEXT), written))
    os.write(out_w, b"buffered\npart")
    output.drain()  # the write ends are still open: returns with what there was
    lines = b"".join(written.chunks).decode().splitlines()
    assert [line.split("\t")[-1] for line in lines] == ["buffered", "part"]
    assert output.fds == [out_r, err_r]
    output.close()
    assert output.fds == []
    os.close(out_w)
    os.close(err_w)
