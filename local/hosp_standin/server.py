"""The stand-in's HTTP/1.1 server: keep-alive, request bodies, and where faults strike.

Keep-alive matters because nginx keeps upstream connections open and reuses them:
- every answer carries Content-Length (except 204, which must not), so the client
  knows where it ends without the connection closing;
- the whole request body is read before answering, even for errors, so the next
  request on the connection starts at the right byte;
- `Connection: close` from the client is honoured (the answer says so, then we close);
- a connection idle for `idle_timeout` seconds (default 20, like Rails' Puma) is
  closed. The proxy's upstream keepalive_timeout must stay below it, or nginx may
  reuse a connection at the moment we close it and see a spurious error.

Bodies are read strictly (parsing.py): framing other than ASCII-digit
Content-Length or well-formed chunked gets 400, a body over the proxy's
MAX_BODY_BYTES 413, and either answer closes the connection, whose next byte is
unknown. A client closing mid-body gets no answer.

Faults (see faults.py) apply to API requests only, never to /_sim.
"""

from __future__ import annotations

import contextlib
import re
import socket
import socketserver
import struct
import threading
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from infra.nginx.render import MAX_BODY_BYTES  # the proxy's limit: the stand-in takes exactly as much
from local.hosp_standin import api, sim
from local.hosp_standin.faults import DEFAULT_CONFIG, INJECTED_STATUSES, FaultConfig, Outcome, apply_update
from local.hosp_standin.parsing import chunk_size, decimal, rack_base_url

DEFAULT_IDLE_TIMEOUT = 20.0
MAX_LINE_BYTES = 65536
# Like http.client's limit on header fields: a client cannot keep a thread reading forever.
MAX_TRAILER_LINES = 100


class HospServer(ThreadingHTTPServer):
    """A thread per connection; holds the stand-in's state and its open connections."""

    daemon_threads = True
    # Don't wait for connection threads on close: idle keep-alive connections would
    # hold stop() up to idle_timeout. stop() shuts their sockets down instead.
    block_on_close = False
    # The listen() backlog; the default of 5 drops connections under benchmark bursts.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], faults: FaultConfig, idle_timeout: float, verbose: bool) -> None:
        self.state = sim.StandIn(faults)
        self.idle_timeout = idle_timeout
        self.verbose = verbose
        self.stopping = threading.Event()
        # Unexpected exceptions in handler threads (bugs, not faults); tests assert 0.
        self.handler_errors = 0
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, HospRequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host name (getfqdn), which can stall
        # for seconds without DNS; the stand-in never needs that name.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.handler_errors += 1
        super().handle_error(request, client_address)  # prints the traceback to stderr

    def close_connections(self) -> None:
        """Wake every connection thread (blocked reading the next request) so it ends."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed, or reset by a fault
                connection.shutdown(socket.SHUT_RDWR)


class _Refused(Exception):
    """The request cannot be read (bad framing, too large): answer and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# Bytes that Python's str.split() takes for whitespace in a Latin-1 request line,
# other than the space and tab that separate its three parts.
NOT_A_SEPARATOR = re.compile(rb"[\x0b\x0c\x1c-\x1f\x85\xa0]")


