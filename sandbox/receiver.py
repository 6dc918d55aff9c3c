"""A business system's webhook receiver, for the local run and end-to-end tests.

Records every notification the hub's notifier delivers (``POST /hook``), checks the hub format's
signature when it knows the secret, and answers 200 (or what ``POST /_sandbox/answers`` scripts:
``{"answers": [503, 503, 200]}``, one per delivery, then 200).

- ``GET /_sandbox/notifications``: every delivery: headers that matter, the body as JSON, whether
  the signature verified, and the status answered.
Binds 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"


def signature_ok(secret: str, headers: Any, body: bytes, now: float, tolerance: int = 300) -> bool:
    """The README's verification: HMAC-SHA256 over "{timestamp}.{body}", timestamp within 5 minutes."""
    timestamp = headers.get("X-Fapiao-Timestamp", "")
    presented = headers.get("X-Fapiao-Signature", "")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(presented, f"sha256={expected}")


class WebhookReceiver:
    def __init__(self, port: int = 0, *, secret: str | None = None):
        self.secret = secret
        self._lock = threading.Lock()
        self._notifications: list[dict[str, Any]] = []
        self._answers: list[int] = []
        self._server = ThreadingHTTPServer((HOST, port), self._handler())
        self._server.daemon_threads = True
        self.base_url = f"http://{HOST}:{self._server.server_address[1]}"
        self.url = f"{self.base_url}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def notifications(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._notifications)

    def _record(self, headers: Any, query: str, body: bytes) -> int:
        with self._lock:
            status = self._answers.pop(0) if self._answers else 200
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            self._notifications.append(
                {
                    "event_id": headers.get("X-Fapiao-Event-Id"),
                    "query": query,
                    "body": parsed,
                    "signature_ok": signature_ok(self.secret, headers, body, time.time()) if self.secret else None,
                    "answered": status,
                }
            )
            return status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/_sandbox/notifications":
                    self._send(200, receiver.notifications())
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path, _, query = self.path.partition("?")
                if path == "/hook":
                    status = receiver._record(self.headers, query, body)
                    self._send(status, {"ok": status < 300})
                elif path == "/_sandbox/answers":
                    with receiver._lock:
                        receiver._answers = [int(a) for a in json.loads(body).get("answers", [])]
                    self._send(200, {"answers": receiver._answers})
                else:
                    self._send(404, {"error": "not found"})

        return Handler


def run(host: str = HOST, port: int = 0, *, secret: str | None = None) -> WebhookReceiver:
    if host != HOST:
        raise ValueError(f"the sandbox binds {HOST} only, not {host!r}")
    return WebhookReceiver(port, secret=secret).start()
