"""Who may push a result to the hub: access token, HMAC signature, freshness, replay."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from fapiao_hub.domain.config import ChannelSettings
from fapiao_hub.infra.signatures import sign
from fapiao_hub.usecases import callback_auth
from fapiao_hub.usecases.callback_auth import (
    REASONS,
    AuthResult,
    authenticate_callback,
    replay_key,
    verify_access_token,
    verify_signature,
)

TOKEN = "ID01w4CBe9Vjpd:xgJ3wajigF25H0"
SECRET = "s3cr3t-hmac-key-for-tests"
NOW = 1_750_000_000.0
BODY = b'{"channelCode":"jcsk","serialNo":"FH1","result":2}'


class InMemoryReplayGuard:
    """The test double of the store's conditional write (tests only)."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def first_time(self, key: str, expires_at: int) -> bool:
        if key in self.seen:
            return False
        self.seen[key] = expires_at
        return True


def channel(**credentials: str) -> dict[str, str]:
    """A channel's credentials as the registry resolves them (configuration + its secret)."""
    return ChannelSettings(type="ekuaibao", base_url="https://x", credentials=credentials).credentials


TOKEN_ONLY = channel(access_token=TOKEN)
SIGNED = channel(access_token=TOKEN, hmac_secret=SECRET)


def signed_headers(body: bytes = BODY, *, at: float = NOW, nonce: str | None = None) -> dict[str, str]:
    timestamp = str(int(at))
    headers = {
        "x-fapiao-timestamp": timestamp,
        "x-fapiao-signature": sign(SECRET.encode(), timestamp, body, nonce),
    }
    if nonce is not None:
        headers["x-fapiao-nonce"] = nonce
    return headers


def auth(
    settings: dict[str, str] = SIGNED,
    *,
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
    body: bytes = BODY,
    now: float = NOW,
    replay: InMemoryReplayGuard | None = None,
) -> AuthResult:
    query = {} if token is None else {"accessToken": token}
    return authenticate_callback(
        settings,
        query,
        signed_headers(body) if headers is None else headers,
        body,
        now,
        replay if replay is not None else InMemoryReplayGuard(),
    )


# --------------------------------------------------------------------------- access token


def test_verify_access_token():
    assert verify_access_token(TOKEN, TOKEN)
    assert not verify_access_token(TOKEN + "x", TOKEN)
    assert not verify_access_token(TOKEN[:-1], TOKEN)
    assert not verify_access_token(None, TOKEN)
    assert not verify_access_token("", TOKEN)
    assert not verify_access_token("", "")
    assert not verify_access_token("änderung", TOKEN)  # non-ASCII never raises


def test_good_token_without_signing():
    assert auth(TOKEN_ONLY, headers={}) == AuthResult(True, "ok")


def test_token_refusals_have_distinct_reasons():
    assert auth(TOKEN_ONLY, token="forged-token", headers={}) == AuthResult(False, "bad_access_token")
    assert auth(TOKEN_ONLY, token=None, headers={}) == AuthResult(False, "missing_access_token")
    assert auth(TOKEN_ONLY, token="", headers={}) == AuthResult(False, "missing_access_token")
    assert auth(channel(), headers={}) == AuthResult(False, "access_token_not_configured")
    assert auth(channel(hmac_secret=SECRET)) == AuthResult(False, "access_token_not_configured")


def test_the_token_is_checked_before_the_signature():
    assert auth(SIGNED, token="forged-token").reason == "bad_access_token"


def test_query_values_as_lists():
    guard = InMemoryReplayGuard()
    ok = authenticate_callback(TOKEN_ONLY, {"accessToken": [TOKEN]}, {}, BODY, NOW, guard)
    assert ok == AuthResult(True, "ok")
    two = authenticate_callback(TOKEN_ONLY, {"accessToken": [TOKEN, TOKEN]}, {}, BODY, NOW, guard)
    assert two == AuthResult(False, "missing_access_token")


# --------------------------------------------------------------------------- signature


