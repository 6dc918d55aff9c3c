"""Keys that cannot collide across tenants (issue 18 item 6).

An application's key is ``{business system}#{openApplyCode}``. With ``#`` allowed in either part,
``sample-erp`` + ``x#C`` and ``sample-erp#x`` + ``C`` were the same key: one system's POST reached
the other's application (a 409 revealing its status; a REJECTED one overwritten by resubmission).
Now neither part may hold ``#`` or a control character, wherever it comes from: the configuration
(config check names the JSON path), intake (400 naming invoiceOrder.openApplyCode, nothing stored),
and the path parameters of the intake and ops routes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from fapiao_hub.domain.config import HubConfig, token_sha256
from fapiao_hub.domain.models import application_key, key_part_problem
from fapiao_hub_client import cli
from tests.unit.conftest import FIXTURE_TOKEN, event, get_event, hub_config_document
from tests.unit.test_hub_config_store import run
from tests.unit.test_ops_api import operations_module, ops  # noqa: F401 - the fixtures

CODE = "zcxs1825830330588741634"
BAD_PARTS = ["x#C", "#", "C\u0007", "tab\tcode", "line\nbreak", "nul\u0000", "del\u007f", "c1\u0085"]


@pytest.mark.parametrize("part", BAD_PARTS)
def test_no_key_part_may_hold_the_separator_or_a_control_character(part):
    assert key_part_problem(part) is not None
    with pytest.raises(ValueError, match="must not contain"):
        application_key("sample-erp", part)
    with pytest.raises(ValueError, match="must not contain"):
        application_key(part, "C")


def test_the_two_ways_to_one_key_both_fail():
    """sample-erp + x#C and sample-erp#x + C would both be 'sample-erp#x#C'."""
    with pytest.raises(ValueError):
        application_key("sample-erp", "x#C")
    with pytest.raises(ValueError):
        application_key("sample-erp#x", "C")
    assert application_key("sample-erp", "x-C") != application_key("sample-erp-x", "C")


def test_a_business_system_named_with_a_hash_is_refused_by_the_configuration(tmp_path: Path):
    document = hub_config_document()
    document["business_systems"]["sample-erp#x"] = {
        "token_sha256": [token_sha256("token-of-sample-erp-x")],
        "companies": document["business_systems"]["sample-erp"]["companies"],
    }
    with pytest.raises(ValidationError) as refused:
        HubConfig.model_validate(document)
    [problem] = refused.value.errors()
    assert problem["loc"] == ("business_systems", "sample-erp#x", "[key]")
    assert "must not contain '#'" in problem["msg"]
    path = tmp_path / "hub-config.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    result = run("config", "check", str(path))
    assert result.exit_code == cli.EXIT_REFUSED
    assert result.stderr.splitlines()[0] == (
        "error: business_systems.sample-erp#x.[key]: a business system's name must not contain '#' "
        "(it separates the parts of the hub's keys)"
    )


def test_control_characters_in_a_business_systems_name_are_refused():
    document = hub_config_document()
    document["business_systems"]["erp\u0007"] = document["business_systems"].pop("other-erp")
    with pytest.raises(ValidationError, match="must not contain control characters"):
        HubConfig.model_validate(document)


def _order(code: str) -> dict:
    body = json.loads(event("intake-post-blue.json")["body"])
    body["invoiceOrder"]["openApplyCode"] = code
    return body


@pytest.mark.parametrize("code", BAD_PARTS)
def test_intake_refuses_such_an_open_apply_code_naming_it_and_stores_nothing(hub, code):
    before = hub.snapshot()
    status, answer, _ = hub.call(event("intake-post-blue.json", body=_order(code)))
    assert status == 400, answer
    [error] = answer["data"]["errors"]
    assert error["field"] == "invoiceOrder.openApplyCode" and "must not contain" in error["message"]
    assert hub.snapshot() == before


def test_a_void_request_with_such_a_code_is_refused_too(hub):
    body = {"invoiceOrder": {"openApplyCode": "x#C", "bukrs": "VB5", "openInvoiceType": "2",
                             "applyCancelReason": "开错了", "blueInvoiceNumber": "12345678"}}  # fmt: skip
    before = hub.snapshot()
    status, answer, _ = hub.call(event("intake-post-blue.json", body=body))
    assert status == 400
    assert [e["field"] for e in answer["data"]["errors"]] == ["invoiceOrder.openApplyCode"]
    assert hub.snapshot() == before


def _colliding_item(hub) -> str:
    """sample-erp's application "x", and under the key "sample-erp#x#C" an item as it could have
    been stored before names and codes were checked (a system "sample-erp#x", its code "C")."""
    assert hub.call(event("intake-post-blue.json", body=_order("x")))[0] == 200
    [item] = hub.applications()
    hub.table.put_item(Item={**item, "pk": "sample-erp#x#C", "source_system": "sample-erp#x", "open_apply_code": "C"})
    return "sample-erp#x#C"


def test_x_hash_c_from_sample_erp_never_touches_another_systems_application(hub):
    """POST x#C is refused with nothing stored; GET x#C (as a client sends it, %23, or raw) finds
    nothing: the path parameter is never decoded into a '#' (the router matches no '#')."""
    _colliding_item(hub)
    before = hub.snapshot()
    status, answer, _ = hub.call(event("intake-post-blue.json", body=_order("x#C")))
    assert status == 400 and answer["data"]["errors"][0]["field"] == "invoiceOrder.openApplyCode"
    for raw in ("x%23C", "x#C"):
        status, answer, _ = hub.call(get_event(raw, FIXTURE_TOKEN))
        assert status == 404, answer
    assert hub.snapshot() == before


@pytest.mark.parametrize(
    ("system", "code"),
    [("sample-erp", "x%23C"), ("sample-erp", "x#C"), ("sample-erp%23x", "C"), ("sample-erp#x", "C"),
     ("sample-erp", "C%07"), ("sample-erp", "C\u0007")],
)  # fmt: skip
@pytest.mark.parametrize("route", ["ops-get.json", "ops-act.json"])
def test_the_ops_routes_never_reach_another_key_through_their_path_parameters(ops, hub, route, system, code):  # noqa: F811
    _colliding_item(hub)
    before = hub.snapshot()
    status, answer, _ = ops.at(route, system, code)
    assert status == 404, answer
    assert ops.fake.calls == []  # no action reached the use case
    assert hub.snapshot() == before
