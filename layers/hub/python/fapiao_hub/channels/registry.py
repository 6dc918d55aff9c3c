"""Routing and channel construction: which channel issues an application, built from configuration.

Routing is by capability: the seller's channels in order of preference (HubConfig.channel_preferences),
keeping those whose capabilities (the module's declaration, narrowed by the channel's configuration)
cover the application's type and colour. The first is where it goes; the rest are the fallbacks a
failover may use, in order.

Adding a channel: its module (with its ``CAPABILITIES``), one line in CHANNEL_TYPES, and an entry
under ``channels`` in the hub configuration (docs/channels.md).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

from fapiao_hub.channels.base import Channel
from fapiao_hub.domain.config import ChannelSettings, HubConfig
from fapiao_hub.domain.models import Application, InvoiceType
from fapiao_hub.domain.results import Capabilities
from fapiao_hub.infra.credentials import Credentials, ResolvedCredentials
from fapiao_hub.infra.file_fetch import FetchPolicy

# type -> "module:class", imported on first use (a function loads only the channels it needs).
CHANNEL_TYPES: dict[str, str] = {
    "xunlian": "fapiao_hub.channels.xunlian:XunlianChannel",
    "partner": "fapiao_hub.channels.partner:PartnerChannel",
    "kingdee": "fapiao_hub.channels.kingdee:KingdeeChannel",
    "ekuaibao": "fapiao_hub.channels.ekuaibao:EkuaibaoChannel",
}


class ChannelConfigurationError(ValueError):
    """A channel's configuration asks for more than its module can do (or names no known module).

    ``path`` is the JSON path in the hub configuration (``channels.xunlian.capabilities.blue``)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path


