"""The hub's HMAC signature of a message: one format both ways, on the webhooks the notifier sends
(fapiao_hub.usecases.notify) and on the results channels push (fapiao_hub.usecases.callback_auth).

``X-Fapiao-Timestamp`` carries the signing time (epoch seconds) and ``X-Fapiao-Signature``
``sha256=`` + lower-case hex HMAC-SHA256, keyed with the shared secret, of the *signing string*: the
ASCII timestamp, a dot and the body's bytes exactly as sent (``b"1750000000." + body``); a push may
add a nonce, signed as ``b"1750000000." + nonce + b"." + body``.

Verifying a webhook (README)
----------------------------
```python
import hashlib
import hmac
import time


def verify_webhook(secret, headers, body, now=None, tolerance=300):
    # secret: the webhook's secret; headers: the request's headers; body: the raw bytes received.
    headers = {name.lower(): value for name, value in headers.items()}
    timestamp = headers.get("x-fapiao-timestamp", "")
    signature = headers.get("x-fapiao-signature", "")
    if not (timestamp.isascii() and timestamp.isdigit()) or not signature.startswith("sha256="):
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False  # too old (or from the future): a replay
    message = timestamp.encode("ascii") + b"." + body
    expected = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(signature[len("sha256=") :], expected)
```

Then de-duplicate on ``X-Fapiao-Event-Id`` (the same outcome may arrive more than once) and answer
2xx quickly; answer 4xx only for a request that can never succeed (it goes to the DLQ at once).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

SIGNATURE_PREFIX = "sha256="
TIMESTAMP_HEADER = "X-Fapiao-Timestamp"
SIGNATURE_HEADER = "X-Fapiao-Signature"


def signing_string(timestamp: str, raw_body: bytes, nonce: str | None = None) -> bytes:
    """What is signed (see the module docstring)."""
    prefix = f"{timestamp}." if nonce is None else f"{timestamp}.{nonce}."
    return prefix.encode("ascii") + raw_body


def sign(secret: bytes, timestamp: str, raw_body: bytes, nonce: str | None = None) -> str:
    """The ``X-Fapiao-Signature`` value: ``sha256=`` + lower-case hex HMAC-SHA256 of the signing string."""
    return SIGNATURE_PREFIX + hmac.new(secret, signing_string(timestamp, raw_body, nonce), hashlib.sha256).hexdigest()


def sign_webhook(secret: str, timestamp: int | str, body: bytes | str) -> str:
    """A webhook's ``X-Fapiao-Signature``, keyed with its secret (text)."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    return sign(secret.encode("utf-8"), str(timestamp), raw)


def verify_webhook(
    secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None, tolerance: int = 300
) -> bool:
    """What a receiver checks (the README snippet, in the module docstring, does the same)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
    signature = lowered.get(SIGNATURE_HEADER.lower(), "")
    if not (timestamp.isascii() and timestamp.isdigit()) or not signature.startswith(SIGNATURE_PREFIX):
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(signature, sign_webhook(secret, timestamp, body))