class HospRequestHandler(BaseHTTPRequestHandler):
    """One connection: reads requests in turn and answers each (or resets the connection)."""

    protocol_version = "HTTP/1.1"  # enables keep-alive in BaseHTTPRequestHandler
    server_version = "HOSP-standin/1.0"
    sys_version = ""
    # Answers are written in one piece; without this, Nagle's algorithm can hold small
    # writes back for a delayed ACK (40 ms on Linux).
    disable_nagle_algorithm = True
    server: HospServer
    # The stats entry of the API request being answered, until its status is counted.
    _unanswered: dict[str, Any] | None = None

    def setup(self) -> None:
        super().setup()
        # The socket timeout is the idle timeout: reading the next request line times
        # out after idle_timeout seconds without a byte, and the connection is closed.
        self.connection.settimeout(self.server.idle_timeout)

    def handle_one_request(self) -> None:
        # Like BaseHTTPRequestHandler.handle_one_request, but every method goes to
        # _serve (so unknown methods get a JSON 405), and client disconnects are quiet.
        try:
            self.raw_requestline = self.rfile.readline(MAX_LINE_BYTES + 1)
            if not self.raw_requestline:
                self.close_connection = True
                return
            if len(self.raw_requestline) > MAX_LINE_BYTES:
                self.requestline = self.request_version = self.command = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                self.close_connection = True
                return
            if NOT_A_SEPARATOR.search(self.raw_requestline.rstrip(b"\r\n")):
                # http.server splits the line with str.split(), which would also split on
                # these bytes (read as Latin-1: NBSP, NEL, FS...) and so drop a trailing one:
                # "/notes?patient_id=5\xa0" would list patient 5. Rails' servers split on
                # spaces only, so the stand-in refuses the line instead.
                self.requestline = self.request_version = self.command = ""
                self.send_error(HTTPStatus.BAD_REQUEST, "Bad request line")
                self.close_connection = True
                return
            if not self.parse_request():
                return  # parse_request has answered 400 and asked to close
            self._serve()
        except TimeoutError:
            self.close_connection = True  # idle (or stalled mid-request) too long
        except ConnectionError:
            self.close_connection = True  # the client went away; nobody to answer

    def log_message(self, format: str, *args: Any) -> None:
        # Per-request logging costs throughput at benchmark rates: only with --verbose.
        if self.server.verbose:
            super().log_message(format, *args)

    # --- reading the request --------------------------------------------------------

    def _read_body(self) -> bytes:
        """The whole request body, so the connection is ready for the next request.

        Raises _Refused for framing the stand-in will not guess at, and
        ConnectionResetError when the client closes before the body is complete.
        """
        encodings = self.headers.get_all("Transfer-Encoding") or []
        lengths = self.headers.get_all("Content-Length") or []
        if encodings:
            # Both headers at once is the classic request-smuggling ambiguity: refuse.
            if lengths or [e.strip().lower() for e in encodings] != ["chunked"]:
                raise _Refused(400, "unsupported Transfer-Encoding")
            return self._read_chunked()
        if not lengths:
            return b""
        sizes = {decimal(length.strip(" \t")) for length in lengths}
        size = sizes.pop()
        if size is None or sizes:  # not 1*DIGIT, or several headers that disagree
            raise _Refused(400, "invalid Content-Length")
        self._check_size(size)
        return self._read_exactly(size)

    def _read_chunked(self) -> bytes:
        """A chunked body (RFC 9112 section 7.1): chunks up to a last one of size 0, then trailers."""
        chunks: list[bytes] = []
        total = 0
        while size := self._chunk_size():
            total += size
            self._check_size(total)
            chunks.append(self._read_exactly(size))
            if self._read_line() not in (b"\r\n", b"\n"):
                raise _Refused(400, "chunk data not followed by CRLF")
        # Trailer fields are ignored, up to the blank line that ends the message.
        for _ in range(MAX_TRAILER_LINES):
            if self._read_line() in (b"\r\n", b"\n"):
                return b"".join(chunks)
        raise _Refused(400, "too many trailer fields")

    def _chunk_size(self) -> int:
        """The size on a chunk-size line: 1*HEXDIG, then optionally ";" and extensions."""
        size_text, semicolon, _ = self._read_line().rstrip(b"\r\n").partition(b";")
        if semicolon:
            size_text = size_text.rstrip(b" \t")  # whitespace is allowed before ";" only
        size = chunk_size(size_text)
        if size is None:
            raise _Refused(400, "invalid chunk size")
        return size

    def _read_line(self) -> bytes:
        """One line of the request, with its line ending."""
        line = self.rfile.readline(MAX_LINE_BYTES + 1)
        if len(line) > MAX_LINE_BYTES:
            raise _Refused(400, f"line longer than {MAX_LINE_BYTES} bytes")
        if not line.endswith(b"\n"):
            raise ConnectionResetError("client closed the connection mid-body")
        return line

    def _read_exactly(self, size: int) -> bytes:
        data = self.rfile.read(size)
        if len(data) < size:
            raise ConnectionResetError("client closed the connection mid-body")
        return data

    @staticmethod
    def _check_size(size: int) -> None:
        if size > MAX_BODY_BYTES:
            raise _Refused(413, f"request body larger than {MAX_BODY_BYTES} bytes")

    # --- answering --------------------------------------------------------------------

    def _send(self, response: api.ApiResponse) -> int:
        """Write the answer in one piece; returns its status."""
        body = response.body()
        status = response.status
        lines = [
            f"{self.protocol_version} {status} {HTTPStatus(status).phrase}",
            f"Date: {self.date_time_string()}",
            f"Server: {self.server_version}",
        ]
        if status != HTTPStatus.NO_CONTENT:  # a 204 must not carry Content-Length
            lines.append("Content-Type: application/json; charset=utf-8")
            lines.append(f"Content-Length: {len(body)}")
        lines.extend(f"{name}: {value}" for name, value in response.headers)
        if self.close_connection:
            lines.append("Connection: close")
        elif self.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive")  # HTTP/1.0 keeps alive only if told so
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        self._record_status(status)
        self.wfile.write(head if self.command == "HEAD" else head + body)
        self.log_request(status, len(body))
        return status

    def _record_status(self, status: int | None) -> None:
        """Count the answer's status (None: reset) before the client can see it.

        Counted after the answer, a client that reads /_sim/stats right after its
        answer could find the status not counted yet.
        """
        if self._unanswered is not None:
            self.server.state.stats.record_status(self._unanswered, status)
            self._unanswered = None

    def _reset_connection(self) -> None:
        """Abort the connection with an RST, before any byte of an answer."""
        self._record_status(None)
        # SO_LINGER on with a zero timeout makes close() send RST instead of FIN.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # rfile/wfile and the server still reference the socket object, which would
        # delay a plain close(); detach() hands us the descriptor to close right now and
        # leaves the object empty, so their later close()/shutdown() calls do nothing.
        socket.close(self.connection.detach())
        self.close_connection = True
        self.log_message('"%s" reset', self.requestline)

    # --- dispatch -------------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except _Refused as refused:
            # The body was not (fully) read, so the connection cannot be reused.
            self.close_connection = True
            self._send(api.ApiResponse(refused.status, {"error": str(refused)}))
            return
        target = urlsplit(self.path)
        query = parse_qs(target.query)
        if target.path == "/_sim" or target.path.startswith("/_sim/"):
            self._send(sim.handle(self.server.state, self.command, target.path, query, body))
            return
        state = self.server.state
        # One name for the route both picks the route's fault rates and counts the
        # request in /_sim/stats, so a benchmark can recompute outcomes from the log.
        route = api.route_name(self.command, target.path)
        index, outcome = state.faults.next_outcome(self.command, route)
        entry = state.stats.record_arrival(
            index=index,
            method=self.command,
            path=self.path,
            route=route,
            user=api.basic_user(self.headers.get("Authorization")),
            request_id=self.headers.get("X-Request-Id"),
            patient_id=self.headers.get("X-Patient-Id"),
            outcome=outcome,
            client_port=int(self.client_address[1]),
        )
        request = api.ApiRequest(
            method="GET" if self.command == "HEAD" else self.command,
            path=target.path,
            query=query,
            body=body,
            authorization=self.headers.get("Authorization"),
            # Links as a Rails HOSP writes them: from the forwarding headers, then Host.
            base_url=rack_base_url(dict(self.headers.items()), f"{self.server.server_name}:{self.server.server_port}"),
        )
        self._unanswered = entry
        self._answer(outcome, request)

    def _answer(self, outcome: Outcome, request: api.ApiRequest) -> int | None:
        """Answer an API request under its fault outcome; None if the connection was reset."""
        if outcome.kind == "outage":
            return self._send(api.ApiResponse(503, {"error": "injected 503 (outage)"}))
        if outcome.kind in INJECTED_STATUSES:
            # An injected 504 answers at once: it models HOSP's load balancer reporting
            # a gateway timeout, not a hang (use "slow" for that).
            return self._send(api.ApiResponse(int(outcome.kind), {"error": f"injected {outcome.kind}"}))
        if outcome.kind == "reset":
            self._reset_connection()
            return None
        if outcome.kind == "slow":
            # Waiting on the stop event instead of sleeping lets stop() cut delays short.
            self.server.stopping.wait(outcome.delay_ms / 1000)
        response = api.handle(self.server.state.store, request)
        if outcome.kind == "commit_then_fail":
            # The write above has happened; only its answer is lost.
            if outcome.mode == "reset":
                self._reset_connection()
                return None
            return self._send(api.ApiResponse(502, {"error": "injected 502 after commit"}))
        return self._send(response)


