"""The HTTP plumbing every simulator shares: a threaded server on 127.0.0.1 and a handler base.

:class:`SandboxServer` binds without resolving the host name (``HTTPServer.server_bind`` calls
``getfqdn``, which can hang on a machine without DNS), serves on a daemon thread, and wakes held
connections on shutdown (``stopping``). :class:`SandboxHandler` sends answers (never raising on a
client that went away), reads bodies with a size limit, and parses the ``/_sandbox/...`` control
bodies (a bad one is :class:`BadRequest`, answered 400 ``{"error": ...}``). China time (UTC+8):
:func:`china_now`, :func:`china_today`, :func:`china_midnight_millis`.

:class:`SavedState` is how a simulator's records survive the local run's restart: a state class
names the attributes it keeps (``saved_fields``) and the dataclasses they hold (``saved_types``);
:meth:`SavedState.snapshot` gives JSON, :meth:`SavedState.restore` takes it back.

Standard library only, like every simulator.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import socketserver
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

HOST = "127.0.0.1"
#: China Standard Time (UTC+8, no daylight saving time since 1991): "today" for an invoice is China's
#: today. The sandboxes' one China-time helper: they cannot use the hub's (the hub-tools image that runs
#: them as containers holds sandbox/ alone, no fapiao_hub).
CHINA = dt.timezone(dt.timedelta(hours=8), "CST")
DEFAULT_MAX_BODY = 10 * 1024 * 1024
GATEWAY_PAGE = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def china_now() -> dt.datetime:
    return dt.datetime.now(CHINA)


def china_today() -> dt.date:
    return china_now().date()


def china_midnight(day: dt.date) -> dt.datetime:
    """00:00 of ``day`` in China."""
    return dt.datetime.combine(day, dt.time(), CHINA)


def china_midnight_millis(day: dt.date) -> int:
    """00:00 of ``day`` in China in milliseconds since the epoch (the vendors' ``invoiceDate``)."""
    return int(china_midnight(day).timestamp()) * 1000


def check_host(host: str) -> None:
    if host != HOST:
        raise ValueError(f"the sandbox binds {HOST} only, not {host!r}")


#: Field metadata of a dataclass field holding a ``time.monotonic()`` reading: saved as an age (a
#: monotonic clock means nothing in another process) and restored as that age plus the time stopped.
MONOTONIC = {"monotonic": True}
SNAPSHOT_VERSION = 1


class SavedState:
    """A simulator's records that survive a restart of the local run (local.state saves them).

    A subclass declares ``saved_fields`` (attribute names: its records, counters, numbering) and
    ``saved_types`` (the dataclasses those hold), and guards them with ``self._lock``. What is not
    declared (fault switches, configuration, locks, threads) starts as the run configures it.
    JSON keeps what JSON cannot say on its own as tagged objects: ``{"$decimal": "1.00"}``,
    ``{"$tuple": [...]}``, ``{"$bytes": base64}``, ``{"$type": name, "fields": {...}}`` and, for a
    dict with a key starting with ``$``, ``{"$dict": {...}}``; ``{"$age": s}`` is a monotonic reading.
    """

    saved_fields: ClassVar[tuple[str, ...]] = ()
    saved_types: ClassVar[tuple[type, ...]] = ()
    _lock: threading.Lock

    def _monotonic_now(self) -> float:
        return time.monotonic()

    def snapshot(self, base_url: str | None = None) -> dict[str, Any]:
        """The declared state as JSON-ready data (taken under the lock: one consistent moment).
        ``base_url``: where the simulator serves now (the URLs in its records start with it)."""
        with self._lock:
            codec = _Codec(self.saved_types, self._monotonic_now())
            fields = {name: codec.encode(getattr(self, name)) for name in self.saved_fields}
        taken = {"version": SNAPSHOT_VERSION, "saved_at": time.time(), "fields": fields}
        return {**taken, "base_url": base_url} if base_url else taken

    def restore(self, snapshot: dict[str, Any], base_url: str | None = None) -> None:
        """Put a :meth:`snapshot` back (decoded first: a bad one raises ValueError, changing nothing).
        ``base_url``: where the simulator serves now; URLs of the saved one's (the snapshot's
        ``base_url``: another port) are moved there, so a file URL it handed out still answers."""
        if not isinstance(snapshot, dict) or snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"not a sandbox snapshot of version {SNAPSHOT_VERSION}")
        given = snapshot.get("fields")
        if not isinstance(given, dict) or set(given) - set(self.saved_fields):
            raise ValueError(f"a snapshot of {sorted(self.saved_fields)} is expected")
        stopped = max(0.0, time.time() - float(snapshot.get("saved_at") or time.time()))
        old_url = snapshot.get("base_url")
        moved = (str(old_url), base_url) if old_url and base_url and old_url != base_url else None
        codec = _Codec(self.saved_types, self._monotonic_now(), stopped, moved)
        decoded = {name: codec.decode(value) for name, value in given.items()}
        with self._lock:
            for name, value in decoded.items():
                setattr(self, name, value)
            self._restored()

    def _restored(self) -> None:
        """After :meth:`restore`, under the lock: rebuild what is derived from the saved fields."""


