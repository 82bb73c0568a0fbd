"""The minimal HTTP/1.1 client: ``encode_head``, the incremental ``ResponseParser``
and ``SocketTransport`` over real loopback sockets to small scripted servers
(for connection-level behaviour the emulator does not script: idle keep-alive
connections closed by the server, answers cut short, bodies read until close)."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambda_bulkhead import TransportError
from lambda_bulkhead.runtime_api._client import RuntimeApi
from lambda_bulkhead.runtime_api._http import (
    MAX_BODY_BYTES,
    ProtocolViolation,
    ResponseParser,
    SocketTransport,
    encode_head,
)
from lambda_bulkhead.runtime_api._protocol import (
    Request,
    Response,
    next_request,
    response_request,
    stream_request,
)

WAIT_S = 10.0


# -- encode_head ---------------------------------------------------------------


def test_encode_head_get_has_no_content_length() -> None:
    """A GET without body sends the request line, Host and nothing else."""
    assert encode_head(next_request(), "127.0.0.1:9001") == (
        b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n"
        b"Host: 127.0.0.1:9001\r\n\r\n"
    )


def test_encode_head_post_always_declares_its_length() -> None:
    """A POST declares Content-Length (0 for an empty body) after its own headers."""
    head = encode_head(response_request("r", b"", invocation_id="n"), "h:1")
    assert head == (
        b"POST /2018-06-01/runtime/invocation/r/response HTTP/1.1\r\n"
        b"Host: h:1\r\nLambda-Runtime-Invocation-Id: n\r\nContent-Length: 0\r\n\r\n"
    )
    assert b"Content-Length: 5\r\n" in encode_head(response_request("r", b"hello"), "h:1")


# -- ResponseParser ------------------------------------------------------------------


def parse_all(data: bytes, *, eof: bool = False) -> Response:
    parser = ResponseParser()
    response = parser.feed(data)
    if response is None and eof:
        response = parser.feed_eof()
    assert response is not None
    return response


def test_parser_content_length_body() -> None:
    """A Content-Length body: status, lower-case headers and exactly that many bytes."""
    response = parse_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Lambda-Runtime-Aws-Request-Id: abc\r\nContent-Length: 7\r\n\r\n{\"a\":1}"
    )
    assert response.status == 200
    assert response.headers["lambda-runtime-aws-request-id"] == "abc"
    assert response.headers["content-type"] == "application/json"
    assert response.body == b'{"a":1}'


def test_parser_waits_for_the_whole_body() -> None:
    """Until Content-Length bytes arrived, feed returns None."""
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 202 Accepted\r\nContent-Length: 4\r\n\r\nab") is None
    assert parser.started
    response = parser.feed(b"cd")
    assert response is not None
    assert response.body == b"abcd"


def test_parser_chunked_without_trailers() -> None:
    """Chunks (with extensions) are joined; the last chunk ends the body."""
    response = parse_all(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\n\r\n"
    )
    assert response.body == b"hello 0123456789"


def test_parser_chunked_with_trailers() -> None:
    """Trailers after the last chunk are skipped up to the empty line."""
    response = parse_all(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-A, X-B\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n"
    )
    assert response.body == b"abc"


def test_parser_chunked_waits_for_the_final_empty_line() -> None:
    """The last chunk alone is not the end: the trailer section must close."""
    parser = ResponseParser()
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert parser.feed(head + b"1\r\nx\r\n0\r\n") is None
    assert parser.feed(b"X-T: 1\r\n") is None
    response = parser.feed(b"\r\n")
    assert response is not None
    assert response.body == b"x"


def test_parser_body_until_close() -> None:
    """No length and not chunked: the body is what came before the close."""
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ") is None
    assert parser.feed(b"part two") is None
    response = parser.feed_eof()
    assert response.body == b"part one, part two"
    assert parser.keep_alive is False


@pytest.mark.parametrize("status", [204, 304, 100])
def test_parser_statuses_without_body(status: int) -> None:
    """204, 304 and 1xx answers have no body even without Content-Length."""
    assert parse_all(f"HTTP/1.1 {status} X\r\n\r\n".encode()).body == b""


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
    ],
)
def test_parser_keep_alive(head: bytes, keep_alive: bool) -> None:
    """HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 never does."""
    parser = ResponseParser()
    assert parser.feed(head) is not None
    assert parser.keep_alive is keep_alive


def test_parser_reason_phrase_is_optional() -> None:
    """A status line without reason phrase parses."""
    assert parse_all(b"HTTP/1.1 202\r\nContent-Length: 0\r\n\r\n").status == 202


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"HTTP/2 200 OK\r\n\r\n", "bad status line"),
        (b"FOO/1.1 200 OK\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 abc OK\r\n\r\n", "bad status line"),
        (b"garbage\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 200 OK\r\nNoColonHere\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nName : value\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\n: value\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\n folded\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    ],
)
def test_parser_rejects_malformed_answers(data: bytes, message: str) -> None:
    """Malformed status lines, headers, lengths and chunk sizes are ProtocolViolation."""
    with pytest.raises(ProtocolViolation, match=message):
        ResponseParser().feed(data)


def test_parser_rejects_an_oversized_content_length() -> None:
    """A declared body over MAX_BODY_BYTES is refused before reading it."""
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode()
    with pytest.raises(ProtocolViolation, match="over"):
        ResponseParser().feed(head)


def test_parser_rejects_an_oversized_chunked_body() -> None:
    """Chunks adding up to more than MAX_BODY_BYTES are refused."""
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * MAX_BODY_BYTES
    assert parser.feed(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") is None
    with pytest.raises(ProtocolViolation, match="chunked body over"):
        parser.feed(b"1\r\ny\r\n")


def test_parser_rejects_a_head_that_never_ends() -> None:
    """More than 64 KiB without the end of the headers is refused."""
    with pytest.raises(ProtocolViolation, match="too long"):
        ResponseParser().feed(b"HTTP/1.1 200 OK\r\nX: " + b"a" * (65 * 1024))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "before a complete status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "before a complete status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", "before the end of the body"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab", "before the end"),
    ],
)
def test_parser_eof_too_early_is_a_violation(data: bytes, message: str) -> None:
    """A close before the head or the declared body ended is ProtocolViolation."""
    parser = ResponseParser()
    assert parser.feed(data) is None
    with pytest.raises(ProtocolViolation, match=message):
        parser.feed_eof()


SAMPLES: list[tuple[bytes, bool, Response]] = [
    (
        b"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: r-1\r\n"
        b"Content-Length: 11\r\n\r\nhello world",
        False,
        Response(200, {"lambda-runtime-aws-request-id": "r-1", "content-length": "11"},
                 b"hello world"),
    ),
    (
        b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nwiki\r\n5;x=y\r\npedia\r\n0\r\nTrailer-A: 1\r\n\r\n",
        False,
        Response(202, {"transfer-encoding": "chunked"}, b"wikipedia"),
    ),
    (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        False,
        Response(200, {"transfer-encoding": "chunked"}, b""),
    ),
    (
        b"HTTP/1.1 500 Internal\r\nContent-Type: text/plain\r\n\r\nuntil close\r\n\r\n",
        True,
        Response(500, {"content-type": "text/plain"}, b"until close\r\n\r\n"),
    ),
]


def feed_in_pieces(data: bytes, cuts: list[int], eof: bool) -> Response:
    parser = ResponseParser()
    bounds = [0, *sorted(set(cuts)), len(data)]
    for start, end in itertools.pairwise(bounds):
        response = parser.feed(data[start:end])
        if response is not None:
            assert end == len(data), "answer complete before its last byte"
            return response
    assert eof, "answer incomplete after every byte"
    return parser.feed_eof()


@given(st.sampled_from(SAMPLES), st.lists(st.integers(min_value=0, max_value=200)))
def test_parser_any_split_parses_the_same(
    sample: tuple[bytes, bool, Response], cuts: list[int]
) -> None:
    """However the byte stream is split across reads, the answer is the same."""
    data, eof, expected = sample
    assert feed_in_pieces(data, [c for c in cuts if c < len(data)], eof) == expected


@given(
    body=st.binary(max_size=300),
    chunk_sizes=st.lists(st.integers(min_value=1, max_value=64), max_size=10),
    trailers=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=1000)),
)
def test_parser_any_chunking_and_split_gives_the_body(
    body: bytes, chunk_sizes: list[int], trailers: bool, cuts: list[int]
) -> None:
    """Any chunked encoding of a body, split anywhere, parses to that body."""
    encoded = bytearray(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    rest, sizes = body, iter(chunk_sizes)
    while rest:
        size = next(sizes, len(rest))
        piece, rest = rest[:size], rest[size:]
        encoded += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    encoded += b"0\r\n" + (b"X-Checksum: abc\r\n" if trailers else b"") + b"\r\n"
    data = bytes(encoded)
    response = feed_in_pieces(data, [c for c in cuts if c < len(data)], eof=False)
    assert response.body == body


# -- SocketTransport over real sockets --------------------------------------------------

Behaviour = Callable[[socket.socket], None]


def read_request(conn: socket.socket) -> bytes | None:
    """One whole request (head and Content-Length body), or None at EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head


