"""docs/openapi.json against the running hub: every example gets its documented answer.

A request example and the response example it gets share a name (``blueOrder`` under the request
body and under 200). Response examples without a request example of their name show the answer to
a request broken on purpose (no token, a body too large, another content type): this test breaks a
documented request that way. The document itself validates as OpenAPI 3.1 with the outbound webhook
described, and every response example matches its response's schema.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from fapiao_hub.infra.signatures import sign
from tests.integration.conftest import LocalRun

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOC = json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))
SUBMIT_PATHS = ("/v1/invoice-orders", "/extInvoiceOrder/receiveInvoiceOrder")
READ_PATH = "/v1/invoice-orders/{openApplyCode}"
BATCH_PATH = "/v1/invoice-orders/batch"
CALLBACK_PATH = "/v1/callbacks/{channel}"
# Answers to a request broken on purpose (no request example of their name): how to break it.
BROKEN_ON_PURPOSE = {"noToken", "noAccessToken", "tooLarge", "notJson"}
# A dispatch queue or AWS that refuses: not something a request can cause (tests/unit covers 503).
NOT_CAUSABLE = {"queueDown", "awsDown"}


def operation(path: str, method: str = "post") -> dict[str, Any]:
    return DOC["paths"][path][method]


def response_examples(op: dict[str, Any]) -> dict[str, tuple[int, Any]]:
    """Example name -> (status, answer) over every response of an operation."""
    found: dict[str, tuple[int, Any]] = {}
    for status, response in op["responses"].items():
        for name, example in response["content"]["application/json"].get("examples", {}).items():
            assert name not in found, f"{name} documents two answers"
            found[name] = (int(status), example["value"])
    return found


def request_examples(op: dict[str, Any]) -> dict[str, Any]:
    return {name: e["value"] for name, e in op["requestBody"]["content"]["application/json"]["examples"].items()}


def assert_documented(response: requests.Response, status: int, documented: Any, name: str) -> None:
    """The answer is the documented one; where it depends on the moment (sizes, repeats), its stable part."""
    assert response.status_code == status, (name, response.status_code, response.text[:800])
    answer = response.json()
    if "success" not in documented:  # a channel's answer: {"value", "message"}
        if name == "tooLarge":
            assert answer["value"] is False and answer["message"].startswith("body over"), answer
        else:
            assert answer == documented, name
        return
    expected = (200 <= status < 300, status)
    assert (answer["success"], answer["code"]) == (documented["success"], documented["code"]) == expected, name
    if name == "tooLarge":
        assert answer["message"].startswith("body is ") and answer["message"].endswith(documented["message"][-20:])
    elif status == 200 and "history" not in documented["data"]:  # a submission: new, or a repeat
        assert answer["message"] in ("order received", "order already received"), answer
        assert answer["data"]["openApplyCode"] == documented["data"]["openApplyCode"]
        assert answer["data"]["warnings"] == documented["data"]["warnings"]
    elif status == 200:  # an application read back: its status moves on
        assert answer["message"] == documented["message"]
        assert answer["data"]["openApplyCode"] == documented["data"]["openApplyCode"]
        assert set(answer["data"]) == set(documented["data"]), name
    elif status == 409:  # why, and what to do instead, depend on where the application is by now
        head = "was already received with different content"
        assert head in answer["message"] and head in documented["message"], answer
        assert set(answer["data"]) == set(documented["data"]) == {"status"}, answer
    else:
        assert answer == documented, name  # the message, and for a 400 every field path and problem


def assert_batch_documented(response: requests.Response, status: int, documented: Any, name: str) -> None:
    """A batch's answer item by item: an accepted item may be a repeat by now (an earlier run)."""
    if status != 200:
        assert_documented(response, status, documented, name)
        return
    assert response.status_code == 200, (name, response.text[:800])
    answer = response.json()
    assert {k: answer[k] for k in ("success", "code", "message")} == {
        k: documented[k] for k in ("success", "code", "message")
    }, name
    data, expected = answer["data"], documented["data"]
    assert (data["accepted"], data["refused"]) == (expected["accepted"], expected["refused"]), name
    assert len(data["invoiceOrders"]) == len(expected["invoiceOrders"]), name
    for got, item in zip(data["invoiceOrders"], expected["invoiceOrders"], strict=True):
        if item["code"] == 200:
            assert got["message"] in ("order received", "order already received"), got
            assert {**got, "message": item["message"]} == item, (name, got)
        else:
            assert got == item, (name, got)


