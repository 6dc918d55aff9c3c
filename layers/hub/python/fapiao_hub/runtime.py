"""Builds the hub's parts once per Lambda container (or local process) from the settings.

Handlers ask for what they need; tests call ``reset()`` after changing the environment.
"""

from __future__ import annotations

import threading
import time
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from fapiao_hub.domain.config import HubConfig, Operator, Settings, load_hub_config

# Each factory imports what it builds: a function's cold start pays only for the parts it uses
# (the notifier's requests, the channels, the dispatcher's and callback receiver's workflow).
if TYPE_CHECKING:
    from collections.abc import Callable

    from fapiao_hub.channels.base import Channel
    from fapiao_hub.channels.registry import ChannelRegistry
    from fapiao_hub.domain.rules import RulePolicy
    from fapiao_hub.infra.credentials import Credentials
    from fapiao_hub.infra.events import EventPublisher
    from fapiao_hub.infra.files import FileStore
    from fapiao_hub.infra.queues import DispatchQueue
    from fapiao_hub.infra.revocation import CallerCheck
    from fapiao_hub.infra.store import ApplicationStore
    from fapiao_hub.infra.store.records import StoredApplication
    from fapiao_hub.usecases.callbacks import CallbackReceiver
    from fapiao_hub.usecases.dispatch import Dispatcher
    from fapiao_hub.usecases.intake import Intake
    from fapiao_hub.usecases.notify import Notifier
    from fapiao_hub.usecases.operations import Operations
    from fapiao_hub.usecases.polling import Poller
    from fapiao_hub.usecases.reconciliation import Reconciler


@cache
def settings() -> Settings:
    return Settings()  # type: ignore[call-arg]  # filled from the environment


@cache
def _boto_session() -> boto3.session.Session:
    return boto3.session.Session()


def watch_aws_requests(hook: Callable[..., None], name: str) -> None:
    """Call ``hook`` before every AWS request made by a client built after this call (botocore's
    ``before-call`` event: ``model``, ``params``, ... as keywords); ``name`` registers it once.
    The bench counts the hub's requests with it: clients copy the hooks when they are built."""
    _boto_session().events.register("before-call.*.*", hook, unique_id=name)


@cache
def _dynamodb() -> Any:
    """One DynamoDB resource per container (the applications table, the callers' configuration items)."""
    return _boto_session().resource("dynamodb")


@cache
def file_store() -> FileStore:
    from fapiao_hub.infra.files import FileStore

    return FileStore(_boto_session().client("s3"), settings().files_bucket)


class _FileStoreOverflow:
    """The application store's overflow (store.DocumentOverflow): the file store, built on first use.

    Only applications too large for DynamoDB need it, so a function that does not otherwise use S3
    (the poller, the notifier) does not create an S3 client at cold start.
    """

    def put_document(self, key: str, data: bytes) -> str:
        return file_store().put_document(key, data)

    def get_document(self, ref: str) -> bytes:
        return file_store().get_document(ref)


@cache
def application_store() -> ApplicationStore:
    from fapiao_hub.infra.store import ApplicationStore

    table = _dynamodb().Table(settings().applications_table)
    return ApplicationStore(
        table,
        overflow=_FileStoreOverflow(),
        invoices_table_name=settings().invoices_table,
        history_table_name=settings().history_table,
    )


@cache
def dispatch_queue() -> DispatchQueue:
    from fapiao_hub.infra.queues import DispatchQueue

    return DispatchQueue(_boto_session().client("sqs"), settings().dispatch_queue_url)


@cache
def intake() -> Intake:
    from fapiao_hub.usecases.intake import Intake

    return Intake(application_store(), dispatch_queue())


@cache
def event_publisher() -> EventPublisher:
    from fapiao_hub.infra.events import EventPublisher

    return EventPublisher(_boto_session().client("events"), settings().event_bus_name)


@cache
def credentials() -> Credentials:
    """The one credential path (channels, callbacks, webhooks): Secrets Manager through this session."""
    from fapiao_hub.infra.credentials import Credentials, secrets_manager_fetch

    current = settings()
    return Credentials(
        secrets_manager_fetch(lambda: _boto_session().client("secretsmanager")),
        max_age=current.credentials_max_age_seconds,
        refresh_after=current.credentials_refresh_after_seconds,
    )


@cache
def channel_registry() -> ChannelRegistry:
    from fapiao_hub.channels.registry import ChannelRegistry

    return ChannelRegistry(hub_config, credentials=credentials())


@cache
def dispatcher() -> Dispatcher:
    from fapiao_hub.usecases.dispatch import Dispatcher, DispatchPolicy
    from fapiao_hub.usecases.health import BreakerPolicy, ChannelHealth

    current = settings()
    policy = DispatchPolicy(
        lease_seconds=current.dispatch_lease_seconds,
        retry_delays=current.dispatch_retry_delays,
        max_attempts=current.dispatch_max_attempts,
        deadline_seconds=current.open_deadline_seconds,
        stuck_poll_seconds=current.stuck_poll_seconds,
    )
    breaker = BreakerPolicy(
        failures_to_open=current.channel_circuit_failures,
        window_seconds=current.channel_circuit_window_seconds,
        cooldown_seconds=current.channel_circuit_cooldown_seconds,
        probe_seconds=current.dispatch_lease_seconds,
        failover_after_seconds=current.channel_failover_after_seconds,
    )
    return Dispatcher(
        application_store(), dispatch_queue(), event_publisher(), channel_registry(), file_store(), policy=policy,
        health=ChannelHealth(application_store(), breaker),
        # Failover's order: the seller's channels that can issue the application, most preferred first.
        channel_order=lambda application, proposed: channel_registry().capable_channels(application),
    )  # fmt: skip