OK = b"HTTP/1.1 202 Accepted\r\nContent-Length: 15\r\n\r\n{\"status\":\"OK\"}"


def answers(*replies: bytes, then_close: bool = True) -> Behaviour:
    """Answer one request with each reply in turn, then close (or wait for EOF)."""

    def behave(conn: socket.socket) -> None:
        for reply in replies:
            if read_request(conn) is None:
                return
            conn.sendall(reply)
        if not then_close:
            while conn.recv(65536):
                pass

    return behave


def answer_when(release: threading.Event, reply: bytes, *, read_until: bytes) -> Behaviour:
    """Read until ``read_until`` arrives, answer ``reply`` only once ``release``
    is set (within WAIT_S), then wait for EOF."""

    def behave(conn: socket.socket) -> None:
        data = b""
        while read_until not in data:
            data += conn.recv(65536)
        if release.wait(WAIT_S):
            conn.sendall(reply)
        while conn.recv(65536):
            pass

    return behave


class ScriptedServer:
    """A loopback server running one behaviour per accepted connection, in order."""

    def __init__(self, behaviours: list[Behaviour]) -> None:
        self._behaviours = behaviours
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port: int = self.listener.getsockname()[1]
        self.accepted = 0
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            index = self.accepted
            self.accepted += 1
            conn.settimeout(WAIT_S)
            with conn:
                if index < len(self._behaviours):
                    with contextlib.suppress(OSError):
                        self._behaviours[index](conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(WAIT_S)
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., ScriptedServer]]:
    """Factory of scripted servers, closed at teardown."""
    servers: list[ScriptedServer] = []

    def start(*behaviours: Behaviour) -> ScriptedServer:
        server = ScriptedServer(list(behaviours))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def post(body: bytes = b"{}") -> Request:
    return response_request("req", body)


