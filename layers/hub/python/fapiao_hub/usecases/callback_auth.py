"""Who may push a result to the hub (``POST /v1/callbacks/{channel}``): pure checks and one port.

Every callback must present the channel's access token; a channel configured with an HMAC secret
must also sign each push, and a signed push is accepted once.

Access token
    The query parameter ``accessToken`` (seed 000: Ekuaibao's receiver takes its token there),
    compared with the channel's ``credentials["access_token"]`` (its configuration merged with its
    Secrets Manager secret: fapiao_hub.infra.credentials, the same values its calls use). A channel without a configured
    token refuses every push (fail closed). The comparison is constant-time on the SHA-256 of both
    values, so neither the content nor the length of the token leaks through timing.

Signature (only when ``credentials["hmac_secret"]`` is set)
    Headers (names matched case-insensitively; API Gateway hands them over lower-case):

    - ``x-fapiao-timestamp``: the signing time, whole seconds since the Unix epoch (digits only).
    - ``x-fapiao-signature``: ``sha256=`` + lower-case hex HMAC-SHA256 (upper case accepted) with
      the secret (UTF-8 bytes) as key over the *signing string*: the format of the hub's own outbound
      webhooks (fapiao_hub.infra.signatures), so one format serves both ways. The bare hex, without
      ``sha256=``, is accepted too (what channels signed before); any other prefix is a bad signature.
    - ``x-fapiao-nonce`` (optional): 8 to 128 characters of ``A-Z a-z 0-9 _ -``.

    The signing string is the ASCII timestamp, a dot, and the raw body bytes exactly as sent::

        b"1750000000." + raw_body

    With a nonce it also covers the nonce, so that a replayer cannot mint a new nonce for a captured
    push::

        b"1750000000." + nonce.encode("ascii") + b"." + raw_body

    A timestamp more than ``window`` seconds (300) before or after the hub's clock is stale.

Replay
    A signed push is accepted once: its key is ``"nonce:" + sha256(nonce)`` when it carries a nonce,
    else ``"body:" + sha256(signing string)`` (the same timestamp and body twice is a replay), and is
    recorded through :class:`ReplayGuard` until ``timestamp + window``, after which the timestamp is
    stale anyway. A channel re-sending a result signs it again with a new timestamp (or nonce) and is
    accepted; applying a result is idempotent. Pushes without a signature cannot be told apart from
    their replays: for them idempotent application is the only defence.

Reasons are fixed words (:data:`REASONS`), safe to log and to answer: they never contain the
token, the secret, a signature or the body.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from fapiao_hub.infra import signatures
from fapiao_hub.infra.signatures import SIGNATURE_PREFIX, sign, signing_string

ACCESS_TOKEN_PARAM = "accessToken"  # noqa: S105 (a parameter name)
# API Gateway hands headers over lower-case.
TIMESTAMP_HEADER = signatures.TIMESTAMP_HEADER.lower()
SIGNATURE_HEADER = signatures.SIGNATURE_HEADER.lower()
NONCE_HEADER = "x-fapiao-nonce"
DEFAULT_WINDOW_SECONDS = 300

OK = "ok"
TOKEN_NOT_CONFIGURED = "access_token_not_configured"  # noqa: S105 (a reason, not a secret)
MISSING_TOKEN = "missing_access_token"  # noqa: S105 (a reason, not a secret)
BAD_TOKEN = "bad_access_token"  # noqa: S105 (a reason, not a secret)
MISSING_TIMESTAMP = "missing_timestamp"
MALFORMED_TIMESTAMP = "malformed_timestamp"
MISSING_SIGNATURE = "missing_signature"
MALFORMED_NONCE = "malformed_nonce"
BAD_SIGNATURE = "bad_signature"
STALE_TIMESTAMP = "stale_timestamp"
REPLAYED = "replayed"
REASONS = frozenset(
    {
        OK,
        TOKEN_NOT_CONFIGURED,
        MISSING_TOKEN,
        BAD_TOKEN,
        MISSING_TIMESTAMP,
        MALFORMED_TIMESTAMP,
        MISSING_SIGNATURE,
        MALFORMED_NONCE,
        BAD_SIGNATURE,
        STALE_TIMESTAMP,
        REPLAYED,
    }
)

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{8,128}")


def _sha256(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def verify_access_token(presented: str | None, expected: str) -> bool:
    """Whether ``presented`` is ``expected`` (constant time; None or empty is never valid)."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(_sha256(presented.encode("utf-8")), _sha256(expected.encode("utf-8")))


@dataclass(frozen=True)
class SignatureCheck:
    ok: bool
    reason: str  # one of REASONS
    timestamp: int | None = None  # the parsed timestamp, when it was well formed


