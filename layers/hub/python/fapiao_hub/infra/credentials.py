"""The one credential path: a channel's credentials and a webhook's secrets, wherever they live.

Channel calls (channels/registry.py), callback authentication (callback_auth, through the registry)
and webhook signing (notifier) all read credentials here: the inline values of the configuration
(the local run's file only; ``config push`` refuses them) with the JSON object of the Secrets
Manager secret named by ``credentials_secret`` merged over them.

A secret's value is cached for ``max_age`` seconds (``CREDENTIALS_MAX_AGE_SECONDS``, 300), so a
rotated secret is used by every container within that period without a deploy. A caller that was
refused with a cached value (a channel pushed with a token the hub does not know yet) may ask for
one early re-read with :meth:`ResolvedCredentials.refreshed`, allowed only when the cached value is
older than ``refresh_after`` (``CREDENTIALS_REFRESH_AFTER_SECONDS``, 30): bad tokens cannot turn
every request into a Secrets Manager call. When Secrets Manager cannot be reached after the cache
period the last value is kept and asked for again after ``refresh_after``; with no value at all the
credentials are unavailable (:class:`CredentialsUnavailable`: nothing is sent or accepted).

Nothing here logs or raises a secret's value: errors name the secret (a name, not a secret) and
the kind of failure.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fapiao_hub.domain.config import ChannelSettings, Webhook

logger = logging.getLogger(__name__)

DEFAULT_MAX_AGE_SECONDS = 300
DEFAULT_REFRESH_AFTER_SECONDS = 30
# The keys of a webhook's secret that the notifier reads (the others are ignored).
WEBHOOK_SECRET_KEYS = ("secret", "access_token")

SecretFetch = Callable[[str], Any]  # a secret's name -> its value (SecretString, or already a dict)


class CredentialsUnavailable(RuntimeError):
    """A named secret could not be read (and none was read before), or its value is unusable."""


def secrets_manager_fetch(client_factory: Callable[[], Any]) -> SecretFetch:
    """Reads a secret through Powertools' SecretsProvider with a client of the caller's boto3 session.

    The client (and the provider) are made on the first read: a function whose configuration names no
    secret never creates one. Powertools' own cache is bypassed (``force_fetch``): the cache here
    decides when to read, with a clock tests can move.
    """
    provider: Any = None
    lock = threading.Lock()

    def fetch(name: str) -> Any:
        nonlocal provider
        with lock:
            if provider is None:
                from aws_lambda_powertools.utilities.parameters import SecretsProvider

                provider = SecretsProvider(boto3_client=client_factory())
        return provider.get(name, force_fetch=True)

    return fetch


def _default_client() -> Any:
    import boto3

    return boto3.client("secretsmanager")


@dataclass
class _Cached:
    values: dict[str, str]
    fetched_at: float
    next_read_at: float


class ResolvedCredentials(Mapping[str, str]):
    """Inline credentials with a secret merged over them; knows how to ask for a fresher value once."""

    def __init__(
        self, values: Mapping[str, str], *, source: Credentials | None = None, inline: Mapping[str, str] | None = None,
        secret_name: str | None = None,
    ) -> None:  # fmt: skip
        self._values = dict(values)
        self._source = source
        self._inline = dict(inline or {})
        self._secret_name = secret_name

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:  # never the values
        return f"ResolvedCredentials(keys={sorted(self._values)!r}, secret={self._secret_name!r})"

    def refreshed(self) -> ResolvedCredentials | None:
        """The credentials re-read from Secrets Manager, when the cached value is old enough to re-read
        early and the re-read value differs; else None (nothing newer to try)."""
        if self._source is None or not self._secret_name:
            return None
        newer = self._source.reread(self._secret_name)
        if newer is None:
            return None
        merged = {**self._inline, **newer}
        if merged == self._values:
            return None
        return ResolvedCredentials(merged, source=self._source, inline=self._inline, secret_name=self._secret_name)


class Credentials:
    """Secrets Manager values by secret name, cached ``max_age`` seconds (see the module docstring)."""

    def __init__(
        self,
        fetch: SecretFetch | None = None,
        *,
        max_age: float = DEFAULT_MAX_AGE_SECONDS,
        refresh_after: float = DEFAULT_REFRESH_AFTER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch or secrets_manager_fetch(_default_client)
        self.max_age = max_age
        self.refresh_after = refresh_after
        self.clock = clock
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def resolve(self, inline: Mapping[str, str], secret_name: str | None) -> ResolvedCredentials:
        """``inline`` with the named secret's values merged over it (no name: ``inline`` as it is)."""
        if not secret_name:
            return ResolvedCredentials(inline)
        merged = {**inline, **self._current(secret_name)}
        return ResolvedCredentials(merged, source=self, inline=inline, secret_name=secret_name)

    def for_channel(self, settings: ChannelSettings) -> ResolvedCredentials:
        return self.resolve(settings.credentials, settings.credentials_secret)

    def for_webhook(self, webhook: Webhook) -> Webhook:
        """The webhook with its signing secret and access token as the secret says (merged over inline)."""
        if not webhook.credentials_secret:
            return webhook
        inline = {key: value for key in WEBHOOK_SECRET_KEYS if (value := getattr(webhook, key))}
        resolved = self.resolve(inline, webhook.credentials_secret)
        return webhook.model_copy(update={key: resolved.get(key) for key in WEBHOOK_SECRET_KEYS})

    def reread(self, name: str) -> dict[str, str] | None:
        """Read ``name`` again now if its cached value is older than ``refresh_after``; its values, or
        None when it is too young to re-read (or could not be read: the cached value stays)."""
        now = self.clock()
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None and now - cached.fetched_at < self.refresh_after:
                return None
            return self._read(name, now, cached, quiet=True)

    def _current(self, name: str) -> dict[str, str]:
        now = self.clock()
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None and now < cached.next_read_at:
                return cached.values
            values = self._read(name, now, cached, quiet=False)
            assert values is not None  # not quiet: raises instead
            return values

    def _read(self, name: str, now: float, cached: _Cached | None, *, quiet: bool) -> dict[str, str] | None:
        try:
            values = _secret_values(name, self._fetch(name))
        except Exception as error:  # an SDK error, a missing secret, an unusable value
            what = error.args[0] if isinstance(error, CredentialsUnavailable) else _failure(error)
            if cached is not None:
                # Keep working with the last value; ask again soon rather than on every request.
                cached.next_read_at = now + self.refresh_after
                logger.warning("secret not re-read: the cached value stays", extra={"secret": name, "error": what})
                return None if quiet else cached.values
            if quiet:
                return None
            if isinstance(error, CredentialsUnavailable):
                raise
            raise CredentialsUnavailable(f"secret {name}: not readable ({what})") from None
        self._cache[name] = _Cached(values, now, now + self.max_age)
        return values


def _failure(error: BaseException) -> str:
    """What went wrong, in words safe to log: the AWS error code (ResourceNotFoundException,
    AccessDeniedException) or the exception's class, never its message."""
    # Powertools wraps the SDK's error (raised while handling it: the context, not the cause).
    while type(error).__name__ == "GetParameterError" and (error.__cause__ or error.__context__) is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    code = getattr(error, "response", {}).get("Error", {}).get("Code") if hasattr(error, "response") else None
    return str(code) if code else type(error).__name__


def _secret_values(name: str, raw: Any) -> dict[str, str]:
    """A secret's value as the hub uses it: a JSON object of strings (never echoed in errors)."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise CredentialsUnavailable(f"secret {name}: not JSON") from None
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise CredentialsUnavailable(f"secret {name}: not a JSON object of strings")
    return dict(raw)