def test_transport_keeps_one_connection_alive(serve: Callable[..., ScriptedServer]) -> None:
    """Consecutive requests reuse the same keep-alive connection."""
    server = serve(answers(OK, OK, OK, then_close=False))
    transport = SocketTransport("127.0.0.1", server.port)
    try:
        for _ in range(3):
            assert transport.request(post(), timeout=WAIT_S).status == 202
    finally:
        transport.close()
    assert server.accepted == 1


def test_stale_keep_alive_connection_is_retried_once(
    serve: Callable[..., ScriptedServer],
) -> None:
    """A reused connection the server closed while idle is replaced and the request resent."""
    server = serve(answers(OK), answers(OK, then_close=False))
    transport = SocketTransport("127.0.0.1", server.port)
    try:
        assert transport.request(post(), timeout=WAIT_S).status == 202
        # the server has closed the first connection; the next request meets EOF
        assert transport.request(post(), timeout=WAIT_S).status == 202
    finally:
        transport.close()
    assert server.accepted == 2


def test_retry_happens_only_once(serve: Callable[..., ScriptedServer]) -> None:
    """If the resent request fails the same way, it is a TransportError (no third try)."""
    server = serve(answers(OK), answers(b"", then_close=True))
    transport = SocketTransport("127.0.0.1", server.port)
    try:
        transport.request(post(), timeout=WAIT_S)
        with pytest.raises(TransportError) as caught:
            transport.request(post(), timeout=WAIT_S)
    finally:
        transport.close()
    assert caught.value.call == "response"
    assert server.accepted == 2


def test_fresh_connection_closed_without_answer_is_not_retried(
    serve: Callable[..., ScriptedServer],
) -> None:
    """On a new connection, a close before any answer byte is a TransportError at once."""
    server = serve(answers(b""))
    transport = SocketTransport("127.0.0.1", server.port)
    with pytest.raises(TransportError, match="Runtime API response: transport failed"):
        transport.request(post(), timeout=WAIT_S)
    transport.close()
    assert server.accepted == 1


def test_answer_cut_short_is_not_retried(serve: Callable[..., ScriptedServer]) -> None:
    """Once an answer started, a close mid-body is a TransportError, never a resend."""
    cut = b"HTTP/1.1 202 Accepted\r\nContent-Length: 50\r\n\r\n{\"sta"
    server = serve(answers(OK, cut), answers(OK))
    transport = SocketTransport("127.0.0.1", server.port)
    try:
        transport.request(post(), timeout=WAIT_S)
        with pytest.raises(TransportError, match="before the end of the body"):
            transport.request(post(), timeout=WAIT_S)
    finally:
        transport.close()
    assert server.accepted == 1


