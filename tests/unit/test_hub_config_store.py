"""The hub configuration as DynamoDB items (config push) and checked before it is deployed (config check)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Key
from click.testing import CliRunner

from fapiao_hub.domain.config import CONFIG_PARTITION, HubConfig, Settings, load_hub_config, token_sha256
from fapiao_hub_client import cli
from tests.conftest import REGION
from tests.unit.conftest import Hub

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "local" / "hub-config.json"


def run(*args: str) -> Any:
    try:
        runner = CliRunner(mix_stderr=False)  # click 8.1: stdout and stderr apart
    except TypeError:
        runner = CliRunner()  # click >= 8.2: always apart
    result = runner.invoke(cli.main, list(args), catch_exceptions=False)
    assert "Traceback" not in result.stdout + result.stderr
    return result


def _without_inline_secrets(document: dict[str, Any]) -> dict[str, Any]:
    document = copy.deepcopy(document)
    for name, channel in document["channels"].items():
        if channel.pop("credentials", None):
            channel["credentials_secret"] = f"fapiao-hub/dev/channels/{name}"
    for system_id, system in document["business_systems"].items():
        webhook = system.get("webhook") or {}
        if [webhook.pop(key) for key in ("secret", "access_token") if key in webhook]:
            webhook["credentials_secret"] = f"fapiao-hub/dev/webhooks/{system_id}"
    return document


def _write(tmp_path: Path, document: dict[str, Any], name: str = "hub-config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


def _from_table(table: str) -> HubConfig:
    settings = Settings(
        applications_table="a", invoices_table="i", dispatch_queue_url="http://q", files_bucket="b",
        event_bus_name="e", hub_config_file=None, hub_config_parameter=None, hub_config_table=table,
    )  # fmt: skip
    return load_hub_config(settings)


# ---------------------------------------------------------------------------- config check
def test_config_check_names_every_error_by_json_path_and_exits_non_zero(tmp_path: Path) -> None:
    document = json.loads(SAMPLE.read_text(encoding="utf-8"))
    system = document["business_systems"]["sample-erp"]
    system["token_sha256"] = ["not-a-digest"]
    system["companies"]["VB5"]["seller"]["tax_number"] = 5
    document["routes"] = [{"seller_tax_number": "91220101MA17Q3K29H"}]
    document["operators"] = {"ann": {"token_sha256": [token_sha256("t")], "role": "admin"}}
    result = run("config", "check", str(_write(tmp_path, document)))
    assert result.exit_code == cli.EXIT_REFUSED
    lines = result.stderr.splitlines()
    assert lines[:4] == [
        "error: business_systems.sample-erp.token_sha256: Value error, token_sha256 entries are lowercase hex "
        "SHA-256 digests",
        "error: business_systems.sample-erp.companies.VB5.seller.tax_number: Input should be a valid string",
        "error: operators.ann.role: Input should be 'viewer' or 'operator'",
        'error: routes[0]: Value error, a route needs "channels" (or "channel")',
    ]
    assert lines[-1].endswith("4 problem(s); nothing deployed")


def test_config_check_passes_the_sample_and_says_what_it_configures() -> None:
    result = run("config", "check", str(SAMPLE))
    assert result.exit_code == 0, result.stderr
    assert "valid: 1 business systems, 4 companies, 4 channels" in result.stdout


def test_config_check_refuses_what_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"business_systems": ', encoding="utf-8")
    result = run("config", "check", str(path))
    assert result.exit_code == cli.EXIT_REFUSED and "not JSON" in result.stderr


# ---------------------------------------------------------------------------- the DynamoDB store
def test_pushed_items_read_back_as_the_same_configuration_as_the_file(hub: Hub, tmp_path: Path) -> None:
    table = hub.environment["HUB_CONFIG_TABLE"]
    document = _without_inline_secrets(json.loads(SAMPLE.read_text(encoding="utf-8")))
    document["operators"] = {"ann": {"token_sha256": [token_sha256("ann-token")], "role": "operator"}}
    path = _write(tmp_path, document)
    result = run("config", "push", str(path), "--table", table)
    assert result.exit_code == 0, result.stderr
    assert _from_table(table) == HubConfig.model_validate_json(path.read_text(encoding="utf-8"))
    keys = sorted(i["sk"] for i in boto3.resource("dynamodb", region_name=REGION).Table(table).query(
        KeyConditionExpression=Key("id").eq(CONFIG_PARTITION))["Items"])  # fmt: skip
    assert keys == ["business_system#sample-erp", "operator#ann", "settings"]

    # A business system removed from the file is removed from the table.
    del document["operators"]["ann"]
    assert run("config", "push", str(_write(tmp_path, document)), "--table", table).exit_code == 0
    assert _from_table(table).operators == {}


def test_push_refuses_secrets_inline_and_writes_nothing(hub: Hub, tmp_path: Path) -> None:
    table = hub.environment["HUB_CONFIG_TABLE"]
    result = run("config", "push", str(SAMPLE), "--table", table)
    assert result.exit_code == cli.EXIT_REFUSED
    assert "error: channels.partner.credentials: a secret in the configuration" in result.stderr
    items = boto3.resource("dynamodb", region_name=REGION).Table(table).scan()["Items"]
    assert items == []
    for name, channel in json.loads(SAMPLE.read_text(encoding="utf-8"))["channels"].items():
        for value in channel.get("credentials", {}).values():
            assert value not in result.stdout + result.stderr, name


def test_a_hundred_business_systems_with_their_sellers_fit_and_load(hub: Hub, tmp_path: Path) -> None:
    table = hub.environment["HUB_CONFIG_TABLE"]
    document = _without_inline_secrets(json.loads(SAMPLE.read_text(encoding="utf-8")))
    template = document["business_systems"]["sample-erp"]
    for n in range(100):
        system = copy.deepcopy(template)
        system["token_sha256"] = [token_sha256(f"system-{n}"), token_sha256(f"system-{n}-next")]
        system["companies"] = {
            f"C{n:03d}{k}": {**company, "seller": {**company["seller"], "tax_number": f"91220101MA{n:03d}{k:02d}Q3X"}}
            for k, company in enumerate(list(template["companies"].values()) * 3)
        }
        document["business_systems"][f"erp-{n:03d}"] = system
    path = _write(tmp_path, document)
    assert path.stat().st_size > 8 * 1024 * 20  # far past one SSM parameter (4 KB; 8 KB advanced)
    assert run("config", "check", str(path)).exit_code == 0
    assert run("config", "push", str(path), "--table", table).exit_code == 0
    loaded = _from_table(table)
    assert loaded == HubConfig.model_validate(document)
    assert len(loaded.business_systems) == 101
    assert sum(len(s.companies) for s in loaded.business_systems.values()) == 4 + 100 * 12


@pytest.mark.parametrize("section", ["business_systems", "operators"])
def test_an_empty_table_falls_back_to_the_parameter(hub: Hub, section: str) -> None:
    ssm = boto3.client("ssm", region_name=REGION)
    document = _without_inline_secrets(json.loads(SAMPLE.read_text(encoding="utf-8")))
    ssm.put_parameter(Name="/fapiao-hub/test/config", Type="SecureString", Value=json.dumps(document))
    settings = Settings(
        applications_table="a", invoices_table="i", dispatch_queue_url="http://q", files_bucket="b",
        event_bus_name="e", hub_config_file=None, hub_config_parameter="/fapiao-hub/test/config",
        hub_config_table=hub.environment["HUB_CONFIG_TABLE"],
    )  # fmt: skip
    assert getattr(load_hub_config(settings), section) == getattr(HubConfig.model_validate(document), section)
