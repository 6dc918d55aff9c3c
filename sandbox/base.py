"""The HTTP plumbing every simulator shares: a threaded server on 127.0.0.1 and a handler base.

:class:`SandboxServer` binds without resolving the host name (``HTTPServer.server_bind`` calls
``getfqdn``, which can hang on a machine without DNS), serves on a daemon thread, and wakes held
connections on shutdown (``stopping``). :class:`SandboxHandler` sends answers (never raising on a
client that went away), reads bodies with a size limit, and parses the ``/_sandbox/...`` control
bodies (a bad one is :class:`BadRequest`, answered 400 ``{"error": ...}``).

Standard library only, like every simulator.
"""

from __future__ import annotations

import datetime as dt
import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"
#: China Standard Time (no daylight saving time since 1991): "today" for an invoice is China's today.
CHINA = dt.timezone(dt.timedelta(hours=8), "CST")
DEFAULT_MAX_BODY = 10 * 1024 * 1024
GATEWAY_PAGE = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def china_today() -> dt.date:
    return dt.datetime.now(CHINA).date()


def check_host(host: str) -> None:
    if host != HOST:
        raise ValueError(f"the sandbox binds {HOST} only, not {host!r}")


class BadRequest(Exception):
    """A request the sandbox cannot read (answered 400, or in the vendor's own envelope)."""


class SandboxServer(ThreadingHTTPServer):
    """A simulator's server: 127.0.0.1, a daemon thread, ``stopping`` set on shutdown."""

    daemon_threads = True
    thread_name = "sandbox"

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler], *, verbose: bool = False) -> None:
        self.stopping = threading.Event()
        self.verbose = verbose
        self._thread: threading.Thread | None = None
        super().__init__((HOST, port), handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can hang without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def base_url(self) -> str:
        """Where clients reach it: its own address, unless told the name others know it by (a container's)."""
        return getattr(self, "_advertised", None) or f"http://{HOST}:{self.port}"

    @base_url.setter
    def base_url(self, url: str) -> None:
        self._advertised = url

    def start(self) -> Any:
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.thread_name}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_in_foreground(self) -> None:
        """``python -m sandbox.<name>``: serve until Ctrl-C, then close."""
        try:
            self.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.stopping.set()
            self.server_close()

    def shutdown(self) -> None:
        """Stop serving, wake held connections, close the socket."""
        self.stopping.set()
        if self._thread is not None:
            super().shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()


class SandboxHandler(BaseHTTPRequestHandler):
    """Sending, reading and control-body parsing for the simulators' handlers."""

    server: SandboxServer
    max_body = DEFAULT_MAX_BODY

    def log_message(self, format: str, *args: Any) -> None:
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    def _send(self, status: int, data: bytes | str, content_type: str = "application/json;charset=UTF-8") -> None:
        body = data.encode("utf-8") if isinstance(data, str) else data
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False))

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise BadRequest("chunked bodies are not supported: send Content-Length")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError as exc:
            self.close_connection = True
            raise BadRequest("bad Content-Length") from exc
        if length < 0 or length > self.max_body:
            self.close_connection = True
            raise BadRequest(f"Content-Length must be in 0..{self.max_body}")
        return self.rfile.read(length) if length else b""

    @staticmethod
    def _control_json(raw: bytes, **loads: Any) -> dict[str, Any]:
        try:
            obj = json.loads(raw or b"{}", **loads)
        except ValueError as exc:
            raise BadRequest(f"body is not JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise BadRequest("body must be a JSON object")
        return obj


class VendorHandler(SandboxHandler):
    """A vendor's API as the simulators play it: HTTP/1.1 keep-alive behind "nginx", whose 5xx
    answers are a Spring Boot error JSON (500) or nginx's own page (502, 503)."""

    protocol_version = "HTTP/1.1"
    server_version = "nginx"

    def version_string(self) -> str:
        return self.server_version

    def _answer_5xx(self, status: int, path: str) -> None:
        if status == 500:
            body = {
                "timestamp": dt.datetime.now().isoformat(timespec="milliseconds"),
                "status": 500,
                "error": "Internal Server Error",
                "path": path,
            }
            self._send(500, json.dumps(body))
        else:
            reason = {502: "Bad Gateway", 503: "Service Temporarily Unavailable"}.get(status, "Error")
            self._send(status, GATEWAY_PAGE.format(code=status, reason=reason), "text/html")
