"""Settings (environment, parsed once) and the hub configuration (business systems, sellers).

The environment says *where* things are (table names, queue URL, where the configuration lives);
the hub configuration says *who* may call and *for whom* invoices are issued. In AWS the hub
configuration is items of a DynamoDB table (``HUB_CONFIG_TABLE``, one per business system and per
operator) or an SSM SecureString (``HUB_CONFIG_PARAMETER``), read through Powertools parameters
(cached); locally it is a JSON file (``HUB_CONFIG_FILE``). All hold the same JSON document
(docs/configuration.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from fapiao_hub.domain.limits import DEFAULT_RETIRED_TAX_RATES, DEFAULT_TAX_RATES, limit_setting_problems
from fapiao_hub.domain.models import InvoiceType, Party, key_part_problem

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



def parse_origin(entry: str) -> tuple[str, str, int | None]:
    """``host``, ``host:port`` (https) or ``scheme://host[:port]`` -> (scheme, host, port); ValueError."""
    text = entry.strip()
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"{entry!r} is not a host, host:port or http(s)://host[:port]")
    return parts.scheme, parts.hostname.lower(), parts.port


class Settings(BaseSettings):
    """Environment of a function (template.yaml Globals), parsed once per container."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    stage: str = "dev"
    applications_table: str
    invoices_table: str
    # The audit trail (template.yaml HistoryTable); unset, only the application's own copy is kept.
    history_table: str | None = None
    dispatch_queue_url: str
    files_bucket: str
    event_bus_name: str
    notify_queue_url: str | None = None
    notify_dlq_url: str | None = None
    # Exactly one of the two says where the hub configuration lives.
    hub_config_parameter: str | None = None
    hub_config_file: Path | None = None
    # The configuration as items of a DynamoDB table (config_items): read first when set; an empty
    # table falls back to the parameter (the way from one to the other).
    hub_config_table: str | None = None
    hub_config_max_age_seconds: int = 300
    # Secrets Manager values (channel credentials, webhook secrets) are re-read after this long; a
    # refused callback may re-read one early once its value is older than the refresh period
    # (fapiao_hub.infra.credentials).
    credentials_max_age_seconds: int = Field(default=300, ge=1)
    credentials_refresh_after_seconds: int = Field(default=30, ge=1)
    # A token the cached configuration accepts is confirmed against its caller's entry read at most
    # this long ago, so a revocation does not wait for the configuration cache (fapiao_hub.infra.revocation).
    token_revocation_max_age_seconds: int = Field(default=5, ge=0)
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
    # How often a STUCK application of a channel that can be queried is still asked (no dead ends).
    stuck_poll_seconds: int = 3600
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


def _channel_list(channel: str | None, channels: tuple[str, ...]) -> tuple[str, ...]:
    """``"channel": "x"`` is ``"channels": ["x"]``; giving both is a mistake worth a clear error."""
    if channel is not None and channels:
        raise ValueError('give "channels" (a list, in order of preference) or "channel", not both')
    names = channels or ((channel,) if channel else ())
    if len(set(names)) != len(names):
        raise ValueError("channels: a channel is listed twice")
    return names


class LimitSettings(_Config):
    """One invoice type's limits for a seller (absent: the default of docs/rules.md section 8)."""

    # The device's 最高开票限额 (excluding tax), legacy invoices only.
    max_amount_excl_tax: Decimal | None = Field(default=None, gt=0, decimal_places=2)
    max_lines: int | None = Field(default=None, ge=1)
    line_split: Literal["none", "keep_price", "keep_quantity"] | None = None
    # Paper: a 销货清单 is attached, so more than 8 lines fit.
    sales_list: bool = False


class Company(_Config):
    """A seller as a business system knows it (seed 004 ``bukrs``, 账套编码)."""

    seller: Party
    # Per invoice type; checked against what the bureau and devices take (limits.limit_setting_problems).
    limits: dict[InvoiceType, LimitSettings] = Field(default_factory=dict)
    # The seller's channels in order of preference: an application goes to the first whose
    # capabilities cover its type and colour (channels/registry.py). "channel" is the one-element form.
    channel: str | None = None
    channels: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _one_form(self) -> Company:
        _channel_list(self.channel, self.channels)
        return self

    @property
    def channel_names(self) -> tuple[str, ...]:
        return _channel_list(self.channel, self.channels)


