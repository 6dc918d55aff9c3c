"""Fetching a channel's invoice-file URL within limits (file_fetch.py; issue 18 item 9, files part).

A tiny loopback HTTP server plays the channel's file host: a file, a redirect, a file over the cap
(announced and not), and a URL carrying a token in its query string. Each refusal is an exception
whose text names the host and path, never the query; through the Dispatcher, a refused file is
recorded on the invoice (with why) and the invoice itself still is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from fapiao_hub.domain.config import ChannelSettings, parse_origin
from fapiao_hub.domain.results import InvoiceFile, Issued, IssuedInvoice
from fapiao_hub.infra.file_fetch import FetchPolicy, FetchRefused, fetch_file, safe_url
from tests.unit import test_dispatch_workflow as dispatch_tests

world = dispatch_tests.world  # an accepted application and a dispatcher around a scripted channel
PDF = b"%PDF-1.4\n" + b"x" * 100 + b"\n%%EOF\n"
CAP = 4096


class Files(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []  # the paths asked for, in order

    def do_GET(self) -> None:
        Files.hits.append(self.path)
        path = self.path.split("?")[0]
        if path == "/file.pdf":
            self._send(200, PDF)
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/file.pdf")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/big-announced":
            self._send(200, b"%PDF-" + b"0" * (CAP * 2))
        elif path == "/big-unannounced":
            self.send_response(200)  # no Content-Length: read until the connection closes
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(4):
                self.wfile.write(b"0" * CAP)
            self.close_connection = True
        else:
            self._send(404, b"no")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Files.hits = []
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def policy(origin: str) -> FetchPolicy:
    return FetchPolicy.for_channel("https://vendor.example/api", [origin], max_bytes=CAP)


def test_an_allowed_host_serves_the_file(server):
    assert fetch_file(f"{server}/file.pdf", policy(server)) == PDF


def test_a_redirect_is_refused_not_followed(server):
    with pytest.raises(FetchRefused, match=r"redirect \(HTTP 302\): not followed"):
        fetch_file(f"{server}/redirect", policy(server))
    assert Files.hits == ["/redirect"]  # the target was never asked for


def test_a_host_not_allowlisted_is_refused_before_connecting(server):
    other = server.replace("127.0.0.1", "localhost")
    with pytest.raises(FetchRefused, match="is not among the channel's file hosts"):
        fetch_file(f"{other}/file.pdf", policy(server))
    # http to the channel's own host is not https: refused too; and so are other schemes.
    with pytest.raises(FetchRefused, match="not among"):
        fetch_file("http://vendor.example/file.pdf", policy(server))
    with pytest.raises(FetchRefused, match="scheme 'file' refused"):
        fetch_file("file:///etc/passwd", policy(server))
    with pytest.raises(FetchRefused, match="credentials"):
        fetch_file(server.replace("http://", "http://user:pw@") + "/file.pdf", policy(server))
    assert Files.hits == []


@pytest.mark.parametrize("path", ["/big-announced", "/big-unannounced"])
def test_a_file_over_the_cap_is_refused(server, path):
    with pytest.raises(FetchRefused, match="cap of 4096"):
        fetch_file(f"{server}{path}", policy(server))


def test_refusals_never_carry_the_query_string(server):
    with pytest.raises(FetchRefused) as refused:
        fetch_file(f"{server}/redirect?token=SECRET-TOKEN", policy(server))
    assert "SECRET-TOKEN" not in str(refused.value) and "/redirect" in str(refused.value)
    with pytest.raises(FetchRefused) as refused:
        fetch_file("https://elsewhere.example/f.pdf?sig=SECRET-TOKEN", policy(server))
    assert "SECRET-TOKEN" not in str(refused.value)
    assert safe_url("https://u:p@h.example:8443/a/b.xml?sig=x#f") == "https://h.example:8443/a/b.xml"


def test_the_channel_setting_is_checked_when_the_configuration_is_read():
    assert parse_origin("files.vendor.example") == ("https", "files.vendor.example", None)
    assert parse_origin("http://127.0.0.1:8791") == ("http", "127.0.0.1", 8791)
    with pytest.raises(ValueError, match="file_hosts"):
        ChannelSettings(type="partner", base_url="https://p.example", file_hosts=("ftp://x.example/path",))


def test_a_refused_file_is_recorded_on_the_invoice_and_the_invoice_kept(world, server):
    """Through the Dispatcher: a channel (the scripted one: no file hosts) links a file on a host it may
    not use; the invoice is ISSUED, its file entry says why it was not fetched, nothing crashed."""
    url = f"{server}/file.pdf?token=SECRET-TOKEN"
    invoice = IssuedInvoice(
        number="12221761", code="050002000205", issued_on=dispatch_tests.INVOICE.issued_on,
        amount=Decimal("5327.43"), tax=Decimal("692.57"), files=(InvoiceFile(url=url, format_hint="pdf"),),
    )  # fmt: skip
    world.channel.script = [Issued((invoice,))]
    assert world.dispatch() == "issued"
    [item] = world.invoices()
    [entry] = item["files"]
    assert entry["ok"] is False and "key" not in entry
    assert entry["error"].startswith("fetch failed: FetchRefused: ") and "not among" in entry["error"]
    assert "SECRET-TOKEN" not in entry["error"]
    notes = [t.note or "" for t in world.stored().history if t.is_note]
    assert [n for n in notes if "file not fetched" in n] == [f"invoice 12221761: file not fetched ({entry['error']})"]
    assert Files.hits == []
