"""Console function: the operations console's static files at GET /ops, /ops/ and /ops/{proxy+}.

The files live beside this module in static/ and are read once per container. The function touches
nothing else (no table, queue or secret): the page talks to the ops API (/v1/ops/...) from the
browser with the operator's token. Standard library only, so a cold start imports next to nothing.

Every answer carries a Content-Security-Policy that allows no inline script (and nothing from
another origin), nosniff, no framing and no referrer. Caching: each file has a strong ETag and
``Cache-Control: no-cache`` (the browser revalidates, a 304 costs a few bytes): a deploy replaces
the files under the same names, so no version may be kept unchecked.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

STATIC = Path(__file__).resolve().parent / "static"
PREFIX = "/ops/"
INDEX = "index.html"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}
_TEXT = (".html", ".css", ".js", ".svg", ".json")


def _load(root: Path) -> dict[str, tuple[bytes, str, str]]:
    """Every servable file under ``root``: its path relative to /ops/ -> (bytes, content type, ETag).

    Only these names are ever answered, so no request path can reach another file (no traversal)."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in CONTENT_TYPES and not path.name.startswith("."):
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            files[path.relative_to(root).as_posix()] = (body, CONTENT_TYPES[path.suffix], etag)
    return files


FILES = _load(STATIC)


def _answer(status: int, headers: dict[str, str], body: bytes = b"", binary: bool = False) -> dict[str, Any]:
    answer: dict[str, Any] = {"statusCode": status, "headers": {**SECURITY_HEADERS, **headers}}
    if binary:
        answer["body"] = base64.b64encode(body).decode("ascii")
        answer["isBase64Encoded"] = True
    else:
        answer["body"] = body.decode("utf-8")
        answer["isBase64Encoded"] = False
    return answer


def _not_found() -> dict[str, Any]:
    return _answer(404, {"content-type": "text/plain; charset=utf-8", "cache-control": "no-store"}, b"not found\n")


def lambda_handler(event: dict, context: Any) -> dict:
    http = (event.get("requestContext") or {}).get("http") or {}
    method = str(http.get("method") or "GET").upper()
    path = str(event.get("rawPath") or http.get("path") or "")
    if method not in ("GET", "HEAD"):
        return _answer(405, {"allow": "GET, HEAD", "content-type": "text/plain; charset=utf-8"}, b"GET only\n")
    if path == PREFIX.rstrip("/"):
        # Relative links (console.js, console.css) resolve against /ops/, so /ops itself moves there.
        return _answer(308, {"location": PREFIX, "cache-control": "no-cache"})
    if not path.startswith(PREFIX):
        return _not_found()
    name = path[len(PREFIX) :] or INDEX
    found = FILES.get(name)
    if found is None:
        return _not_found()
    body, content_type, etag = found
    headers = {"content-type": content_type, "cache-control": "no-cache", "etag": etag}
    request_headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    if etag in [tag.strip() for tag in request_headers.get("if-none-match", "").split(",")]:
        return _answer(304, headers)
    if method == "HEAD":
        return _answer(200, headers)
    return _answer(200, headers, body, binary=not name.endswith(_TEXT))
