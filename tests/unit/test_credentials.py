"""The one credential path (fapiao_hub.infra.credentials) against moto's Secrets Manager, with the hub
configuration exactly as ``config push`` writes it; token digests unique; revocation within seconds
(fapiao_hub.infra.revocation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from pydantic import ValidationError

from fapiao_hub import runtime
from fapiao_hub.domain.config import HubConfig, config_items, token_sha256
from fapiao_hub.domain.models import Status
from fapiao_hub.domain.results import Issued
from fapiao_hub.infra.credentials import Credentials, CredentialsUnavailable
from fapiao_hub.infra.revocation import CallerCheck
from fapiao_hub.infra.signatures import verify_webhook
from fapiao_hub_client import cli
from tests.conftest import REGION
from tests.unit.conftest import FIXTURE_TOKEN, event, get_event, hub_config_document
from tests.unit.test_callbacks import (  # noqa: F401 - the fixture, reused
    CODE,
    SECRET,
    _push_for,
    _submitted_application,
    callbacks,
    seed_push_text,
)
from tests.unit.test_hub_config_store import _from_table, _write, run
from tests.unit.test_notifier import INVOICE, World, receiver  # noqa: F401 - the fixture, reused

CHANNEL_SECRET = "fapiao-hub/test/channels/ekuaibao"
WEBHOOK_SECRET = "fapiao-hub/test/webhooks/sample-erp"
OLD_TOKEN = "ekuaibao-token-before-rotation"
NEW_TOKEN = "ekuaibao-token-after-rotation"
OPERATOR_TOKEN = "ann-operator-token"


class Clock:
    """The credential and revocation caches' clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _secrets() -> Any:
    return boto3.client("secretsmanager", region_name=REGION)


def _document() -> dict[str, Any]:
    """The test hub's configuration with VB5 on an Ekuaibao channel whose credentials are a secret's."""
    document = hub_config_document()
    document["business_systems"]["sample-erp"]["companies"]["VB5"]["channel"] = "ekuaibao"
    document["channels"] = {
        "ekuaibao": {"type": "ekuaibao", "base_url": "https://ekuaibao.invalid", "credentials_secret": CHANNEL_SECRET}
    }
    document["operators"] = {"ann": {"token_sha256": [token_sha256(OPERATOR_TOKEN)], "role": "operator"}}
    return document


def _push(hub: Any, tmp_path: Path, document: dict[str, Any]) -> None:
    result = run("config", "push", str(_write(tmp_path, document)), "--table", hub.environment["HUB_CONFIG_TABLE"])
    assert result.exit_code == 0, result.stderr


