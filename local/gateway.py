"""A local stand-in for an API Gateway HTTP API: HTTP request -> payload v2.0 event -> handler.

Routes come from the template's ``HttpApi`` events (``POST /v1/invoice-orders``,
``GET /v1/invoice-orders/{openApplyCode}``, ``{proxy+}``, ``ANY``, ``$default``). Route selection
follows API Gateway: the most specific route wins (literal segments over ``{param}`` over
``{greedy+}``, a method over ``ANY``); no match is a 404 ``{"message":"Not Found"}``, whatever the
method (an existing path asked with another method too, as API Gateway answers; a method no route
names, e.g. ``PROPFIND``, alike); a handler that raises is a 500 ``{"message":"Internal Server
Error"}``; what http.server itself refuses (a URI too long, ...) is answered JSON too. Bodies that
are not UTF-8 text are base64-encoded in the event (``isBase64Encoded``), as API Gateway does for
binary payloads.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

log = logging.getLogger("local.gateway")

LOCAL_HOST = "127.0.0.1"
_BINARY_TYPES = (
    "application/octet-stream",
    "application/pdf",
    "application/zip",
    "image/",
    "audio/",
    "video/",
)


class Invocable(Protocol):
    name: str

    def invoke(self, event: Any) -> Any: ...


@dataclass(frozen=True)
class Route:
    method: str  # upper case, or ANY
    path: str | None  # None: the $default route
    function: Invocable = field(compare=False)
    _regex: re.Pattern[str] | None = field(init=False, compare=False, repr=False, default=None)
    _params: tuple[str, ...] = field(init=False, compare=False, repr=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", self.method.upper())
        if self.path is None:
            return
        parts, params = [], []
        for segment in self.path.strip("/").split("/"):
            m = re.fullmatch(r"\{([^}+]+)(\+?)\}", segment)
            if m:
                parts.append(f"(?P<g{len(params)}>{'.+' if m.group(2) else '[^/]+'})")
                params.append(m.group(1))
            else:
                parts.append(re.escape(segment))
        # A trailing slash is part of the route ("GET /ops/" is not "GET /ops"), as in API Gateway.
        trailing = "/" if self.path.endswith("/") and self.path.strip("/") else ""
        object.__setattr__(self, "_regex", re.compile("/" + "/".join(parts) + trailing))
        object.__setattr__(self, "_params", tuple(params))

    @property
    def route_key(self) -> str:
        return "$default" if self.path is None else f"{self.method} {self.path}"

    def specificity(self) -> tuple[int, int, int, bool]:
        """Sort key, most specific first: literals over {param} over {greedy+}, a method over ANY."""
        if self.path is None:
            return (1, 0, 0, False)
        segments = self.path.strip("/").split("/")
        greedy = sum(1 for s in segments if s.endswith("+}"))
        params = sum(1 for s in segments if s.startswith("{"))
        return (0, greedy, params - len(segments), self.method == "ANY")

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters (decoded) if this route takes the request, else None."""
        if self.method not in ("ANY", method):
            return None
        if self._regex is None:
            return {}
        m = self._regex.fullmatch(path)
        if m is None:
            return None
        return {name: unquote(m.group(f"g{i}")) for i, name in enumerate(self._params)}


