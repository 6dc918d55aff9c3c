"""Revocation without waiting for the configuration cache.

The hub configuration is cached for minutes (``HUB_CONFIG_MAX_AGE_SECONDS``, 300): adding a
business system or a token may wait that long, taking a token away may not. So a token the cached
configuration accepts is confirmed against its caller's own entry as stored now, read at most
``max_age`` seconds ago (``TOKEN_REVOCATION_MAX_AGE_SECONDS``, 5): in AWS one DynamoDB GetItem of the
caller's item (``business_system#<id>`` / ``operator#<name>``) per caller and container every few
seconds, or the SSM parameter while the configuration still lives there. The token must still be
among the entry's digests and an operator must not be ``revoked``; an operator's role and scopes are
taken from the same entry, so a demotion applies as soon. An entry gone, unreadable or invalid
refuses (fail closed). A local file needs none of this: it is re-read whenever it changes.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from fapiao_hub.domain.config import CONFIG_PARTITION, BusinessSystem, Operator, token_sha256

logger = logging.getLogger(__name__)

SYSTEM_PREFIX = "business_system#"  # the items' sort keys (config.config_items)
OPERATOR_PREFIX = "operator#"
_SECTIONS = {SYSTEM_PREFIX: "business_systems", OPERATOR_PREFIX: "operators"}

#: A caller's entry as stored now (its item's sort key -> the entry's JSON object, None: gone).
EntryReader = Callable[[str], dict[str, Any] | None]


class CallerCheck:
    """Confirms a token against its caller's current entry, each entry cached ``max_age`` seconds."""

    def __init__(self, read_entry: EntryReader, *, max_age: float = 5, clock: Callable[[], float] = time.monotonic):
        self._read = read_entry
        self.max_age = max_age
        self.clock = clock
        self._cache: dict[str, tuple[dict[str, Any] | None, float]] = {}
        self._lock = threading.Lock()

    def business_system(self, system_id: str, token: str) -> bool:
        """Whether ``token`` is still one of the business system's tokens."""
        entry = self._entry(SYSTEM_PREFIX + system_id)
        system = _valid(BusinessSystem, entry, SYSTEM_PREFIX + system_id)
        return system is not None and _holds(system.token_sha256, token)

    def operator(self, name: str, token: str) -> Operator | None:
        """The operator as configured now, when ``token`` is still theirs and they are not revoked."""
        entry = self._entry(OPERATOR_PREFIX + name)
        operator = _valid(Operator, entry, OPERATOR_PREFIX + name)
        if operator is None or operator.revoked or not _holds(operator.token_sha256, token):
            return None
        return operator

    def _entry(self, key: str) -> dict[str, Any] | None:
        now = self.clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and now - cached[1] < self.max_age:
                return cached[0]
        entry = self._read(key)  # outside the lock: a slow read does not hold up other callers
        with self._lock:
            self._cache[key] = (entry, now)
        return entry


def _holds(digests: tuple[str, ...], token: str) -> bool:
    presented = token_sha256(token)
    found = False
    for digest in digests:  # every digest, constant time each (as config.authenticate)
        found |= hmac.compare_digest(presented, digest)
    return found


def _valid[T: (BusinessSystem, Operator)](model: type[T], entry: dict[str, Any] | None, key: str) -> T | None:
    if entry is None:
        return None
    try:
        return model.model_validate(entry)
    except ValidationError:
        logger.warning("caller's entry is not valid: its tokens are refused", extra={"entry": key})
        return None


def table_reader(table: Any, fallback: EntryReader | None = None) -> EntryReader:
    """Entries from the configuration table (``config push``): one GetItem. While the table holds no
    items at all the configuration is the parameter's (config.load_hub_config), so is the entry."""

    def read(key: str) -> dict[str, Any] | None:
        item = table.get_item(Key={"id": CONFIG_PARTITION, "sk": key}, ConsistentRead=True).get("Item")
        if item is not None:
            return json.loads(item["value"])
        if fallback is not None:
            from boto3.dynamodb.conditions import Key

            if not table.query(KeyConditionExpression=Key("id").eq(CONFIG_PARTITION), Limit=1)["Items"]:
                return fallback(key)
        return None

    return read


def parameter_reader(ssm: Any, name: str) -> EntryReader:
    """Entries from the SSM parameter holding the whole configuration (the older form)."""

    def read(key: str) -> dict[str, Any] | None:
        document = json.loads(ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])
        for prefix, section in _SECTIONS.items():
            if key.startswith(prefix):
                return (document.get(section) or {}).get(key.removeprefix(prefix))
        return None

    return read