def test_body_until_close_then_a_new_connection(serve: Callable[..., ScriptedServer]) -> None:
    """A body delimited by close is read whole; the next request connects again."""
    server = serve(answers(b"HTTP/1.1 200 OK\r\n\r\nthe whole body"), answers(OK))
    transport = SocketTransport("127.0.0.1", server.port)
    try:
        assert transport.request(post(), timeout=WAIT_S).body == b"the whole body"
        assert transport.request(post(), timeout=WAIT_S).status == 202
    finally:
        transport.close()
    assert server.accepted == 2


def test_connection_close_header_opens_a_new_connection(
    serve: Callable[..., ScriptedServer],
) -> None:
    """After an answer with Connection: close the transport does not reuse the socket."""
    closing = b"HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    server = serve(answers(closing, then_close=False), answers(OK))
    transport = SocketTransport("127.0.0.1", server.port)
    try:
        transport.request(post(), timeout=WAIT_S)
        transport.request(post(), timeout=WAIT_S)
    finally:
        transport.close()
    assert server.accepted == 2


def test_chunked_answer_over_a_socket(serve: Callable[..., ScriptedServer]) -> None:
    """A chunked answer read from a real socket, connection kept."""
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    server = serve(answers(chunked, OK, then_close=False))
    transport = SocketTransport("127.0.0.1", server.port)
    try:
        assert transport.request(next_request(), timeout=WAIT_S).body == b"abc"
        assert transport.request(post(), timeout=WAIT_S).status == 202
    finally:
        transport.close()
    assert server.accepted == 1


def test_malformed_answer_is_a_transport_error(serve: Callable[..., ScriptedServer]) -> None:
    """Bytes that are not HTTP become a TransportError naming the call."""
    server = serve(answers(b"SSH-2.0-OpenSSH\r\n\r\n"))
    transport = SocketTransport("127.0.0.1", server.port)
    with pytest.raises(TransportError, match="bad status line") as caught:
        transport.request(next_request(), timeout=WAIT_S)
    transport.close()
    assert caught.value.call == "next"


def test_no_answer_within_the_timeout(serve: Callable[..., ScriptedServer]) -> None:
    """A post with a timeout gives up with a TransportError saying so."""
    server = serve(answers(then_close=False))
    transport = SocketTransport("127.0.0.1", server.port)
    with pytest.raises(TransportError, match=r"no answer within 0\.2 s"):
        transport.request(post(), timeout=0.2)
    transport.close()


def test_connection_refused_is_a_transport_error() -> None:
    """Nothing listening: TransportError for the connect, naming the address."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    transport = SocketTransport("127.0.0.1", port)
    with pytest.raises(TransportError, match=f"127.0.0.1:{port}") as caught:
        transport.request(next_request())
    assert caught.value.call == "connect"


NEXT_EVENT = (
    b"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: r2\r\n"
    b"Content-Length: 7\r\n\r\n{\"n\":2}"
)
OK_THEN_CLOSE = (
    b"HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 15\r\n\r\n{\"status\":\"OK\"}"
)


def test_a_pair_goes_out_in_one_write_and_both_answers_are_read(
    serve: Callable[..., ScriptedServer],
) -> None:
    """send_pair writes the post and the poll together; answers sent back to back
    in one segment are split correctly between the two."""
    seen: list[bytes] = []

    def behave(conn: socket.socket) -> None:
        data = b""
        while data.count(b"\r\n\r\n") < 2:  # the post (no body yet) and the poll
            data += conn.recv(65536)
        seen.append(data)
        conn.sendall(OK + NEXT_EVENT)
        while conn.recv(65536):
            pass

    server = serve(behave)
    transport = SocketTransport("127.0.0.1", server.port)
    try:
        first = transport.send_pair(post(b"{}"), next_request(), timeout=WAIT_S)
        second = transport.receive_pending()
    finally:
        transport.close()
    assert first.status == 202
    assert second.status == 200
    assert second.headers["lambda-runtime-aws-request-id"] == "r2"
    assert second.body == b'{"n":2}'
    assert seen[0].startswith(b"POST ")
    assert b"GET /2018-06-01/runtime/invocation/next" in seen[0]
    assert server.accepted == 1


def test_send_returns_before_the_answer_which_receive_pending_reads_in_its_timeout(
    serve: Callable[..., ScriptedServer],
) -> None:
    """send writes the request and returns while the server has not answered;
    receive_pending then reads the answer, and gives up after send's timeout."""
    answer = threading.Event()
    behave = answer_when(answer, OK, read_until=b"\r\n\r\n")
    server = serve(behave, behave)
    transport = SocketTransport("127.0.0.1", server.port)
    try:
        transport.send(post(b"{}"), timeout=WAIT_S)
        answer.set()  # only now: send did not wait for it
        assert transport.receive_pending().status == 202
    finally:
        transport.close()
    answer.clear()
    transport = SocketTransport("127.0.0.1", server.port)
    try:
        transport.send(post(b"{}"), timeout=0.2)
        started = time.monotonic()
        with pytest.raises(TransportError, match=r"no answer within 0\.2 s"):
            transport.receive_pending()
        assert time.monotonic() - started < WAIT_S
    finally:
        transport.close()
        answer.set()