def is_binary(body: bytes, content_type: str | None) -> bool:
    if content_type and content_type.split(";")[0].strip().lower().startswith(_BINARY_TYPES):
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def build_event(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    route: Route | None,
    path_parameters: dict[str, str] | None,
    source_ip: str,
    api_id: str = "local",
    account_id: str = "123456789012",
    protocol: str = "HTTP/1.1",
) -> dict[str, Any]:
    """The API Gateway HTTP API payload v2.0 event for one request."""
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    merged.setdefault("x-forwarded-for", source_ip)
    merged.setdefault("x-forwarded-proto", "http")
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    now = time.time()
    route_key = route.route_key if route else "$default"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": merged,
        "requestContext": {
            "accountId": account_id,
            "apiId": api_id,
            "domainName": merged.get("host", LOCAL_HOST),
            "domainPrefix": merged.get("host", LOCAL_HOST).split(".")[0],
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": protocol,
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": base64.b64encode(uuid.uuid4().bytes[:12]).decode(),
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        if is_binary(body, merged.get("content-type")):
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
        else:
            event["body"] = body.decode("utf-8")
    return event


def to_http_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """A handler's v2 response (or inferred format) as status, headers and body bytes."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # Payload v2.0 format inference: anything else is a 200 JSON body.
        body = result if isinstance(result, str) else json.dumps(result)
        return 200, [("content-type", "application/json")], body.encode("utf-8")
    status = int(result["statusCode"])
    headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
    for cookie in result.get("cookies") or []:
        headers.append(("set-cookie", str(cookie)))
    raw = result.get("body")
    if raw is None:
        body = b""
    elif result.get("isBase64Encoded"):
        body = base64.b64decode(raw)
    else:
        body = str(raw).encode("utf-8")
    return status, headers, body


class HttpApiGateway:
    """A threaded HTTP server on 127.0.0.1 that routes like an HTTP API and invokes functions."""

    def __init__(
        self,
        routes: Iterable[Route],
        *,
        port: int = 0,
        account_id: str = "123456789012",
        api_id: str = "local",
    ) -> None:
        self.routes = sorted(routes, key=Route.specificity)
        self.account_id = account_id
        self.api_id = api_id
        gateway = self

        class Handler(_RequestHandler):
            pass

        Handler.gateway = gateway
        self._server = ThreadingHTTPServer((LOCAL_HOST, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{LOCAL_HOST}:{self.port}"

    def find(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, params
        return None

    def start(self) -> HttpApiGateway:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="http-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> HttpApiGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _RequestHandler(BaseHTTPRequestHandler):
    gateway: HttpApiGateway
    protocol_version = "HTTP/1.1"
    server_version = "fapiao-hub-local"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        started = time.monotonic()
        body = self._read_body()
        split = urlsplit(self.path)
        raw_path = split.path or "/"
        found = self.gateway.find(self.command, raw_path)
        if found is None:
            self._send(404, [("content-type", "application/json")], b'{"message":"Not Found"}')
            log.info("%s %s -> 404 (no route)", self.command, raw_path)
            return
        route, params = found
        event = build_event(
            method=self.command,
            raw_path=raw_path,
            raw_query=split.query,
            headers=self.headers.items(),
            body=body,
            route=route,
            path_parameters=params,
            source_ip=self.client_address[0],
            api_id=self.gateway.api_id,
            account_id=self.gateway.account_id,
            protocol=self.request_version,
        )
        try:
            status, headers, payload = to_http_response(route.function.invoke(event))
        except Exception:
            log.exception(
                "%s %s: the function failed",
                self.command,
                raw_path,
                extra={"function_name": route.function.name},
            )
            status, headers, payload = (
                500,
                [("content-type", "application/json")],
                b'{"message":"Internal Server Error"}',
            )
        self._send(status, headers, payload)
        log.info(
            "%s %s -> %s (%d ms)",
            self.command,
            raw_path,
            status,
            (time.monotonic() - started) * 1000,
            extra={"function_name": route.function.name},
        )

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def __getattr__(self, name: str) -> Any:
        # http.server answers a method it finds no do_<METHOD> for with a 501 HTML page; API
        # Gateway routes whatever the method, so any other method is routed too (ANY routes take
        # it; otherwise it is the 404 JSON of any unmatched route).
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a malformed request line, headers too large, ...) as JSON."""
        short = self.responses.get(code, ("Error", ""))[0]
        log.info("%s: %d %s", self.address_string(), code, message or short)
        body = json.dumps({"message": short}).encode("utf-8")
        self.send_response(code, short)
        self.send_header("Connection", "close")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)