def test_the_signing_string_is_timestamp_dot_body():
    expected = hmac.new(SECRET.encode(), b"1750000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET.encode(), "1750000000", BODY) == "sha256=" + expected
    with_nonce = hmac.new(SECRET.encode(), b"1750000000.abcdefgh12." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET.encode(), "1750000000", BODY, "abcdefgh12") == "sha256=" + with_nonce


def test_one_signature_format_both_ways():
    # What the hub sends its business systems (notifier) is what it takes from a channel.
    from fapiao_hub.infra.signatures import sign_webhook, verify_webhook

    outbound = sign_webhook(SECRET, "1750000000", BODY)
    assert outbound == sign(SECRET.encode(), "1750000000", BODY)
    assert auth(headers={"x-fapiao-timestamp": "1750000000", "x-fapiao-signature": outbound}) == AuthResult(True, "ok")
    assert verify_webhook(SECRET, signed_headers(), BODY, now=NOW)


def test_bare_hex_signature_is_accepted_for_compatibility():
    bare = hmac.new(SECRET.encode(), b"1750000000." + BODY, hashlib.sha256).hexdigest()
    guard = InMemoryReplayGuard()
    assert auth(headers={"x-fapiao-timestamp": "1750000000", "x-fapiao-signature": bare}, replay=guard).ok
    assert auth(headers={"x-fapiao-timestamp": "1750000000", "x-fapiao-signature": bare.upper()}).ok
    # The same push in the other form is the same push: a replay.
    assert auth(headers=signed_headers(), replay=guard) == AuthResult(False, "replayed")


@pytest.mark.parametrize(
    "signature",
    [
        "sha1={hex}",
        "sha512={hex}",
        "sha256:{hex}",
        "sha256= {hex}",
        "sha256=sha256={hex}",
        "hmac-sha256={hex}",
        "sha256=",
    ],
)
def test_a_signature_with_another_prefix_is_refused(signature):
    bare = hmac.new(SECRET.encode(), b"1750000000." + BODY, hashlib.sha256).hexdigest()
    headers = {"x-fapiao-timestamp": "1750000000", "x-fapiao-signature": signature.format(hex=bare)}
    guard = InMemoryReplayGuard()
    assert auth(headers=headers, replay=guard) == AuthResult(False, "bad_signature")
    assert guard.seen == {}


def test_signed_push_is_accepted_and_recorded_until_the_window_ends():
    guard = InMemoryReplayGuard()
    assert auth(replay=guard) == AuthResult(True, "ok")
    assert guard.seen == {replay_key("1750000000", BODY): 1_750_000_000 + 300}
    assert replay_key("1750000000", BODY) == "body:" + hashlib.sha256(b"1750000000." + BODY).hexdigest()


def test_header_names_are_case_insensitive():
    headers = {name.title(): value for name, value in signed_headers().items()}
    assert auth(headers=headers) == AuthResult(True, "ok")
    assert auth(headers={"X-FAPIAO-TIMESTAMP": "1750000000", **signed_headers()}).ok
    upper_hex = {**signed_headers(), "x-fapiao-signature": signed_headers()["x-fapiao-signature"].upper()}
    assert auth(headers=upper_hex).ok


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({**signed_headers(), "x-fapiao-signature": "0" * 64}, "bad_signature"),
        ({**signed_headers(), "x-fapiao-signature": "签名"}, "bad_signature"),
        ({**signed_headers(), "x-fapiao-timestamp": "1750000001"}, "bad_signature"),
        ({"x-fapiao-timestamp": "1750000000"}, "missing_signature"),
        ({"x-fapiao-signature": signed_headers()["x-fapiao-signature"]}, "missing_timestamp"),
        ({**signed_headers(), "x-fapiao-timestamp": "1750000000.5"}, "malformed_timestamp"),
        ({**signed_headers(), "x-fapiao-timestamp": "-1"}, "malformed_timestamp"),
        ({**signed_headers(), "x-fapiao-nonce": "short"}, "malformed_nonce"),
        ({}, "missing_timestamp"),
    ],
)
def test_signature_refusals(headers, reason):
    assert auth(headers=headers) == AuthResult(False, reason)