def verify_signature(
    secret: bytes,
    timestamp: str | None,
    signature: str | None,
    raw_body: bytes,
    now: float,
    window: int = DEFAULT_WINDOW_SECONDS,
    *,
    nonce: str | None = None,
) -> SignatureCheck:
    """Check a push's signature, then its freshness (``|now - timestamp| <= window``)."""
    if not timestamp:
        return SignatureCheck(False, MISSING_TIMESTAMP)
    if not _TIMESTAMP.fullmatch(timestamp):
        return SignatureCheck(False, MALFORMED_TIMESTAMP)
    seconds = int(timestamp)
    if not signature:
        return SignatureCheck(False, MISSING_SIGNATURE, seconds)
    if nonce is not None and not _NONCE.fullmatch(nonce):
        return SignatureCheck(False, MALFORMED_NONCE, seconds)
    expected = sign(secret, timestamp, raw_body, nonce).encode("ascii")
    presented = signature.strip().lower()
    if not presented.startswith(SIGNATURE_PREFIX):
        presented = SIGNATURE_PREFIX + presented  # bare hex (compatibility); "sha1=..." stays wrong
    presented_bytes = presented.encode("utf-8", errors="replace")
    if not hmac.compare_digest(presented_bytes, expected):
        return SignatureCheck(False, BAD_SIGNATURE, seconds)
    if abs(now - seconds) > window:
        return SignatureCheck(False, STALE_TIMESTAMP, seconds)
    return SignatureCheck(True, OK, seconds)


class ReplayGuard(Protocol):
    """Remembers the pushes already accepted (the store: a DynamoDB conditional put with a TTL)."""

    def first_time(self, key: str, expires_at: int) -> bool:
        """Record ``key`` until ``expires_at`` (epoch seconds); False when it was already recorded."""
        ...


@dataclass(frozen=True)
class AuthResult:
    ok: bool
    reason: str  # one of REASONS; safe to log


def replay_key(timestamp: str, raw_body: bytes, nonce: str | None = None) -> str:
    if nonce is not None:
        return "nonce:" + hashlib.sha256(nonce.encode("ascii")).hexdigest()
    return "body:" + hashlib.sha256(signing_string(timestamp, raw_body)).hexdigest()


def _single(value: object) -> str | None:
    """A query or header value; a list (multi-value event fields) counts only with one element."""
    if isinstance(value, list | tuple):
        value = value[0] if len(value) == 1 else None
    return value if isinstance(value, str) else None


# Refusals a newer secret value could turn into an acceptance (a rotated token or HMAC key).
_CREDENTIAL_REFUSALS = frozenset({TOKEN_NOT_CONFIGURED, BAD_TOKEN, MISSING_SIGNATURE, BAD_SIGNATURE})


def authenticate_callback(
    credentials: Mapping[str, str],
    query: Mapping[str, object] | None,
    headers: Mapping[str, object] | None,
    raw_body: bytes,
    now: float,
    replay: ReplayGuard,
    *,
    window: int = DEFAULT_WINDOW_SECONDS,
) -> AuthResult:
    """Whether a pushed body may be read (see the module docstring for what is checked).

    ``credentials``: the channel's, as resolved (fapiao_hub.infra.credentials: configuration merged with its
    Secrets Manager secret). When they are refused and can be re-read (``refreshed()``: a cached
    secret value old enough to re-read early), the push is checked once more with the re-read values:
    a channel that switched to a rotated token is accepted before the cache period ends. Nothing is
    recorded for a refused push, so the second check sees the replay guard as the first did.
    """
    result = _authenticate(credentials, query, headers, raw_body, now, replay, window)
    refreshed = getattr(credentials, "refreshed", None)
    if not result.ok and result.reason in _CREDENTIAL_REFUSALS and refreshed is not None:
        newer = refreshed()
        if newer is not None:
            result = _authenticate(newer, query, headers, raw_body, now, replay, window)
    return result


def _authenticate(
    credentials: Mapping[str, str],
    query: Mapping[str, object] | None,
    headers: Mapping[str, object] | None,
    raw_body: bytes,
    now: float,
    replay: ReplayGuard,
    window: int,
) -> AuthResult:
    expected = credentials.get("access_token", "")
    if not expected:
        return AuthResult(False, TOKEN_NOT_CONFIGURED)
    presented = _single((query or {}).get(ACCESS_TOKEN_PARAM))
    if not presented:
        return AuthResult(False, MISSING_TOKEN)
    if not verify_access_token(presented, expected):
        return AuthResult(False, BAD_TOKEN)

    secret = credentials.get("hmac_secret", "")
    if not secret:
        return AuthResult(True, OK)
    lower = {str(k).lower(): v for k, v in (headers or {}).items()}
    timestamp = _single(lower.get(TIMESTAMP_HEADER))
    nonce = _single(lower.get(NONCE_HEADER)) or None
    check = verify_signature(
        secret.encode("utf-8"),
        timestamp,
        _single(lower.get(SIGNATURE_HEADER)),
        raw_body,
        now,
        window,
        nonce=nonce,
    )
    if not check.ok or timestamp is None or check.timestamp is None:
        return AuthResult(False, check.reason)
    if not replay.first_time(replay_key(timestamp, raw_body, nonce), check.timestamp + window):
        return AuthResult(False, REPLAYED)
    return AuthResult(True, OK)