def test_a_pending_poll_is_asked_again_when_the_server_closed_after_the_post(
    serve: Callable[..., ScriptedServer],
) -> None:
    """If the post's answer closes the connection, the poll is sent anew."""
    server = serve(answers(OK_THEN_CLOSE), answers(NEXT_EVENT, then_close=False))
    transport = SocketTransport("127.0.0.1", server.port)
    try:
        assert transport.send_pair(post(), next_request(), timeout=WAIT_S).status == 202
        assert transport.receive_pending().body == b'{"n":2}'
    finally:
        transport.close()
    assert server.accepted == 2


def test_before_wait_runs_once_the_response_is_written_before_its_answer(
    serve: Callable[..., ScriptedServer],
) -> None:
    """send_response_then_next calls before_wait once, as soon as the post and
    the poll are written: here the server answers only after it ran."""
    calls: list[bool] = []
    release = threading.Event()

    def before_wait() -> None:
        calls.append(True)
        release.set()

    server = serve(answer_when(release, OK + NEXT_EVENT, read_until=b"GET "))
    with RuntimeApi(SocketTransport("127.0.0.1", server.port), post_timeout=WAIT_S) as api:
        invocation = api.send_response_then_next("req", b"{}", before_wait=before_wait)
    assert invocation.request_id == "r2"
    assert calls == [True]


@pytest.mark.parametrize("pipeline", [True, False], ids=["pipelined", "BULKHEAD_PIPELINE=0"])
def test_the_api_pipelines_a_response_and_the_next_poll_unless_told_not_to(
    serve: Callable[..., ScriptedServer], pipeline: bool
) -> None:
    """RuntimeApi.send_response_then_next sends both requests before reading an
    answer; with pipelining off, the poll waits for the post's answer."""
    first_reads: list[bytes] = []

    def behave(conn: socket.socket) -> None:
        data = conn.recv(65536)
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        if pipeline:
            while b"GET " not in data:
                data += conn.recv(65536)
        first_reads.append(data)
        conn.sendall(OK)
        if not pipeline:
            data = conn.recv(65536)
            assert data.startswith(b"GET ")
        conn.sendall(NEXT_EVENT)
        while conn.recv(65536):
            pass

    server = serve(behave)
    api = RuntimeApi(
        SocketTransport("127.0.0.1", server.port), post_timeout=WAIT_S, pipeline=pipeline
    )
    with api:
        invocation = api.send_response_then_next("req", b"{}")
    assert invocation.request_id == "r2"
    assert (b"GET /2018-06-01/runtime/invocation/next" in first_reads[0]) is pipeline


def reads_a_stream(received: list[bytes]) -> Behaviour:
    """Read one chunked request to its last chunk, keep it, answer 202."""

    def behave(conn: socket.socket) -> None:
        data = b""
        while not data.endswith(b"\r\n0\r\n\r\n"):
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        received.append(data)
        conn.sendall(OK)

    return behave


def test_a_stream_on_a_connection_the_server_closed_opens_a_new_one(
    serve: Callable[..., ScriptedServer],
) -> None:
    """A streamed answer cannot be sent twice: a kept-alive connection the server
    closed while idle is found closed before the stream starts, and a new one used."""
    received: list[bytes] = []
    server = serve(answers(OK), reads_a_stream(received))
    transport = SocketTransport("127.0.0.1", server.port)
    try:
        assert transport.request(post(), timeout=WAIT_S).status == 202
        time.sleep(0.2)  # the server has closed the first connection by now
        upload = transport.open_stream(
            stream_request("req", "text/plain"), tick=0.05, stall_limit=WAIT_S
        )
        upload.send(b"hello")
        assert upload.finish(timeout=WAIT_S).status == 202
    finally:
        transport.close()
    assert server.accepted == 2
    assert received[0].endswith(b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