def _channel_class(type_name: str) -> Any:
    module_name, _, class_name = CHANNEL_TYPES[type_name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def declared_capabilities(type_name: str) -> Capabilities:
    """What a channel module says it can do at most (its class's ``CAPABILITIES``)."""
    return _channel_class(type_name).CAPABILITIES


def effective_capabilities(name: str, settings: ChannelSettings) -> Capabilities:
    """The module's declaration narrowed by the channel's configuration; ChannelConfigurationError
    (naming the JSON path) where the configuration asks for more."""
    if settings.type not in CHANNEL_TYPES:
        known = ", ".join(sorted(CHANNEL_TYPES))
        raise ChannelConfigurationError(f"channels.{name}.type", f"unknown channel type {settings.type!r} ({known})")
    declared = declared_capabilities(settings.type)
    narrowing = settings.capabilities
    dedupes = settings.dedupes_request_number
    if dedupes is None:  # a module may leave a capability off until configured (Xunlian: per contract)
        dedupes = getattr(_channel_class(settings.type), "DEDUPES_UNLESS_CONFIGURED", declared.dedupes_request_number)
    asked: dict[str, Any] = {"dedupes_request_number": dedupes}
    if narrowing is not None:
        asked.update(blue=narrowing.blue, red=narrowing.red, void=narrowing.void, can_query=narrowing.can_query)
    for key, value in asked.items():
        try:
            declared.narrowed(**{key: value})
        except ValueError as error:
            path = (
                f"channels.{name}.{key}" if key == "dedupes_request_number" else f"channels.{name}.capabilities.{key}"
            )
            raise ChannelConfigurationError(
                path, f"{error.args[0].partition(': ')[2]} (the {settings.type} module cannot do more than it declares)"
            ) from None
    return declared.narrowed(**asked)


def configuration_problems(config: HubConfig) -> list[str]:
    """Every channel configuration that asks for more than its module can (``path: why``); empty if none."""
    problems = []
    for name, settings in config.channels.items():
        try:
            effective_capabilities(name, settings)
        except ChannelConfigurationError as error:
            problems.append(str(error))
    return problems


class ChannelRegistry:
    def __init__(self, config: Callable[[], HubConfig], *, credentials: Credentials | None = None):
        self._config = config
        # The one credential path (fapiao_hub.infra.credentials): the same resolved values for the calls a
        # channel makes and for the pushes it sends.
        self._credentials = credentials or Credentials()
        self._built: dict[str, tuple[ChannelSettings, Channel]] = {}
        self._lock = threading.Lock()

    def channel_for(self, application: Application, proposed: str | None) -> tuple[str | None, Channel | None]:
        """The channel an application goes to: ``proposed`` (the one stored on it: chosen at intake, or
        by a failover) when there is one, else the first capable channel."""
        if proposed is None:
            capable = self.capable_channels(application)
            if not capable:
                preferred = self.preferred_channels(application)
                return (preferred[0] if preferred else None), None
            proposed = capable[0]
        return proposed, self.channel(proposed)

    def preferred_channels(self, application: Application) -> tuple[str, ...]:
        """The seller's channels in order of preference, before capabilities are considered."""
        config = self._config()
        company = config.company(application.source_system, application.company_code)
        return config.channel_preferences(
            seller_tax_number=application.seller.tax_number,
            business_type_code=application.business_type_code,
            company_channels=company.channel_names if company else (),
        )

    def capable_channels(self, application: Application) -> list[str]:
        """The configured channels that can issue this application (its type and colour), most
        preferred first: the first is where it goes, the others are a failover's, in order."""
        return [
            name
            for name in self.preferred_channels(application)
            if (caps := self.capabilities(name)) is not None
            and caps.issues(application.invoice_type, application.direction)
        ]

    def issuable(self, application: Application) -> dict[str, list[InvoiceType]]:
        """What the seller's configured channels issue, by colour ("blue", "red"): for refusals."""
        found: dict[str, list[InvoiceType]] = {"blue": [], "red": []}
        for name in self.preferred_channels(application):
            caps = self.capabilities(name)
            if caps is None:
                continue
            for colour, types in (("blue", caps.blue), ("red", caps.red)):
                found[colour] += [t for t in InvoiceType if t in types and t not in found[colour]]
        return found

    def configured(self, name: str) -> bool:
        return name in self._config().channels

    def capabilities(self, name: str) -> Capabilities | None:
        """A configured channel's capabilities (None: not configured). Raises ChannelConfigurationError."""
        settings = self._config().channels.get(name)
        if settings is None:
            return None
        return effective_capabilities(name, settings)

    def credentials(self, name: str) -> ResolvedCredentials | None:
        """A configured channel's credentials as callbacks are checked against (None: not configured).
        Raises CredentialsUnavailable when its secret cannot be read."""
        settings = self._config().channels.get(name)
        return None if settings is None else self._credentials.for_channel(settings)

    def channel(self, name: str) -> Channel | None:
        settings = self._config().channels.get(name)
        if settings is None or settings.type not in CHANNEL_TYPES:
            return None
        if settings.credentials_secret:
            resolved = dict(self._credentials.for_channel(settings))
            settings = settings.model_copy(update={"credentials": resolved})
        with self._lock:
            built = self._built.get(name)
            if built is None or built[0] != settings:  # configuration or a secret changed: rebuild
                built = (settings, self._build(name, settings))
                self._built[name] = built
            return built[1]

    def fetch_policy(self, name: str) -> FetchPolicy:
        """Where this channel's invoice files may be fetched from (file_fetch.py); nowhere if unknown."""
        settings = self._config().channels.get(name)
        if settings is None:
            return FetchPolicy()
        return FetchPolicy.for_channel(settings.base_url, settings.file_hosts)

    def quiet_period(self, name: str) -> int:
        settings = self._config().channels.get(name)
        return settings.quiet_period_seconds if settings else 60

    def _build(self, name: str, settings: ChannelSettings) -> Channel:
        channel = _channel_class(settings.type)(name, settings)
        # What the workflow reads is the configured channel's, never more than the module declares.
        capabilities = effective_capabilities(name, settings)
        channel.capabilities = capabilities
        channel.can_query = capabilities.can_query
        channel.dedupes_request_number = capabilities.dedupes_request_number
        return channel
