"""Routing and channel construction: which channel issues an application, built from configuration.

Adding a channel: its module, one line in CHANNEL_TYPES, and an entry under ``channels`` in the hub
configuration (docs/channels.md).
"""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Callable
from typing import Any

from fapiao_hub.channels.base import Channel
from fapiao_hub.config import ChannelSettings, HubConfig
from fapiao_hub.models import Application

# type -> "module:class", imported on first use (a function loads only the channels it needs).
CHANNEL_TYPES: dict[str, str] = {
    "xunlian": "fapiao_hub.channels.xunlian:XunlianChannel",
    "partner": "fapiao_hub.channels.partner:PartnerChannel",
    "kingdee": "fapiao_hub.channels.kingdee:KingdeeChannel",
    "ekuaibao": "fapiao_hub.channels.ekuaibao:EkuaibaoChannel",
}


def _secret_from_secrets_manager(name: str) -> dict[str, str]:
    from aws_lambda_powertools.utilities import parameters

    return json.loads(parameters.get_secret(name, max_age=300))


class ChannelRegistry:
    def __init__(
        self,
        config: Callable[[], HubConfig],
        *,
        secret_reader: Callable[[str], dict[str, str]] = _secret_from_secrets_manager,
    ):
        self._config = config
        self._secret_reader = secret_reader
        self._built: dict[str, tuple[ChannelSettings, Channel]] = {}
        self._lock = threading.Lock()

    def channel_for(self, application: Application, proposed: str | None) -> tuple[str | None, Channel | None]:
        config = self._config()
        name = config.route(
            seller_tax_number=application.seller.tax_number,
            business_type_code=application.business_type_code,
            company_channel=proposed,
        )
        if name is None:
            return None, None
        return name, self.channel(name)

    def channel(self, name: str) -> Channel | None:
        settings = self._config().channels.get(name)
        if settings is None or settings.type not in CHANNEL_TYPES:
            return None
        with self._lock:
            built = self._built.get(name)
            if built is None or built[0] != settings:  # configuration changed: rebuild
                built = (settings, self._build(name, settings))
                self._built[name] = built
            return built[1]

    def quiet_period(self, name: str) -> int:
        settings = self._config().channels.get(name)
        return settings.quiet_period_seconds if settings else 60

    def _build(self, name: str, settings: ChannelSettings) -> Channel:
        if settings.credentials_secret:
            credentials = {**settings.credentials, **self._secret_reader(settings.credentials_secret)}
            settings = settings.model_copy(update={"credentials": credentials})
        module_name, _, class_name = CHANNEL_TYPES[settings.type].partition(":")
        factory: Any = getattr(importlib.import_module(module_name), class_name)
        return factory(name, settings)
