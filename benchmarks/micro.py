"""Per-call cost of the pieces on lambda-bulkhead's hot path, in one process.

    python benchmarks/micro.py [--checkout PATH]

No sockets between processes and no scheduler in the way: each line is the
median over 5 batches of the time one call takes.  These are the numbers
behind "Where the time goes" in ``docs/benchmarks.md``; the end-to-end
figures come from ``run.py``.  The functions timed are private and may
change: a piece that cannot be set up any more prints ``n/a``.
"""

# Each piece imports what it times inside its set-up, so one piece that no
# longer exists does not stop the others.
# ruff: noqa: PLC0415
from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))


def timed(function: Callable[[], object], *, batch: int = 2000, batches: int = 5) -> float:
    """Median µs per call."""
    for _ in range(min(batch, 200)):
        function()
    results = []
    for _ in range(batches):
        started = time.perf_counter()
        for _ in range(batch):
            function()
        results.append((time.perf_counter() - started) / batch * 1e6)
    return statistics.median(results)


def pieces() -> list[tuple[str, Callable[[], Callable[[], object]]]]:
    """(label, set-up returning the call to time)."""

    def parse_next() -> Callable[[], object]:
        from lambda_bulkhead.runtime_api._protocol import Response, parse_next

        headers = {
            "content-type": "application/json",
            "lambda-runtime-aws-request-id": "8476a536-e9f4-11e8-9739-2dfe598c3fcd",
            "lambda-runtime-deadline-ms": "1542409706888",
            "lambda-runtime-invoked-function-arn": "arn:aws:lambda:us-east-1:1:function:f",
            "lambda-runtime-trace-id": "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Sampled=0",
            "lambda-runtime-invocation-id": "0f6c2f32-5a1e-4d4c-9a39-8d6a0d4d3b41",
            "content-length": "100",
        }
        response = Response(200, headers, b"x" * 100)
        return lambda: parse_next(response)

    def parse_head() -> Callable[[], object]:
        from lambda_bulkhead.runtime_api._http import ResponseParser

        sys.path.insert(0, HERE)
        from _standin import render_event

        answer = render_event("8476a536-e9f4-11e8-9739-2dfe598c3fcd", 100, 1542409706888)
        answer += b"x" * 100
        return lambda: ResponseParser().feed(answer)

    def response_request() -> Callable[[], object]:
        from lambda_bulkhead.runtime_api._http import encode_head
        from lambda_bulkhead.runtime_api._protocol import response_request

        return lambda: encode_head(
            response_request("8476a536-e9f4-11e8-9739-2dfe598c3fcd", b'{"ok": true}',
                             invocation_id="0f6c2f32", content_type="application/json"),
            "127.0.0.1:9001",
        )

    def invoke_frame() -> Callable[[], object]:
        from lambda_bulkhead.wire._frames import FrameDecoder, Invocation, Invoke, encode

        invocation = Invocation(
            request_id="8476a536-e9f4-11e8-9739-2dfe598c3fcd", deadline_ms=1542409706888,
            invoked_function_arn="arn:aws:lambda:us-east-1:1:function:f",
            trace_id="Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Sampled=0",
            client_context=None, cognito_identity=None, tenant_id=None,
            invocation_id="0f6c2f32-5a1e-4d4c-9a39-8d6a0d4d3b41",
            content_type="application/json", payload=b"x" * 100,
        )
        decoder = FrameDecoder()
        # The turn's wrapper is built per invocation by the slot: measured with it.
        return lambda: decoder.feed(b"".join(encode(Invoke(1, invocation))))

    def result_frame() -> Callable[[], object]:
        from lambda_bulkhead.wire._frames import FrameDecoder, Result, encode

        message = Result(request_id="8476a536-e9f4-11e8-9739-2dfe598c3fcd",
                         content_type="application/json", body=b'{"ok": true}')
        decoder = FrameDecoder()
        return lambda: decoder.feed(b"".join(encode(message)))

    def report_json() -> Callable[[], object]:
        from lambda_bulkhead.logs._format import LogSettings
        from lambda_bulkhead.logs._structlog import configure
        from lambda_bulkhead.supervisor._decisions import InvocationReport, Outcome
        from lambda_bulkhead.supervisor._report import emit_report

        report = InvocationReport(
            request_id="8476a536-e9f4-11e8-9739-2dfe598c3fcd", tenant_id=None,
            outcome=Outcome.SUCCESS, duration_ms=0.123, max_memory_mb=16.2, worker_pid=1234,
            worker_replaced=False,
        )
        settings = LogSettings.from_environ({})
        log = configure(settings.format, settings.level, lambda line: None)
        return lambda: emit_report(log, report, settings.format)

    def peak_rss() -> Callable[[], object]:
        import resource

        return lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def rss_reader() -> Callable[[], object]:
        from lambda_bulkhead.process._procfs import RssReader

        return RssReader(os.getppid()).read

    def trace_env() -> Callable[[], object]:
        from lambda_bulkhead.handler._handler import set_trace_id

        return lambda: set_trace_id("Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Sampled=0")

    def context() -> Callable[[], object]:
        from lambda_bulkhead._context import FunctionMeta, Invocation, build_context

        invocation = Invocation(request_id="8476a536", payload=b"{}", deadline_ms=1,
                                invoked_function_arn="arn")
        meta = FunctionMeta.from_environ({"AWS_LAMBDA_FUNCTION_NAME": "f"})
        return lambda: build_context(invocation, meta)

    def fflush() -> Callable[[], object]:
        from lambda_bulkhead.process._native import flush_c_stdio

        return flush_c_stdio

    def python_flush() -> Callable[[], object]:
        def call() -> None:
            sys.stdout.flush()
            sys.stderr.flush()

        return call

    def pipe_read(limit: int) -> Callable[[], Callable[[], object]]:
        def setup() -> Callable[[], object]:
            read_fd, write_fd = os.pipe()
            data = b"x" * 100

            def call() -> object:
                os.write(write_fd, data)
                return os.read(read_fd, limit)

            return call

        return setup

    def socket_recv(limit: int) -> Callable[[], Callable[[], object]]:
        def setup() -> Callable[[], object]:
            ours, theirs = socket.socketpair()
            data = b"x" * 100

            def call() -> object:
                theirs.send(data)
                return ours.recv(limit)

            return call

        return setup

    return [
        ("parse_next (100 B event, 7 headers)", parse_next),
        ("ResponseParser.feed: a whole /next answer (8 headers, 100 B)", parse_head),
        ("encode_head(response_request(...))", response_request),
        ("Invoke frame: encode + decode (100 B)", invoke_frame),
        ("Result frame: encode + decode", result_frame),
        ("emit_report (JSON summary record, structlog chain, ids as fields)", report_json),
        ("worker peak RSS (getrusage)", peak_rss),
        ("RssReader.read (/proc statm)", rss_reader),
        ("set_trace_id (os.environ)", trace_env),
        ("build_context", context),
        ("flush_c_stdio (fflush via ctypes)", fflush),
        ("sys.stdout/stderr.flush()", python_flush),
        ("pipe: write 100 B + os.read(limit 1 MiB)", pipe_read(1 << 20)),
        ("pipe: write 100 B + os.read(limit 64 KiB)", pipe_read(64 << 10)),
        ("socket: send 100 B + recv(limit 256 KiB)", socket_recv(256 << 10)),
        ("socket: send 100 B + recv(limit 64 KiB)", socket_recv(64 << 10)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", default=os.path.dirname(HERE),
                        help="where lambda_bulkhead is imported from (default: this checkout)")
    args = parser.parse_args()
    sys.path.insert(0, args.checkout)
    print(f"load average {os.getloadavg()[0]:.2f}; lambda_bulkhead from {args.checkout}")
    print("| piece | µs per call |")
    print("|---|---:|")
    for label, setup in pieces():
        try:
            call = setup()
            cost = f"{timed(call):.1f}"
        except Exception as exc:  # a changed private API: report it, go on
            cost = f"n/a ({type(exc).__name__}: {exc})"[:80]
        print(f"| {label} | {cost} |")


if __name__ == "__main__":
    main()