class RunningServer:
    """A stand-in serving in a background thread; stop() it (or use it as a context manager)."""

    def __init__(self, server: HospServer) -> None:
        self.server = server
        self._thread = threading.Thread(target=server.serve_forever, name="hosp-standin", daemon=True)
        self._stopped = False
        self._thread.start()

    @property
    def host(self) -> str:
        return self.server.server_name

    @property
    def port(self) -> int:
        return self.server.server_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def state(self) -> sim.StandIn:
        """The live store, fault state and counters, for tests that look inside."""
        return self.server.state

    def stop(self) -> None:
        """Stop accepting, end open connections and cut slow answers short. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self.server.stopping.set()
        self.server.shutdown()  # returns once serve_forever has left its loop
        self.server.close_connections()
        self.server.server_close()
        self._thread.join()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    seed: int | None = None,
    faults: FaultConfig | Mapping[str, Any] | None = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    verbose: bool = False,
) -> RunningServer:
    """Start a stand-in on host:port (0: a free port) and return once it accepts connections.

    faults is a FaultConfig or a (partial) config in the JSON shape of /_sim/faults,
    applied over the defaults (no faults); seed, if given, overrides its seed.
    Raises FaultConfigError for an invalid config, OSError if the port is taken.
    """
    config = faults if isinstance(faults, FaultConfig) else apply_update(DEFAULT_CONFIG, dict(faults or {}))
    if seed is not None:
        config = apply_update(config, {"seed": seed})
    return RunningServer(HospServer((host, port), config, idle_timeout, verbose))