class _Codec:
    def __init__(
        self, types: tuple[type, ...], now: float, stopped: float = 0.0, moved: tuple[str, str] | None = None
    ) -> None:
        self._types = {t.__name__: t for t in types}
        self._now = now
        self._stopped = stopped
        self._moved = moved  # (old base URL, new): a saved URL of the old server, rewritten

    def encode(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, Decimal):
            return {"$decimal": f"{value:f}"}
        if isinstance(value, bytes | bytearray):
            return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
        if isinstance(value, tuple):
            return {"$tuple": [self.encode(v) for v in value]}
        if isinstance(value, list):
            return [self.encode(v) for v in value]
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise TypeError(f"cannot save a dict with keys {sorted(map(repr, value))[:3]}")
            encoded = {k: self.encode(v) for k, v in value.items()}
            return {"$dict": encoded} if any(k.startswith("$") for k in value) else encoded
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            kind = type(value).__name__
            if self._types.get(kind) is not type(value):
                raise TypeError(f"{kind} is not among the saved types")
            fields = {}
            for f in dataclasses.fields(value):
                item = getattr(value, f.name)
                if f.metadata.get("monotonic") and isinstance(item, int | float):
                    fields[f.name] = {"$age": self._now - item}
                else:
                    fields[f.name] = self.encode(item)
            return {"$type": kind, "fields": fields}
        raise TypeError(f"cannot save a {type(value).__name__}")

    def decode(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if isinstance(value, str) and self._moved and value.startswith(self._moved[0] + "/"):
            return self._moved[1] + value[len(self._moved[0]) :]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            [(tag, inner)] = value.items()
            if tag == "$decimal":
                return Decimal(inner)
            if tag == "$bytes":
                return base64.b64decode(inner)
            if tag == "$tuple":
                return tuple(self.decode(v) for v in inner)
            if tag == "$dict":
                return {k: self.decode(v) for k, v in inner.items()}
            if tag == "$age":  # time went on while the run was stopped
                return self._now - float(inner) - self._stopped
        if value.keys() == {"$type", "fields"}:
            kind = self._types.get(value["$type"])
            if kind is None:
                raise ValueError(f"{value['$type']!r} is not among the saved types")
            return kind(**{k: self.decode(v) for k, v in value["fields"].items()})
        return {k: self.decode(v) for k, v in value.items()}


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

    # What the ``/_sandbox/`` control routes (SandboxHandler._control_get / _control_post) act on.

    def config(self) -> dict[str, Any]:
        """``GET /_sandbox/config``: the simulator's settings and fault rates."""
        raise NotImplementedError

    def configure(self, given: dict[str, Any]) -> dict[str, Any]:
        """``POST /_sandbox/config``: validate everything, then apply; the settings now."""
        raise NotImplementedError

    def reset(self) -> None:
        """``POST /_sandbox/reset``: forget every record and fault."""
        raise NotImplementedError

    def fault_switches(self) -> Any:
        """What ``/_sandbox/faults`` scripts (``script``, ``scripts``): the simulator's
        :class:`sandbox.faults.FaultInjector`, kept as ``injector``."""
        return self.injector  # type: ignore[attr-defined]

    def saved(self) -> SavedState | None:
        """What of this simulator survives a restart of the local run: itself or its ``state``, when
        that is a :class:`SavedState`; None when it keeps nothing worth keeping."""
        if isinstance(self, SavedState):
            return self
        state = getattr(self, "state", None)
        return state if isinstance(state, SavedState) else None

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

    def _control_get(self, path: str) -> bool:
        """Answer ``GET /_sandbox/config`` or ``/_sandbox/faults`` (every simulator's); False for another path."""
        if path == "/_sandbox/config":
            self._send_json(200, self.server.config())
        elif path == "/_sandbox/faults":
            self._send_json(200, self.server.fault_switches().scripts())
        else:
            return False
        return True

    def _control_post(self, path: str, raw: bytes) -> Any:
        """The answer to ``POST /_sandbox/reset``, ``/config`` or ``/faults`` (every simulator's), None for
        another path. A bad body raises :class:`BadRequest` or ``sandbox.faults.FaultConfigError``."""
        server = self.server
        if path == "/_sandbox/reset":
            server.reset()
            return {"reset": True}
        if path == "/_sandbox/config":
            return server.configure(self._control_json(raw))
        if path == "/_sandbox/faults":
            server.fault_switches().script(self._control_json(raw))
            return server.fault_switches().scripts()
        return None

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