def _read_from_the_table(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The hub reads its configuration from the pushed items (as in AWS), its caches on a test clock."""
    monkeypatch.delenv("HUB_CONFIG_FILE")
    runtime.reset()
    clock = Clock()
    runtime.credentials().clock = clock
    check = runtime.caller_check()
    assert check is not None
    check.clock = clock
    return clock


@pytest.fixture
def from_secrets(callbacks, hub, tmp_path, monkeypatch) -> Clock:  # noqa: F811 - the reused fixture
    """The callbacks' hub, its configuration pushed to the table and the channel's credentials only in
    Secrets Manager."""
    _push(hub, tmp_path, _document())
    _secrets().create_secret(
        Name=CHANNEL_SECRET, SecretString=json.dumps({"access_token": OLD_TOKEN, "hmac_secret": SECRET})
    )
    return _read_from_the_table(monkeypatch)


def _table_text(hub: Any) -> str:
    table = boto3.resource("dynamodb", region_name=REGION).Table(hub.environment["HUB_CONFIG_TABLE"])
    return json.dumps([item["value"] for item in table.scan()["Items"]])


def unmatched_push(n: int) -> str:
    """A push naming no known request number: answered 404 once authenticated (kept as unmatched), 401
    when refused. Each ``n`` is another body, so no push is a replay of another."""
    body = json.loads(seed_push_text())
    body["serialNo"] = f"FHNOSUCHNUMBER{n:04d}"
    return json.dumps(body, ensure_ascii=False)


def _accepted(callbacks: Any, token: str, n: int) -> bool:  # noqa: F811 - the reused fixture
    status, _ = callbacks.post(unmatched_push(n), token=token)
    assert status in (401, 404)
    return status == 404


# ---------------------------------------------------------------------------- callbacks and channels
def test_an_ekuaibao_push_authenticates_with_credentials_only_in_secrets_manager(from_secrets, callbacks, hub):  # noqa: F811
    text = _table_text(hub)
    assert CHANNEL_SECRET in text and OLD_TOKEN not in text and SECRET not in text
    number = _submitted_application(hub)  # the channel itself is built with the secret's credentials

    assert callbacks.post(_push_for(number), token="not-the-token") == (
        401,
        {"value": False, "message": "unauthorized"},
    )
    assert runtime.application_store().get("sample-erp", CODE).status is Status.SUBMITTED
    assert callbacks.post(_push_for(number), token=OLD_TOKEN) == (200, {"value": True})
    stored = runtime.application_store().get("sample-erp", CODE)
    assert stored.status is Status.ISSUED
    assert [i["number"] for i in runtime.application_store().invoices(stored)] == ["89429424"]


def test_a_rotated_secret_is_used_after_the_cache_period_without_a_deploy(from_secrets, callbacks):  # noqa: F811
    assert _accepted(callbacks, OLD_TOKEN, 1)
    _secrets().put_secret_value(
        SecretId=CHANNEL_SECRET, SecretString=json.dumps({"access_token": NEW_TOKEN, "hmac_secret": SECRET})
    )
    from_secrets.advance(10)  # within the cache period, and too young to be re-read early
    assert not _accepted(callbacks, NEW_TOKEN, 2)
    assert _accepted(callbacks, OLD_TOKEN, 3)

    from_secrets.advance(291)  # 301 s after the first read: past CREDENTIALS_MAX_AGE_SECONDS (300)
    assert _accepted(callbacks, NEW_TOKEN, 4)
    assert not _accepted(callbacks, OLD_TOKEN, 5)


def test_a_refused_push_rereads_a_secret_older_than_the_refresh_period_once(from_secrets, callbacks):  # noqa: F811
    assert _accepted(callbacks, OLD_TOKEN, 1)
    _secrets().put_secret_value(
        SecretId=CHANNEL_SECRET, SecretString=json.dumps({"access_token": NEW_TOKEN, "hmac_secret": SECRET})
    )
    from_secrets.advance(29)
    assert not _accepted(callbacks, NEW_TOKEN, 2)  # younger than CREDENTIALS_REFRESH_AFTER_SECONDS (30)
    from_secrets.advance(2)
    assert _accepted(callbacks, NEW_TOKEN, 3)  # re-read on the refusal, accepted at once
    assert not _accepted(callbacks, OLD_TOKEN, 4)


def test_a_secret_that_cannot_be_read_refuses_the_push_and_stores_nothing(callbacks, hub, tmp_path, monkeypatch):  # noqa: F811
    _push(hub, tmp_path, _document())  # names a secret that does not exist
    _read_from_the_table(monkeypatch)
    before = callbacks.world()
    with pytest.raises(CredentialsUnavailable) as raised:
        callbacks.post(unmatched_push(1), token=OLD_TOKEN)
    assert str(raised.value) == f"secret {CHANNEL_SECRET}: not readable (ResourceNotFoundException)"
    assert callbacks.world() == before


def test_dispatch_with_an_unreadable_secret_sends_nothing_and_is_retried(hub, tmp_path, monkeypatch):
    _push(hub, tmp_path, _document())
    _read_from_the_table(monkeypatch)
    assert hub.call(event("intake-post-blue.json"))[0] == 200
    hub.queued()
    before = hub.applications()
    with pytest.raises(CredentialsUnavailable):  # the queue delivers the message again
        runtime.dispatcher().dispatch("sample-erp", CODE)
    assert hub.applications() == before  # not claimed, nothing sent: no unknown outcome to resolve

    _secrets().create_secret(Name=CHANNEL_SECRET, SecretString=json.dumps({"access_token": OLD_TOKEN}))
    assert runtime.dispatcher().dispatch("sample-erp", CODE) == "submitted"


def test_secrets_manager_unreachable_after_the_cache_period_keeps_the_last_value():
    values = [json.dumps({"access_token": OLD_TOKEN})]
    reads: list[str] = []

    def fetch(name: str) -> str:
        reads.append(name)
        if not values:
            raise ConnectionError("endpoint unreachable")
        return values.pop(0)

    clock = Clock()
    credentials = Credentials(fetch, max_age=300, refresh_after=30, clock=clock)
    assert dict(credentials.resolve({"base": "x"}, "s")) == {"base": "x", "access_token": OLD_TOKEN}
    clock.advance(301)
    assert dict(credentials.resolve({}, "s")) == {"access_token": OLD_TOKEN}  # read failed: the last value
    clock.advance(10)
    assert dict(credentials.resolve({}, "s")) == {"access_token": OLD_TOKEN}
    assert len(reads) == 2  # not asked again before the refresh period
    clock.advance(21)
    values.append(json.dumps({"access_token": NEW_TOKEN}))
    assert dict(credentials.resolve({}, "s")) == {"access_token": NEW_TOKEN}
    assert len(reads) == 3


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("not json", "not JSON"),
        ('["a"]', "not a JSON object of strings"),
        ('{"port": 1}', "not a JSON object of strings"),
    ],
)
def test_an_unusable_secret_value_is_named_without_its_content(value, why):
    with pytest.raises(CredentialsUnavailable) as raised:
        Credentials(lambda name: value).resolve({}, "s")
    assert str(raised.value) == f"secret s: {why}"


# ---------------------------------------------------------------------------- webhooks
def test_webhook_signing_with_the_secret_only_in_secrets_manager(hub, receiver, tmp_path, monkeypatch):  # noqa: F811
    world = World(hub, receiver, hub.environment["HUB_CONFIG_FILE"])
    document = hub_config_document()
    document["business_systems"]["sample-erp"]["webhook"] = {"url": receiver.url, "credentials_secret": WEBHOOK_SECRET}
    _push(hub, tmp_path, document)
    signing_key = "whsec-from-secrets-manager"
    _secrets().create_secret(Name=WEBHOOK_SECRET, SecretString=json.dumps({"secret": signing_key}))
    _read_from_the_table(monkeypatch)
    assert signing_key not in _table_text(hub)

    world.submit()
    assert world.decide(Issued((INVOICE,))) == "issued"
    assert world.pump() == 1 and world.handled == [{"batchItemFailures": []}]
    [request] = receiver.received
    assert request.headers["x-fapiao-signature"].startswith("sha256=")
    assert verify_webhook(signing_key, request.headers, request.body)  # the receiver's check
    assert not verify_webhook("an-inline-secret-nobody-has", request.headers, request.body)


def test_an_ekuaibao_format_webhook_takes_its_access_token_from_secrets_manager(hub, receiver, tmp_path, monkeypatch):  # noqa: F811
    world = World(hub, receiver, hub.environment["HUB_CONFIG_FILE"])
    document = hub_config_document()
    document["business_systems"]["sample-erp"]["webhook"] = {
        "url": receiver.url, "format": "ekuaibao", "credentials_secret": WEBHOOK_SECRET
    }  # fmt: skip
    _push(hub, tmp_path, document)
    _secrets().create_secret(Name=WEBHOOK_SECRET, SecretString=json.dumps({"access_token": "tenant-token-1"}))
    clock = _read_from_the_table(monkeypatch)

    world.submit()
    assert world.decide(Issued((INVOICE,))) == "issued"
    assert world.pump() == 1
    _secrets().put_secret_value(SecretId=WEBHOOK_SECRET, SecretString=json.dumps({"access_token": "tenant-token-2"}))
    clock.advance(301)
    runtime.notifier().deliver_record(  # the same outcome delivered again, after the rotation
        {"messageId": "again", "receiptHandle": "r", "body": world.bodies[0], "attributes": {}}
    )
    assert [r.query["accessToken"] for r in receiver.received] == [["tenant-token-1"], ["tenant-token-2"]]


def test_config_push_refuses_inline_webhook_secrets_and_writes_nothing(hub, tmp_path):
    document = hub_config_document()
    document["business_systems"]["sample-erp"]["webhook"] = {
        "url": "https://erp.example/hooks", "secret": "whsec-inline", "access_token": "tok-inline"
    }  # fmt: skip
    result = run("config", "push", str(_write(tmp_path, document)), "--table", hub.environment["HUB_CONFIG_TABLE"])
    assert result.exit_code == cli.EXIT_REFUSED
    assert result.stderr.splitlines()[:2] == [
        "error: business_systems.sample-erp.webhook.secret: a secret in the configuration; put it in Secrets "
        "Manager (credentials_secret)",
        "error: business_systems.sample-erp.webhook.access_token: a secret in the configuration; put it in "
        "Secrets Manager (credentials_secret)",
    ]
    assert "whsec-inline" not in result.stdout + result.stderr and "tok-inline" not in result.stdout + result.stderr
    assert _table_text(hub) == "[]"


# ---------------------------------------------------------------------------- token digests unique
def _shared_with_an_operator() -> dict[str, Any]:
    document = hub_config_document()
    document["operators"] = {
        "ann": {"token_sha256": [token_sha256("ann-own"), token_sha256(FIXTURE_TOKEN)], "role": "operator"}
    }
    return document


def test_a_digest_of_a_system_and_an_operator_is_a_config_check_error_naming_both(tmp_path):
    result = run("config", "check", str(_write(tmp_path, _shared_with_an_operator())))
    assert result.exit_code == cli.EXIT_REFUSED
    assert result.stderr.splitlines()[0] == (
        "error: operators.ann.token_sha256[1]: the same token digest as "
        "business_systems.sample-erp.token_sha256[0] (a token belongs to one caller)"
    )
    assert token_sha256(FIXTURE_TOKEN) not in result.stdout + result.stderr


def test_a_digest_twice_across_systems_and_operators_names_every_repeat(tmp_path):
    document = _shared_with_an_operator()
    systems = document["business_systems"]
    systems["other-erp"]["token_sha256"].append(systems["sample-erp"]["token_sha256"][0])
    document["operators"]["bo"] = {"token_sha256": [token_sha256("ann-own")]}
    result = run("config", "check", str(_write(tmp_path, document)))
    assert result.exit_code == cli.EXIT_REFUSED
    assert result.stderr.splitlines()[:3] == [
        "error: business_systems.other-erp.token_sha256[1]: the same token digest as "
        "business_systems.sample-erp.token_sha256[0] (a token belongs to one caller)",
        "error: operators.ann.token_sha256[1]: the same token digest as "
        "business_systems.sample-erp.token_sha256[0] (a token belongs to one caller)",
        "error: operators.bo.token_sha256[0]: the same token digest as operators.ann.token_sha256[0] "
        "(a token belongs to one caller)",
    ]


def test_a_configuration_with_a_digest_twice_does_not_load(hub, tmp_path):
    """Fail closed: neither the file nor the pushed items load, so no request is decided by the order
    of the document (a revoked operator's token also listed for a business system, say)."""
    document = _shared_with_an_operator()
    with pytest.raises(ValidationError, match=r"operators\.ann\.token_sha256\[1\]: the same token digest"):
        HubConfig.model_validate(document)
    table = boto3.resource("dynamodb", region_name=REGION).Table(hub.environment["HUB_CONFIG_TABLE"])
    for key, value in config_items(document).items():  # as if written past config check
        table.put_item(Item={"id": "hub-config", "sk": key, "value": value})
    with pytest.raises(ValidationError, match=r"business_systems\.sample-erp\.token_sha256\[0\]"):
        _from_table(hub.environment["HUB_CONFIG_TABLE"])

    Path(hub.environment["HUB_CONFIG_FILE"]).write_text(json.dumps(document), encoding="utf-8")
    runtime.reset()
    with pytest.raises(ValidationError):
        runtime.authenticate_business_system(FIXTURE_TOKEN)


# ---------------------------------------------------------------------------- revocation
def test_revocation_takes_effect_within_the_short_period_clock_driven():
    entries: dict[str, dict[str, Any] | None] = {
        "operator#ann": {"token_sha256": [token_sha256(OPERATOR_TOKEN)], "role": "operator"},
        "business_system#erp": {"token_sha256": [token_sha256("erp-token")]},
    }
    reads: list[str] = []

    def read(key: str) -> dict[str, Any] | None:
        reads.append(key)
        return entries[key]

    clock = Clock()
    check = CallerCheck(read, max_age=5, clock=clock)
    assert check.operator("ann", OPERATOR_TOKEN) is not None and check.business_system("erp", "erp-token")
    entries["operator#ann"] = {**entries["operator#ann"], "revoked": True}
    entries["business_system#erp"] = {"token_sha256": [token_sha256("erp-next-token")]}
    clock.advance(4.9)
    assert check.operator("ann", OPERATOR_TOKEN) is not None  # within the period: the entry read before
    assert check.business_system("erp", "erp-token")
    assert reads == ["operator#ann", "business_system#erp"]
    clock.advance(0.2)
    assert check.operator("ann", OPERATOR_TOKEN) is None
    assert not check.business_system("erp", "erp-token") and check.business_system("erp", "erp-next-token")
    entries["operator#ann"] = None  # removed altogether
    entries["business_system#erp"] = {"token_sha256": ["not-a-digest"]}  # invalid: refused, not trusted
    clock.advance(5)
    assert check.operator("ann", OPERATOR_TOKEN) is None and not check.business_system("erp", "erp-next-token")


def test_a_demoted_operator_acts_with_the_current_role():
    entry = {"token_sha256": [token_sha256(OPERATOR_TOKEN)], "role": "operator"}
    clock = Clock()
    check = CallerCheck(lambda key: entry, max_age=5, clock=clock)
    assert check.operator("ann", OPERATOR_TOKEN).can_act
    entry = {**entry, "role": "viewer", "business_systems": ["sample-erp"]}
    clock.advance(5)
    current = check.operator("ann", OPERATOR_TOKEN)
    assert not current.can_act and current.business_systems == ("sample-erp",)


def test_pushed_revocation_applies_before_the_configuration_cache_expires(hub, tmp_path, monkeypatch):
    document = _document()
    _push(hub, tmp_path, document)
    clock = _read_from_the_table(monkeypatch)
    assert runtime.authenticate_operator(OPERATOR_TOKEN)[0] == "ann"
    assert hub.call(get_event(CODE))[0] == 404  # authenticated (no such application yet)

    document["operators"]["ann"]["revoked"] = True
    document["business_systems"]["sample-erp"]["token_sha256"] = [token_sha256("the-next-token")]
    _push(hub, tmp_path, document)
    clock.advance(6)  # past TOKEN_REVOCATION_MAX_AGE_SECONDS (5); far within the configuration's 300
    assert runtime.hub_config().operators["ann"].revoked is False  # the cached configuration, unchanged
    assert runtime.authenticate_operator(OPERATOR_TOKEN) is None
    assert hub.call(get_event(CODE))[0] == 401
