"""Ekuaibao (seed 000) as the local run needs it: a channel that learns of applications out of band
and pushes its results to the hub's callback URL.

- ``POST /_sandbox/applications`` ``{"requestNumber": "...", "outcome": "issued", "switches": "duplicate"}``:
  an application reaches the channel (as the business's own Ekuaibao integration would hand it
  over); a background pusher (:mod:`sandbox.pusher`) sends the result after ``delay_ms``,
  signed when a secret is set, with the switches of :class:`sandbox.pusher.Switches`
  (``duplicate``, ``out_of_order``, ``late=2``, ``never``, ...).
- ``GET /files/<invoice number>.pdf``: the invoice's PDF (``originalsUrl`` of every pushed invoice).
- ``GET /_sandbox/pushes``: every push made and the hub's HTTP status for it.

Binds 127.0.0.1 only. ``callback_url`` may be set after start (the hub's port may be chosen later).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sandbox.partner import invoice_pdf
from sandbox.pusher import BackgroundPusher, Pusher, PushJob, Switches, sample_invoice

HOST = "127.0.0.1"


class EkuaibaoSimulator:
    def __init__(self, port: int = 0, *, access_token: str, hmac_secret: str | None = None, delay_ms: int = 1000):
        self.access_token = access_token
        self.hmac_secret = hmac_secret
        self.delay_ms = delay_ms
        self.callback_url = ""
        self._invoices: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((HOST, port), self._handler())
        self._server.daemon_threads = True
        self.base_url = f"http://{HOST}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="ekuaibao-sandbox", daemon=True)
        self._background: BackgroundPusher | None = None

    def start(self) -> EkuaibaoSimulator:
        self._thread.start()
        return self

    def shutdown(self) -> None:
        if self._background is not None:
            self._background.close()
        self._server.shutdown()
        self._server.server_close()

    def _pusher(self) -> BackgroundPusher:
        with self._lock:
            if self._background is None:
                pusher = Pusher(self.callback_url, self.access_token, self.hmac_secret, channel_code="ekuaibao")
                self._background = BackgroundPusher(pusher)
            return self._background

    def submit(self, request_number: str, outcome: str = "issued", switches: str = "") -> dict[str, Any]:
        invoice = sample_invoice(request_number, dt.date.today())
        invoice["originalsUrl"] = f"{self.base_url}/files/{invoice['invoiceNumber']}.pdf"
        invoice["originals"] = 1
        with self._lock:
            self._invoices[invoice["invoiceNumber"]] = invoice
        parsed = Switches.parse(switches) if switches else Switches()
        job = PushJob(request_number, outcome, parsed, (invoice,) if outcome == "issued" else None)
        threading.Timer(self.delay_ms / 1000, lambda: self._pusher().submit(job)).start()
        return {"requestNumber": request_number, "invoiceNumber": invoice["invoiceNumber"]}

    def pdf(self, number: str) -> bytes | None:
        with self._lock:
            invoice = self._invoices.get(number)
        if invoice is None:
            return None
        return invoice_pdf([f"Ekuaibao sandbox invoice {invoice['invoiceCode']} {number}", time.strftime("%Y-%m-%d")])

    def pushes(self) -> list[dict[str, Any]]:
        if self._background is None:
            return []
        return [
            {"requestNumber": r.request_number, "kind": r.kind, "result": r.result, "status": r.status}
            for r in self._background.pusher.history
        ]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        simulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet: the hub logs its side
                pass

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                match = re.fullmatch(r"/files/(\w+)\.pdf", self.path)
                if match:
                    pdf = simulator.pdf(match.group(1))
                    if pdf is None:
                        self._send(404, b'{"error": "no such invoice"}')
                    else:
                        self._send(200, pdf, "application/pdf")
                elif self.path == "/_sandbox/pushes":
                    self._send(200, json.dumps(simulator.pushes()).encode())
                else:
                    self._send(404, b'{"error": "not found"}')

            def do_POST(self) -> None:
                if self.path != "/_sandbox/applications":
                    self._send(404, b'{"error": "not found"}')
                    return
                try:
                    request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                    answer = simulator.submit(
                        str(request["requestNumber"]), request.get("outcome", "issued"), request.get("switches", "")
                    )
                except (ValueError, KeyError, TypeError) as error:
                    self._send(400, json.dumps({"error": str(error)}).encode())
                    return
                self._send(200, json.dumps(answer).encode())

        return Handler


def run(
    host: str = HOST, port: int = 0, *, access_token: str, hmac_secret: str | None = None, delay_ms: int = 1000
) -> EkuaibaoSimulator:
    if host != HOST:
        raise ValueError(f"the sandbox binds {HOST} only, not {host!r}")
    return EkuaibaoSimulator(port, access_token=access_token, hmac_secret=hmac_secret, delay_ms=delay_ms).start()