def test_the_document_is_openapi_3_1_with_the_outcome_webhook() -> None:
    validate(DOC, cls=OpenAPIV31SpecValidator)
    assert DOC["openapi"].startswith("3.1")
    webhook = DOC["webhooks"]["outcome"]["post"]
    headers = {p["name"]: p for p in webhook["parameters"] if p["in"] == "header"}
    assert set(headers) == {"X-Fapiao-Event-Id", "X-Fapiao-Timestamp", "X-Fapiao-Signature"}
    body = webhook["requestBody"]["content"]["application/json"]
    schema = DOC["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[1]]
    assert {"id", "type", "application", "invoices", "findings"} <= set(schema["properties"])
    application = DOC["components"]["schemas"]["NotifiedApplication"]
    assert "requestNumber" in application["required"]
    validator = jsonschema.Draft202012Validator({**body["schema"], "components": DOC["components"]})
    for example in body["examples"].values():
        validator.validate(example["value"])


def test_every_response_example_matches_its_schema_and_the_envelope() -> None:
    checked = 0
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                media = response["content"]["application/json"]
                validator = jsonschema.Draft202012Validator({**media["schema"], "components": DOC["components"]})
                for name, example in media.get("examples", {}).items():
                    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(example["value"])]
                    assert not errors, (path, method, status, name, errors)
                    if "success" in example["value"]:
                        assert example["value"]["code"] == int(status), (path, status, name)
                        assert example["value"]["success"] is (int(status) < 300), (path, status, name)
                    checked += 1
    assert checked >= 20


@pytest.fixture
def local_run(local_run_factory: Any) -> LocalRun:
    """The push examples name the example application by the derived request number
    (callback_schemas.EXAMPLE_PUSH_NUMBER): this run gives new applications that one (local.run)."""
    return local_run_factory(LOCAL_DERIVED_REQUEST_NUMBERS="1")


