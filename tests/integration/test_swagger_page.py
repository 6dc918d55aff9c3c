"""The local run's Swagger UI page, rendered by headless Chromium: the intake route is on it.

The screenshot is kept at test-artifacts/swagger.png. Chromium is required (Debian: ``apt-get
install chromium``; ``make test`` installs it): without it this test fails, it does not skip.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "test-artifacts" / "swagger.png"
RENDER_SECONDS = 120
# Swagger UI's rendering of POST /v1/invoice-orders: an operation block and its path.
INTAKE_BLOCK = re.compile(
    r'<div class="opblock opblock-post[^"]*" id="operations-intake-submitInvoiceOrder">.*?'
    r'<span class="opblock-summary-path" data-path="/v1/invoice-orders">',
    re.DOTALL,
)


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("Chromium is not installed; the Swagger page test needs it: apt-get install chromium (as root)")


def render(binary: str, url: str, profile: Path, *output: str) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run, offline apart from ``url`` (no first-run, sync or update traffic)."""
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        "--window-size=1280,1600",
        *output,
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=RENDER_SECONDS, check=False)  # noqa: S603
    assert done.returncode == 0, f"chromium exited {done.returncode}:\n{done.stderr[-4000:]}"
    return done


def get(url: str) -> tuple[int, str, bytes]:
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1"
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", parts.path)
        response = conn.getresponse()
        return response.status, response.getheader("content-type") or "", response.read()
    finally:
        conn.close()


def test_swagger_page_renders_the_intake_route(tmp_path: Path) -> None:
    binary = chromium()
    from local.run import start

    try:
        with start(api_port=0, state_dir=tmp_path / "state") as hub:
            status, content_type, body = get(f"{hub.api_url}/openapi.json")
            assert status == 200 and content_type.startswith("application/json")
            assert "/v1/invoice-orders" in json.loads(body)["paths"]
            status, content_type, body = get(f"{hub.api_url}/swagger")
            assert status == 200 and content_type.startswith("text/html")
            assert b"SwaggerUIBundle" in body and b"<script src=" not in body  # served inline, no CDN

            url = f"{hub.api_url}/swagger"
            dom = render(binary, url, tmp_path / "profile-dom", "--dump-dom").stdout
            assert INTAKE_BLOCK.search(dom), f"Swagger UI did not render POST /v1/invoice-orders:\n{dom[-3000:]}"

            SCREENSHOT.parent.mkdir(exist_ok=True)
            SCREENSHOT.unlink(missing_ok=True)
            render(binary, url, tmp_path / "profile-shot", f"--screenshot={SCREENSHOT}")
            assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "no PNG screenshot written"
    finally:
        from fapiao_hub import runtime

        runtime.reset()  # its caches point at the stopped moto