class Webhook(_Config):
    """Where and how a business system is told of its applications' outcomes (the notifier)."""

    url: str
    # "hub": the hub's own JSON event, signed (HMAC-SHA256 over "{timestamp}.{body}", README);
    # "ekuaibao": seed 000's push shape, so an Ekuaibao tenant gets results as its own API documents.
    format: Literal["hub", "ekuaibao"] = "hub"
    secret: str | None = Field(default=None, repr=False)  # hub format: the signing key
    access_token: str | None = Field(default=None, repr=False)  # ekuaibao format: ?accessToken=
    # In AWS the two above live in a Secrets Manager secret (JSON {"secret": ..., "access_token": ...})
    # named here, merged over them (fapiao_hub.infra.credentials); inline only in a local file.
    credentials_secret: str | None = None
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
        return _check_digests(value)


def _check_digests(value: tuple[str, ...]) -> tuple[str, ...]:
    for digest in value:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError("token_sha256 entries are lowercase hex SHA-256 digests")
    return value


class Operator(_Config):
    """A person (or their tool) at the operations desk: the ops API's routes (docs/operations.md).

    ``viewer`` reads; ``operator`` also acts. ``business_systems`` / ``sellers`` (seller tax
    numbers), when given, limit what the token sees and acts on; absent means all.
    """

    token_sha256: tuple[str, ...] = Field(min_length=1)
    role: Literal["viewer", "operator"] = "viewer"
    business_systems: tuple[str, ...] | None = None
    sellers: tuple[str, ...] | None = None
    revoked: bool = False

    @field_validator("token_sha256")
    @classmethod
    def _hex_digests(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _check_digests(value)

    @property
    def can_act(self) -> bool:
        return self.role == "operator"

    def may_see(self, business_system: str, seller_tax_number: str | None) -> bool:
        """Whether an application of this business system and seller is within this operator's reach."""
        if self.business_systems is not None and business_system not in self.business_systems:
            return False
        return self.sellers is None or seller_tax_number in self.sellers


class CapabilitySettings(_Config):
    """What one configured channel may do, when less than its module can (absent: as declared)."""

    blue: tuple[InvoiceType, ...] | None = None
    red: tuple[InvoiceType, ...] | None = None
    void: tuple[InvoiceType, ...] | None = None
    can_query: bool | None = None


class ChannelSettings(_Config):
    """One configured channel (an entry of ``channels``; its key is the channel's name)."""

    type: str  # the channel module: "xunlian", ...
    base_url: str
    # The vendor recognises a repeated request number (answers the first result, issues nothing).
    # Only then is an Unknown outcome resolved by re-sending the same number (docs/rules.md section 6).
    # None: the module's own default; true where the module cannot is a configuration error.
    dedupes_request_number: bool | None = None
    # Narrows what the module declares it can do (never widens: more is a configuration error).
    capabilities: CapabilitySettings | None = None
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
    # Where the channel's invoice files may be fetched from besides its base_url's host over https:
    # "host", "host:port" (https) or "http://host:port" (http only for hosts named so; file_fetch.py).
    file_hosts: tuple[str, ...] = ()

    @field_validator("file_hosts")
    @classmethod
    def _origins(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        for host in hosts:
            parse_origin(host)  # ValueError names the entry
        return hosts


class Route(_Config):
    """Which channel issues for a seller (optionally only for one business type)."""

    seller_tax_number: str
    business_type_code: str | None = None
    # In order of preference, like a company's; "channel" is the one-element form.
    channel: str | None = None
    channels: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _one_form(self) -> Route:
        if not _channel_list(self.channel, self.channels):
            raise ValueError('a route needs "channels" (or "channel")')
        return self

    @property
    def channel_names(self) -> tuple[str, ...]:
        return _channel_list(self.channel, self.channels)


def _business_system_name(name: str) -> str:
    """A business system's name is part of every key of its applications (models.application_key)."""
    problem = key_part_problem(name)
    if problem is not None:
        raise PydanticCustomError("key_part", "a business system's name {problem}", {"problem": problem})
    return name


BusinessSystemName = Annotated[str, AfterValidator(_business_system_name)]


class HubConfig(_Config):
    business_systems: dict[BusinessSystemName, BusinessSystem] = Field(default_factory=dict)
    # The operations desk (ops API): by name, the name recorded in the audit trail.
    operators: dict[str, Operator] = Field(default_factory=dict)
    channels: dict[str, ChannelSettings] = Field(default_factory=dict)
    # First match wins: seller + business type, then seller; then the company's own channels,
    # then default_channel.
    routes: tuple[Route, ...] = ()
    default_channel: str | None = None
    # Extends / overrides DEFAULT_INTAKE_INVOICE_TYPES.
    invoice_types: dict[str, InvoiceType] = Field(default_factory=dict)
    tax_rates: tuple[Decimal, ...] = DEFAULT_TAX_RATES
    retired_tax_rates: tuple[Decimal, ...] = DEFAULT_RETIRED_TAX_RATES

    @model_validator(mode="after")
    def _each_token_one_caller(self) -> HubConfig:
        # Fail closed: with a digest twice, which caller a token is (and whether "revoked" holds)
        # would depend on the order of the document.
        duplicates = duplicate_token_digests(self)
        if duplicates:
            raise ValueError("\n".join(duplicates))
        return self

    @model_validator(mode="after")
    def _limits_within_rules(self) -> HubConfig:
        """Every configured limit within what the bureau or a device takes (limits.limit_setting_problems)."""
        problems = [
            problem
            for system_id, system in self.business_systems.items()
            for code, company in system.companies.items()
            for kind, limits in company.limits.items()
            for problem in limit_setting_problems(
                f"business_systems.{system_id}.companies.{code}.limits.{kind.value}", kind, max_lines=limits.max_lines,
                sales_list=limits.sales_list, max_amount_excl_tax=limits.max_amount_excl_tax,
            )
        ]  # fmt: skip
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @cached_property
    def intake_invoice_types(self) -> dict[str, InvoiceType]:
        return {**DEFAULT_INTAKE_INVOICE_TYPES, **self.invoice_types}

    def channel_preferences(
        self, *, seller_tax_number: str | None, business_type_code: str | None, company_channels: tuple[str, ...]
    ) -> tuple[str, ...]:
        """The channels that may issue for this seller, most preferred first (capabilities not yet
        considered: channels/registry.py): the seller's route for the business type, else the
        seller's route, else the company's channels, else default_channel."""
        candidates = [r for r in self.routes if r.seller_tax_number == seller_tax_number]
        for route in candidates:
            if route.business_type_code is not None and route.business_type_code == business_type_code:
                return route.channel_names
        for route in candidates:
            if route.business_type_code is None:
                return route.channel_names
        if company_channels:
            return company_channels
        return (self.default_channel,) if self.default_channel else ()

    def company(self, source_system: str, company_code: str) -> Company | None:
        system = self.business_systems.get(source_system)
        return system.companies.get(company_code) if system else None

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

    def authenticate_operator(self, token: str) -> tuple[str, Operator] | None:
        """The operator (name, settings) a bearer token belongs to, or None; a revoked one is None.

        Compared like business-system tokens (every digest, constant time each). A business
        system's token is never an operator's: the two live in different sections.
        """
        presented = token_sha256(token)
        found = None
        for name, operator in self.operators.items():
            for digest in operator.token_sha256:
                if hmac.compare_digest(presented, digest):
                    found = (name, operator)
        if found is None or found[1].revoked:
            return None
        return found


# ---------------------------------------------------------------------------- the configuration as items
# One item per business system and per operator, one for everything else: a hundred business
# systems with their sellers are a hundred small items (DynamoDB: 400 KB each), where one SSM
# SecureString holds 4 KB (8 KB advanced). docs/configuration.md says why and how to push them.
CONFIG_PARTITION = "hub-config"
_ITEM_SECTIONS = {"business_systems": "business_system#", "operators": "operator#"}
SETTINGS_ITEM = "settings"


def config_items(document: dict[str, object]) -> dict[str, str]:
    """The items (sort key -> JSON text) a configuration document is stored as."""
    items: dict[str, str] = {}
    rest = {k: v for k, v in document.items() if k not in _ITEM_SECTIONS}
    items[SETTINGS_ITEM] = json.dumps(rest, ensure_ascii=False, sort_keys=True)
    for section, prefix in _ITEM_SECTIONS.items():
        entries = document.get(section) or {}
        assert isinstance(entries, dict)
        for name, entry in entries.items():
            items[prefix + name] = json.dumps(entry, ensure_ascii=False, sort_keys=True)
    return items


def document_from_items(items: dict[str, str]) -> dict[str, object]:
    """The configuration document back from its items (config_items' inverse)."""
    document: dict[str, object] = dict(json.loads(items.get(SETTINGS_ITEM, "{}")))
    for section, prefix in _ITEM_SECTIONS.items():
        document[section] = {
            key.removeprefix(prefix): json.loads(value)
            for key, value in sorted(items.items())
            if key.startswith(prefix)
        }
    return document


def inline_secrets(config: HubConfig) -> list[str]:
    """JSON paths of secrets written into the configuration itself (channel credentials and webhook
    secrets belong in Secrets Manager, named by credentials_secret, when the configuration is stored
    as items)."""
    found = [f"channels.{name}.credentials" for name, channel in config.channels.items() if channel.credentials]
    for system_id, system in config.business_systems.items():
        webhook = system.webhook
        if webhook is not None:
            path = f"business_systems.{system_id}.webhook"
            found += [f"{path}.{key}" for key in ("secret", "access_token") if getattr(webhook, key)]
    return found


def duplicate_token_digests(config: HubConfig) -> list[str]:
    """``path: why`` for every token digest listed again after its first place (business systems first,
    then operators): a token must belong to exactly one caller."""
    first: dict[str, str] = {}
    problems = []
    places = [
        (f"business_systems.{system_id}.token_sha256[{i}]", digest)
        for system_id, system in config.business_systems.items()
        for i, digest in enumerate(system.token_sha256)
    ] + [
        (f"operators.{name}.token_sha256[{i}]", digest)
        for name, operator in config.operators.items()
        for i, digest in enumerate(operator.token_sha256)
    ]
    for path, digest in places:
        if digest in first:
            problems.append(f"{path}: the same token digest as {first[digest]} (a token belongs to one caller)")
        else:
            first[digest] = path
    return problems


def load_hub_config(settings: Settings) -> HubConfig:
    """Read the hub configuration from wherever the settings say (cached in AWS)."""
    if settings.hub_config_file is not None:
        return HubConfig.model_validate_json(settings.hub_config_file.read_text(encoding="utf-8"))
    if settings.hub_config_table:
        from aws_lambda_powertools.utilities import parameters

        provider = parameters.DynamoDBProvider(table_name=settings.hub_config_table, sort_attr="sk")
        items = provider.get_multiple(CONFIG_PARTITION, max_age=settings.hub_config_max_age_seconds)
        if items:
            return HubConfig.model_validate(document_from_items(dict(items)))
    if settings.hub_config_parameter:
        # Imported here: the parameters utility is only needed where SSM is the source.
        from aws_lambda_powertools.utilities import parameters

        raw = parameters.get_parameter(
            settings.hub_config_parameter,
            decrypt=True,
            max_age=settings.hub_config_max_age_seconds,
        )
        return HubConfig.model_validate(json.loads(raw))
    raise RuntimeError("none of HUB_CONFIG_FILE, HUB_CONFIG_TABLE (with items) or HUB_CONFIG_PARAMETER is set")
