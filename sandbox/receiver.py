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
from typing import Any

from sandbox.base import HOST, BadRequest, SandboxHandler, SandboxServer, check_host


def signature_ok(secret: str, headers: Any, body: bytes, now: float, tolerance: int = 300) -> bool:
    """The README's verification: HMAC-SHA256 over "{timestamp}.{body}", timestamp within 5 minutes."""
    timestamp = headers.get("X-Fapiao-Timestamp", "")
    presented = headers.get("X-Fapiao-Signature", "")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(presented, f"sha256={expected}")


class WebhookReceiver(SandboxServer):
    thread_name = "webhook-receiver"

    def __init__(self, port: int = 0, *, secret: str | None = None):
        self.secret = secret
        self._lock = threading.Lock()
        self._notifications: list[dict[str, Any]] = []
        self._answers: list[int] = []
        super().__init__(port, _Handler)
        self.url = f"{self.base_url}/hook"

    def notifications(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._notifications)

    def answers(self, answers: list[int]) -> list[int]:
        with self._lock:
            self._answers = [int(a) for a in answers]
            return list(self._answers)

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


class _Handler(SandboxHandler):
    server: WebhookReceiver

    def do_GET(self) -> None:
        if self.path == "/_sandbox/notifications":
            self._send_json(200, self.server.notifications())
        else:
            self._send_json(404, {"error": "not found"})

    def do_POST(self) -> None:
        try:
            body = self._read_body()
        except BadRequest as exc:
            self._send_json(400, {"error": str(exc)})
            return
        path, _, query = self.path.partition("?")
        if path == "/hook":
            status = self.server._record(self.headers, query, body)
            self._send_json(status, {"ok": status < 300})
        elif path == "/_sandbox/answers":
            try:
                answers = self.server.answers(self._control_json(body).get("answers", []))
            except (BadRequest, TypeError, ValueError) as exc:
                self._send_json(400, {"error": str(exc)})
                return
            self._send_json(200, {"answers": answers})
        else:
            self._send_json(404, {"error": "not found"})


def run(host: str = HOST, port: int = 0, *, secret: str | None = None) -> WebhookReceiver:
    check_host(host)
    return WebhookReceiver(port, secret=secret).start()
