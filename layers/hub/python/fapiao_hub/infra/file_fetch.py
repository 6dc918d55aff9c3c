"""Fetching an invoice file a channel linked to, within limits (a channel's URL is input, not trust).

:func:`fetch_file` GETs one URL under a :class:`FetchPolicy`:

- **scheme and host**: ``https`` to the channel's own host (its ``base_url``) or a host listed in
  the channel's ``file_hosts``; ``http`` only to a host listed there *with* the ``http://`` scheme
  (the loopback sandboxes of the local run). Entries are ``host``, ``host:port`` (https) or
  ``http://host:port`` / ``https://host``. Anything else (another host, ``file:``, ``ftp:``, a URL
  with credentials) is refused before a connection is made.
- **no redirects**: a 3xx is refused (a redirect could lead anywhere the allowlist does not).
- **size**: the body is streamed and refused past ``max_bytes`` (default 10 MiB), whatever
  ``Content-Length`` claims.
- **timeouts**: connect and read, explicit, and the whole body within three read timeouts.

A refusal raises :class:`FetchRefused` whose text names the host and path, never the query string
(signed URLs carry tokens there); the file store records it on the invoice's file entry (``error``)
and the invoice itself is recorded as usual.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from fapiao_hub.domain.config import parse_origin

MAX_FILE_BYTES = 10 * 1024 * 1024
CONNECT_TIMEOUT = 3.05
READ_TIMEOUT = 20.0
_CHUNK = 64 * 1024


class FetchRefused(Exception):
    """The URL is not fetched, or its answer not taken (the text says why; no query string)."""


@dataclass(frozen=True)
class FetchPolicy:
    """Where files may come from: origins as ``(scheme, host, port)``; port None = the default."""

    origins: frozenset[tuple[str, str, int | None]] = frozenset()
    max_bytes: int = MAX_FILE_BYTES
    connect_timeout: float = CONNECT_TIMEOUT
    read_timeout: float = READ_TIMEOUT

    @classmethod
    def for_channel(cls, base_url: str | None, file_hosts: Iterable[str] = (), **limits: float) -> FetchPolicy:
        """The channel's own host over https, plus its configured ``file_hosts``."""
        origins = set()
        if base_url:
            parts = urlsplit(base_url)
            if parts.hostname:
                origins.add(("https", parts.hostname.lower(), None))
        for entry in file_hosts:
            origins.add(parse_origin(entry))
        return cls(frozenset(origins), **limits)  # type: ignore[arg-type]

    def allows(self, scheme: str, host: str, port: int | None) -> bool:
        default = {"https": 443, "http": 80}[scheme]
        for o_scheme, o_host, o_port in self.origins:
            if o_scheme == scheme and o_host == host and (o_port or default) == (port or default):
                return True
        return False


def safe_url(url: str) -> str:
    """The URL for a message or a log: scheme, host and path, never the query or credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an unreadable URL)"
    return f"{parts.scheme}://{host}{port}{parts.path[:200]}"


def check_url(url: str, policy: FetchPolicy) -> None:
    """Raise FetchRefused unless the policy allows fetching ``url``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise FetchRefused(f"not a URL: {safe_url(url)}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchRefused(f"scheme {scheme or '(none)'!r} refused: only https (http for configured hosts)")
    if parts.username or parts.password:
        raise FetchRefused(f"a URL with credentials refused: {safe_url(url)}")
    host = (parts.hostname or "").lower()
    if not host or not policy.allows(scheme, host, port):
        raise FetchRefused(
            f"{safe_url(url)} refused: {scheme}://{host}{f':{port}' if port else ''} is not among the channel's "
            "file hosts (its base_url's host over https, or file_hosts)"
        )


def fetch_file(url: str, policy: FetchPolicy, session: object | None = None) -> bytes:
    """The file's bytes, or FetchRefused (see the module docstring). ``session``: a requests.Session."""
    import requests

    check_url(url, policy)
    getter = session if session is not None else requests
    try:
        response = getter.get(  # type: ignore[attr-defined]
            url, timeout=(policy.connect_timeout, policy.read_timeout), allow_redirects=False, stream=True,
            # Not compressed: the cap counts the bytes that arrive, and no small body inflates in memory.
            headers={"Accept-Encoding": "identity"},
        )  # fmt: skip
    except requests.RequestException as error:
        raise FetchRefused(f"{safe_url(url)}: {type(error).__name__}") from None
    with response:
        if 300 <= response.status_code < 400:
            raise FetchRefused(f"{safe_url(url)} answered a redirect (HTTP {response.status_code}): not followed")
        if response.status_code != 200:
            raise FetchRefused(f"{safe_url(url)} answered HTTP {response.status_code}")
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > policy.max_bytes:
            raise FetchRefused(f"{safe_url(url)}: {declared} bytes, more than the cap of {policy.max_bytes}")
        body = bytearray()
        # The read timeout bounds each wait; this bounds the whole body (a server dripping bytes).
        deadline = time.monotonic() + policy.read_timeout * 3
        try:
            for chunk in response.iter_content(_CHUNK):
                body += chunk
                if len(body) > policy.max_bytes:
                    raise FetchRefused(f"{safe_url(url)}: more than the cap of {policy.max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise FetchRefused(f"{safe_url(url)}: still arriving after {policy.read_timeout * 3:g} s")
        except requests.RequestException as error:
            raise FetchRefused(f"{safe_url(url)}: {type(error).__name__} while reading") from None
    return bytes(body)