@cache
def callback_receiver() -> CallbackReceiver:
    from fapiao_hub.usecases.callbacks import CallbackReceiver

    return CallbackReceiver(
        application_store(),
        file_store(),
        channel_registry(),
        _ResultsNamed(dispatcher()),
        event_publisher(),
        hub_config,
    )


@cache
def operations() -> Operations:
    """The operator's actions (ops API)."""
    from fapiao_hub.usecases.operations import Operations

    return Operations(application_store(), dispatcher(), channel_registry(), event_publisher(), dispatch_queue())


@cache
def poller() -> Poller:
    from fapiao_hub.usecases.polling import Poller

    return Poller(application_store(), dispatch_queue(), claim_seconds=settings().poll_claim_seconds)


@cache
def notifier() -> Notifier:
    from fapiao_hub.usecases.notify import Notifier, sqs_ports

    current = settings()
    visibility, dead_letter = sqs_ports(_boto_session().client("sqs"), current.notify_queue_url, current.notify_dlq_url)
    return Notifier(
        application_store(), hub_config, visibility=visibility, dead_letter=dead_letter, credentials=credentials()
    )


@cache
def reconciler() -> Reconciler:
    from fapiao_hub.usecases.reconciliation import Reconciler, StoreFindings

    store = application_store()
    return Reconciler(
        store,
        channel_registry(),
        StoreFindings(store),
        file_store(),
        window_days=settings().reconciliation_window_days,
    )


@cache
def sqs_client() -> object:
    """For the ops summary's dead-letter depths (GetQueueAttributes)."""
    return _boto_session().client("sqs")


class _ConfigCache:
    """The hub configuration, re-read when its file changes (locally) or its max age passes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._config: HubConfig | None = None
        self._stamp: object = None

    def get(self) -> HubConfig:
        current = settings()
        stamp = self._stamp_for(current.hub_config_file, current.hub_config_max_age_seconds)
        with self._lock:
            if self._config is None or stamp != self._stamp:
                self._config = load_hub_config(current)
                self._stamp = stamp
            return self._config

    @staticmethod
    def _stamp_for(path: Path | None, max_age: int) -> object:
        if path is not None:
            stat = path.stat()
            return (stat.st_mtime_ns, stat.st_size)
        # SSM: Powertools caches the parameter itself; this only bounds re-validation.
        return int(time.monotonic() // max(max_age, 1))

    def clear(self) -> None:
        with self._lock:
            self._config = None


_config_cache = _ConfigCache()


def hub_config() -> HubConfig:
    return _config_cache.get()


@cache
def caller_check() -> CallerCheck | None:
    """Where a token's caller is confirmed as configured now (fapiao_hub.infra.revocation); None for a local
    file, which is re-read whenever it changes."""
    from fapiao_hub.infra.revocation import CallerCheck, parameter_reader, table_reader

    current = settings()
    if current.hub_config_file is not None:
        return None
    parameter = (
        parameter_reader(_boto_session().client("ssm"), current.hub_config_parameter)
        if current.hub_config_parameter
        else None
    )
    if current.hub_config_table:
        reader = table_reader(_dynamodb().Table(current.hub_config_table), parameter)
    elif parameter is not None:
        reader = parameter
    else:
        return None  # load_hub_config refuses to start without a configuration anyway
    return CallerCheck(reader, max_age=current.token_revocation_max_age_seconds)


def authenticate_business_system(token: str) -> str | None:
    """The business system a bearer token belongs to: found in the cached configuration, confirmed
    against the system's current entry (a token taken away stops within seconds)."""
    system_id = hub_config().authenticate(token)
    check = caller_check()
    if system_id is None or check is None:
        return system_id
    return system_id if check.business_system(system_id, token) else None


def authenticate_operator(token: str) -> tuple[str, Operator] | None:
    """The operator a bearer token belongs to, as configured now (revoked: None; see above)."""
    found = hub_config().authenticate_operator(token)
    check = caller_check()
    if found is None or check is None:
        return found
    operator = check.operator(found[0], token)
    return None if operator is None else (found[0], operator)


def rule_policy() -> RulePolicy:
    from fapiao_hub.domain.rules import RulePolicy

    config = hub_config()
    return RulePolicy(
        tax_rates=frozenset(config.tax_rates),
        retired_tax_rates=frozenset(config.retired_tax_rates),
        strict_tax_numbers=settings().strict_tax_numbers,
    )


def reset() -> None:
    """Forget everything built (tests change the environment between cases)."""
    for built in (
        settings, _boto_session, _dynamodb, file_store, application_store, dispatch_queue, intake, event_publisher,
        channel_registry, dispatcher, callback_receiver, poller, notifier, reconciler, sqs_client, operations,
        credentials, caller_check,
    ):  # fmt: skip
        built.cache_clear()
    _config_cache.clear()


class _ResultsNamed:
    """The dispatcher as the callback receiver uses it: each pushed result's lines name its application
    (one push may carry results for several; fapiao_hub.domain.logkeys)."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    def apply_result(self, stored: StoredApplication, outcome: object, channel: Channel) -> str:
        from fapiao_hub.domain import logkeys

        application = stored.application
        with logkeys.application(application.source_system, application.open_apply_code, stored.sent_request_number):
            return self._dispatcher.apply_result(stored, outcome, channel)
