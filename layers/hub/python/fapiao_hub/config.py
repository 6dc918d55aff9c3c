"""Settings (environment, parsed once) and the hub configuration (business systems, sellers).

The environment says *where* things are (table names, queue URL, where the configuration lives);
the hub configuration says *who* may call and *for whom* invoices are issued. In AWS the hub
configuration is an SSM SecureString read through Powertools parameters (cached); locally it is
a JSON file (``HUB_CONFIG_FILE``). Both hold the same JSON document (docs/configuration.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fapiao_hub.models import InvoiceType, Party

# Seed 004 (intake) invoice-type codes -> canonical types. Documented in docs/intake.md; a
# deployment overrides or extends it with "invoice_types" in the hub configuration.
DEFAULT_INTAKE_INVOICE_TYPES: dict[str, InvoiceType] = {
    # Codes shared with Ekuaibao / Baiwang (docs/rules.md section 3, legacy column).
    "01": InvoiceType.DIGITAL_SPECIAL,
    "02": InvoiceType.DIGITAL_NORMAL,
    "004": InvoiceType.VAT_SPECIAL_PAPER,
    "007": InvoiceType.VAT_NORMAL_PAPER,
    "026": InvoiceType.VAT_NORMAL_ELECTRONIC,
    "028": InvoiceType.VAT_SPECIAL_ELECTRONIC,
    # Seed 004's own four-character codes: the first two characters are the 数电 kind (01 special,
    # 02 normal), the last two the platform's sub-kind. Seed 004's example uses 0112.
    "0112": InvoiceType.DIGITAL_SPECIAL,
    "0212": InvoiceType.DIGITAL_NORMAL,
}

# docs/rules.md section 1: the rates in force, and the retired ones accepted on red reversals.
DEFAULT_TAX_RATES = tuple(Decimal(r) for r in ("0", "0.01", "0.015", "0.03", "0.05", "0.06", "0.09", "0.13"))
DEFAULT_RETIRED_TAX_RATES = tuple(Decimal(r) for r in ("0.04", "0.10", "0.11", "0.16", "0.17"))


class Settings(BaseSettings):
    """Environment of a function (template.yaml Globals), parsed once per container."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    stage: str = "dev"
    applications_table: str
    invoices_table: str
    dispatch_queue_url: str
    files_bucket: str
    event_bus_name: str
    notify_queue_url: str | None = None
    notify_dlq_url: str | None = None
    # Exactly one of the two says where the hub configuration lives.
    hub_config_parameter: str | None = None
    hub_config_file: Path | None = None
    hub_config_max_age_seconds: int = 300
    strict_tax_numbers: bool = False
    # Dispatch (workflow.DispatchPolicy): the DISPATCHING lease, waits after a request that never
    # left, and how many such attempts before the application is STUCK.
    dispatch_lease_seconds: int = 60
    dispatch_retry_delays: tuple[int, ...] = (5, 15, 30, 60, 120, 300, 600)
    dispatch_max_attempts: int = 10
    # How far the poller moves a due application on when it queues it (polling.Poller): longer than
    # the dispatch queue's visibility timeout (180 s), so a request still in flight is not doubled.
    poll_claim_seconds: int = 300
    # An application still open this long after it was received is STUCK (alarm).
    open_deadline_seconds: int = 24 * 3600
    # Reconciliation (reconciliation.Reconciler): how far back a run re-asks the channels about
    # applications that reached a final state (template.yaml ReconciliationWindowDays).
    reconciliation_window_days: float = Field(default=2, gt=0, le=31)
    # Channel health (health.BreakerPolicy): this many failures in a row within the window open a
    # channel's circuit for the cool-down; applications that never reached it may go to the next
    # capable channel once it has been open failover-after seconds (unset: never).
    channel_circuit_failures: int = Field(default=5, ge=1)
    channel_circuit_window_seconds: int = Field(default=60, ge=1)
    channel_circuit_cooldown_seconds: int = Field(default=30, ge=1)
    channel_failover_after_seconds: int | None = Field(default=None, ge=0)
    # API Gateway HTTP APIs take up to 10 MB; an application of 5000 lines fits well within 6 MB.
    max_body_bytes: int = 6 * 1024 * 1024

    @field_validator("channel_failover_after_seconds", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        return None if value == "" else value  # template.yaml passes "" for "never fail over"


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Company(_Config):
    """A seller as a business system knows it (seed 004 ``bukrs``, 账套编码)."""

    seller: Party
    channel: str | None = None  # default channel for this seller (routing may override)


class Webhook(_Config):
    """Where and how a business system is told of its applications' outcomes (the notifier)."""

    url: str
    # "hub": the hub's own JSON event, signed (HMAC-SHA256 over "{timestamp}.{body}", README);
    # "ekuaibao": seed 000's push shape, so an Ekuaibao tenant gets results as its own API documents.
    format: Literal["hub", "ekuaibao"] = "hub"
    secret: str | None = Field(default=None, repr=False)  # hub format: the signing key
    access_token: str | None = Field(default=None, repr=False)  # ekuaibao format: ?accessToken=
    channel_code: str = "fapiao-hub"  # ekuaibao format: channelCode
    # Below the notifier function's 30 s timeout, with room for the rest of its batch.
    timeout_seconds: float = Field(default=10.0, gt=0, le=20)


class BusinessSystem(_Config):
    name: str | None = None
    webhook: Webhook | None = None
    # SHA-256 (hex) of each bearer token this system may use; several allow rotation.
    token_sha256: tuple[str, ...] = Field(min_length=1)
    companies: dict[str, Company] = Field(default_factory=dict)
    # Red applications for blue invoices the hub did not issue for this system and seller (issued
    # before the hub, or elsewhere): off, they are a 400 like any unknown invoice; on, accepted with
    # a warning and nothing reserved, as what is left to reverse cannot be checked (docs/intake.md).
    reverses_outside_invoices: bool = False

    @field_validator("token_sha256")
    @classmethod
    def _hex_digests(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for digest in value:
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError("token_sha256 entries are lowercase hex SHA-256 digests")
        return value


class ChannelSettings(_Config):
    """One configured channel (an entry of ``channels``; its key is the channel's name)."""

    type: str  # the channel module: "xunlian", ...
    base_url: str
    # The vendor recognises a repeated request number (answers the first result, issues nothing).
    # Only then is an Unknown outcome resolved by re-sending the same number (docs/rules.md section 6).
    dedupes_request_number: bool = False
    # How long after an Unknown outcome before the same number is sent again.
    quiet_period_seconds: int = Field(default=60, ge=0)
    connect_timeout_seconds: float = Field(default=3.05, gt=0)
    read_timeout_seconds: float = Field(default=20.0, gt=0)
    # Connection attempts before a request is sent (never after: a POST is not retried on read).
    connect_retries: int = Field(default=2, ge=0, le=5)
    # Channel-specific, non-secret settings (e.g. Xunlian companyDataResource, terminalCode).
    options: dict[str, str] = Field(default_factory=dict)
    # Secrets: inline only in a local file; in AWS the name of a Secrets Manager secret (JSON).
    credentials: dict[str, str] = Field(default_factory=dict, repr=False)
    credentials_secret: str | None = None


class Route(_Config):
    """Which channel issues for a seller (optionally only for one business type)."""

    seller_tax_number: str
    business_type_code: str | None = None
    channel: str


class HubConfig(_Config):
    business_systems: dict[str, BusinessSystem] = Field(default_factory=dict)
    channels: dict[str, ChannelSettings] = Field(default_factory=dict)
    # First match wins: seller + business type, then seller; then the company's own channel,
    # then default_channel.
    routes: tuple[Route, ...] = ()
    default_channel: str | None = None
    # Extends / overrides DEFAULT_INTAKE_INVOICE_TYPES.
    invoice_types: dict[str, InvoiceType] = Field(default_factory=dict)
    tax_rates: tuple[Decimal, ...] = DEFAULT_TAX_RATES
    retired_tax_rates: tuple[Decimal, ...] = DEFAULT_RETIRED_TAX_RATES

    @cached_property
    def intake_invoice_types(self) -> dict[str, InvoiceType]:
        return {**DEFAULT_INTAKE_INVOICE_TYPES, **self.invoice_types}

    def route(
        self, *, seller_tax_number: str | None, business_type_code: str | None, company_channel: str | None
    ) -> str | None:
        """The channel that issues for this seller, or None (the application is then rejected)."""
        candidates = [r for r in self.routes if r.seller_tax_number == seller_tax_number]
        for route in candidates:
            if route.business_type_code is not None and route.business_type_code == business_type_code:
                return route.channel
        for route in candidates:
            if route.business_type_code is None:
                return route.channel
        return company_channel or self.default_channel

    def authenticate(self, token: str) -> str | None:
        """The business system a bearer token belongs to, or None.

        Every stored digest is compared (constant time each), so timing says nothing about
        which system or how many digits matched.
        """
        presented = token_sha256(token)
        found = None
        for system_id, system in self.business_systems.items():
            for digest in system.token_sha256:
                if hmac.compare_digest(presented, digest):
                    found = system_id
        return found


def load_hub_config(settings: Settings) -> HubConfig:
    """Read the hub configuration from wherever the settings say (cached in AWS)."""
    if settings.hub_config_file is not None:
        return HubConfig.model_validate_json(settings.hub_config_file.read_text(encoding="utf-8"))
    if settings.hub_config_parameter:
        # Imported here: the parameters utility is only needed where SSM is the source.
        from aws_lambda_powertools.utilities import parameters

        raw = parameters.get_parameter(
            settings.hub_config_parameter,
            decrypt=True,
            max_age=settings.hub_config_max_age_seconds,
        )
        return HubConfig.model_validate(json.loads(raw))
    raise RuntimeError("neither HUB_CONFIG_FILE nor HUB_CONFIG_PARAMETER is set")