def test_every_example_gets_its_documented_answer(local_run: LocalRun) -> None:
    session = requests.Session()
    bearer = {"Authorization": f"Bearer {local_run.token}", "Content-Type": "application/json"}
    seen: set[str] = set()

    # Submitting: each request example, in the document's order (the conflict comes after its original).
    for path in SUBMIT_PATHS:
        op = operation(path)
        answers = response_examples(op)
        for name, body in request_examples(op).items():
            status, documented = answers[name]
            response = session.post(local_run.api_url + path, json=body, headers=bearer, timeout=30)
            assert_documented(response, status, documented, name)
            seen.add(name)
        valid = request_examples(op)["blueOrder"]
        broken = {
            "noToken": session.post(local_run.api_url + path, json=valid, timeout=30),
            "notJson": session.post(
                local_run.api_url + path,
                data=json.dumps(valid),
                headers={**bearer, "Content-Type": "text/plain"},
                timeout=30,
            ),
            "tooLarge": session.post(
                local_run.api_url + path, data=b" " * (6 * 1024 * 1024 + 1), headers=bearer, timeout=60
            ),
        }
        for name, response in broken.items():
            assert_documented(response, *answers[name], name)
            seen.add(name)
        assert set(answers) <= seen | NOT_CAUSABLE, set(answers) - seen

    # A batch: every item answered as its own POST, field paths under invoiceOrders[i].
    op = operation(BATCH_PATH)
    answers = response_examples(op)
    for name, body in request_examples(op).items():
        response = session.post(local_run.api_url + BATCH_PATH, json=body, headers=bearer, timeout=60)
        assert_batch_documented(response, *answers[name], name)
        seen.add(name)
    valid = request_examples(op)["batchOrders"]
    broken = {
        "noToken": session.post(local_run.api_url + BATCH_PATH, json=valid, timeout=30),
        "notJson": session.post(
            local_run.api_url + BATCH_PATH, data=json.dumps(valid), headers={**bearer, "Content-Type": "text/plain"},
            timeout=30,
        ),
        "tooLarge": session.post(
            local_run.api_url + BATCH_PATH, data=b" " * (6 * 1024 * 1024 + 1), headers=bearer, timeout=60
        ),
    }  # fmt: skip
    for name, response in broken.items():
        assert_documented(response, *answers[name], name)
        seen.add(name)
    assert set(answers) <= seen, set(answers) - seen

    # Reading: each path-parameter example.
    op = operation(READ_PATH, "get")
    answers = response_examples(op)
    [parameter] = [p for p in op["parameters"] if p["in"] == "path"]
    for name, example in parameter["examples"].items():
        url = local_run.api_url + READ_PATH.replace("{openApplyCode}", example["value"])
        assert_documented(session.get(url, headers=bearer, timeout=30), *answers[name], name)
        seen.add(name)
    url = local_run.api_url + READ_PATH.replace("{openApplyCode}", parameter["examples"]["submitted"]["value"])
    assert_documented(session.get(url, timeout=30), *answers["noToken"], "noToken")
    assert set(answers) <= seen | NOT_CAUSABLE, set(answers) - seen

    # Channel pushes, signed as the local run's Ekuaibao channel; its examples name the application
    # of docs/examples/order-ekuaibao.json.
    order = json.loads((ROOT / "docs" / "examples" / "order-ekuaibao.json").read_text(encoding="utf-8"))
    submitted = session.post(local_run.api_url + SUBMIT_PATHS[0], json=order, headers=bearer, timeout=30)
    assert submitted.status_code == 200, submitted.text
    # A push applies only once the application was sent to Ekuaibao (SUBMITTED), not while RECEIVED.
    read_url = local_run.api_url + READ_PATH.replace("{openApplyCode}", order["invoiceOrder"]["openApplyCode"])
    deadline = time.monotonic() + 30
    while session.get(read_url, headers=bearer, timeout=30).json()["data"]["status"] == "RECEIVED":
        assert time.monotonic() < deadline, "the example application was never dispatched"
        time.sleep(0.3)
    credentials = local_run.info["channels"]["ekuaibao"]["credentials"]
    op = operation(CALLBACK_PATH)
    answers = response_examples(op)
    [parameter] = [p for p in op["parameters"] if p["in"] == "path"]
    url = local_run.api_url + CALLBACK_PATH.replace("{channel}", parameter["examples"]["ekuaibao"]["value"])

    def push(raw: bytes, params: dict[str, str]) -> requests.Response:
        timestamp, nonce = str(int(time.time())), uuid.uuid4().hex
        headers = {
            "Content-Type": "application/json",
            "x-fapiao-timestamp": timestamp,
            "x-fapiao-nonce": nonce,
            "x-fapiao-signature": sign(credentials["hmac_secret"].encode(), timestamp, raw, nonce),
        }
        return session.post(url, data=raw, params=params, headers=headers, timeout=30)

    token = {"accessToken": credentials["access_token"]}
    for name, body in request_examples(op).items():
        raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
        assert_documented(push(raw, token), *answers[name], name)
        seen.add(name)
    issued = json.dumps(request_examples(op)["issued"]).encode()
    assert_documented(push(issued, {}), *answers["noAccessToken"], "noAccessToken")
    assert_documented(push(b" " * (2 * 1024 * 1024 + 1), token), *answers["tooLarge"], "tooLarge")
    assert set(answers) <= seen | BROKEN_ON_PURPOSE, set(answers) - seen