def test_a_tampered_body_is_refused():
    assert auth(headers=signed_headers(BODY), body=BODY.replace(b"2", b"0")) == AuthResult(False, "bad_signature")


@pytest.mark.parametrize(("offset", "ok"), [(-301, False), (-300, True), (300, True), (301, False)])
def test_the_300_second_window(offset, ok):
    # A push signed `offset` seconds before the hub's clock (negative: signed in the future).
    result = auth(headers=signed_headers(at=NOW - offset))
    assert result == (AuthResult(True, "ok") if ok else AuthResult(False, "stale_timestamp"))


def test_a_replayed_push_is_refused():
    guard = InMemoryReplayGuard()
    headers = signed_headers()
    assert auth(headers=headers, replay=guard).ok
    assert auth(headers=headers, replay=guard, now=NOW + 10) == AuthResult(False, "replayed")
    # The channel re-delivering the same result signs it again: accepted (applying it is idempotent).
    assert auth(headers=signed_headers(at=NOW + 1), replay=guard, now=NOW + 10).ok


def test_nonces_key_the_replay_guard_and_are_signed():
    guard = InMemoryReplayGuard()
    first = signed_headers(nonce="nonce-0000000001")
    second = signed_headers(nonce="nonce-0000000002")
    assert auth(headers=first, replay=guard).ok
    assert auth(headers=second, replay=guard).ok  # same timestamp and body, another nonce
    assert auth(headers=first, replay=guard) == AuthResult(False, "replayed")
    assert "nonce:" + hashlib.sha256(b"nonce-0000000001").hexdigest() in guard.seen
    # A replayer cannot mint a fresh nonce for a captured push: the nonce is signed.
    forged = {**first, "x-fapiao-nonce": "nonce-0000000003"}
    assert auth(headers=forged, replay=guard) == AuthResult(False, "bad_signature")


def test_refused_pushes_are_not_recorded():
    guard = InMemoryReplayGuard()
    auth(headers={**signed_headers(), "x-fapiao-signature": "0" * 64}, replay=guard)
    auth(headers=signed_headers(at=NOW - 1000), replay=guard)
    assert guard.seen == {}


def test_verify_signature_directly():
    check = verify_signature(SECRET.encode(), "1750000000", sign(SECRET.encode(), "1750000000", BODY), BODY, NOW)
    assert (check.ok, check.reason, check.timestamp) == (True, "ok", 1_750_000_000)
    stale = verify_signature(SECRET.encode(), "1750000000", sign(SECRET.encode(), "1750000000", BODY), BODY, NOW + 301)
    assert (stale.ok, stale.reason) == (False, "stale_timestamp")
    narrow = verify_signature(
        SECRET.encode(), "1750000000", sign(SECRET.encode(), "1750000000", BODY), BODY, NOW + 11, window=10
    )
    assert narrow.reason == "stale_timestamp"
    assert verify_signature(SECRET.encode(), None, None, BODY, NOW).reason == "missing_timestamp"


def test_reasons_are_fixed_words_without_secrets():
    results = [
        auth(TOKEN_ONLY, headers={}),
        auth(TOKEN_ONLY, token="forged", headers={}),
        auth(TOKEN_ONLY, token=None, headers={}),
        auth(headers={**signed_headers(), "x-fapiao-signature": "0" * 64}),
        auth(headers=signed_headers(at=NOW - 301)),
    ]
    guard = InMemoryReplayGuard()
    auth(replay=guard)
    results.append(auth(replay=guard))
    reasons = [r.reason for r in results]
    assert reasons == [
        "ok",
        "bad_access_token",
        "missing_access_token",
        "bad_signature",
        "stale_timestamp",
        "replayed",
    ]
    assert set(reasons) <= REASONS
    for reason in REASONS:
        assert TOKEN not in reason and SECRET not in reason and "forged" not in reason
    assert callback_auth.TIMESTAMP_HEADER == "x-fapiao-timestamp"
