"""The HTTP API's OpenAPI document: generated from the routes, committed as docs/openapi.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fapiao_hub.api import openapi, schemas

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "openapi.json"
OPERATIONS = {
    ("/v1/invoice-orders", "post"),
    ("/extInvoiceOrder/receiveInvoiceOrder", "post"),
    ("/v1/invoice-orders/batch", "post"),
    ("/v1/invoice-orders/{openApplyCode}", "get"),
    ("/v1/callbacks/{channel}", "post"),
    ("/v1/ops/summary", "get"),
    ("/v1/ops/applications", "get"),
    ("/v1/ops/applications/{businessSystem}/{openApplyCode}", "get"),
    ("/v1/ops/applications/{businessSystem}/{openApplyCode}/actions", "post"),
    ("/v1/ops/applications/{businessSystem}/{openApplyCode}/raw", "get"),
}
SUBMIT_PATHS = ("/v1/invoice-orders", "/extInvoiceOrder/receiveInvoiceOrder")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The document as ``make openapi`` writes it, generated in a fresh interpreter.

    Generating imports the route modules; in this process that would create their Powertools child
    loggers before the handlers' parent loggers (other tests' handlers would find them orphaned).
    """
    target = tmp_path_factory.mktemp("openapi") / "openapi.json"
    done = subprocess.run(  # noqa: S603 (this interpreter, fixed arguments)
        [sys.executable, "-m", "fapiao_hub.api.openapi", str(target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return target.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def doc(generated: str) -> dict:
    return json.loads(generated)


def schema(doc: dict, ref_or_schema: dict) -> dict:
    ref = ref_or_schema.get("$ref")
    if ref is None:
        return ref_or_schema
    assert ref.startswith("#/components/schemas/"), ref
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]]


def test_committed_document_is_up_to_date(generated: str, doc: dict) -> None:
    assert COMMITTED.exists(), "docs/openapi.json is missing: run make openapi"
    text = COMMITTED.read_text(encoding="utf-8")
    assert json.loads(text) == doc, "docs/openapi.json is out of date: run make openapi"
    assert text == generated, "docs/openapi.json is not as make openapi writes it: run make openapi"
    assert generated == openapi.to_json(doc) and generated.endswith("}\n")


def test_intake_query_and_callback_routes_are_documented(doc: dict) -> None:
    assert doc["info"]["title"] == "fapiao-hub"
    assert doc["info"]["version"] == openapi.version()
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert documented == OPERATIONS
    operation_ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(set(operation_ids)) == len(operation_ids)


@pytest.mark.parametrize("path", SUBMIT_PATHS)
def test_intake_body_is_the_seed_004_request(doc: dict, path: str) -> None:
    body = doc["paths"][path]["post"]["requestBody"]
    assert body["required"] is True
    request = body["content"]["application/json"]["schema"]
    assert request == {"$ref": "#/components/schemas/Seed004Request"}
    root = schema(doc, request)
    assert root["required"] == ["invoiceOrder"]
    order = schema(doc, root["properties"]["invoiceOrder"])
    assert {"openApplyCode", "bukrs", "invoiceType", "purchaserTaxpayerName"} <= set(order["required"])
    lines = order["properties"]["invoiceOrderSub"]
    assert lines["type"] == "array" and lines["minItems"] == 1
    line = schema(doc, lines["items"])
    assert {"goodsName", "amtInclTax", "taxrate"} <= set(line["properties"])


def test_the_batch_route_takes_a_list_of_seed_004_bodies_and_answers_each(doc: dict) -> None:
    op = doc["paths"]["/v1/invoice-orders/batch"]["post"]
    request = schema(doc, op["requestBody"]["content"]["application/json"]["schema"])
    assert request["required"] == ["invoiceOrders"]
    assert (request["properties"]["invoiceOrders"]["minItems"], request["properties"]["invoiceOrders"]["maxItems"]) == (
        1,
        100,
    )
    answer = schema(doc, op["responses"]["200"]["content"]["application/json"]["schema"])
    result = schema(doc, answer["properties"]["data"])
    assert set(result["required"]) == {"accepted", "refused", "invoiceOrders"}
    assert set(op["responses"]) == {"200", "400", "401", "413", "415"}


def test_answers_are_declared_with_their_models(doc: dict) -> None:
    def answer(path: str, method: str, status: str) -> dict:
        content = doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
        return schema(doc, content)

    for path in SUBMIT_PATHS:
        accepted = answer(path, "post", "200")
        assert set(accepted["properties"]) == {"success", "code", "message", "data"}
        assert schema(doc, accepted["properties"]["data"])["title"] == "OrderAccepted"
        refused = answer(path, "post", "400")["properties"]["data"]["anyOf"]
        errors = schema(doc, refused[0])["properties"]["errors"]["items"]
        assert set(schema(doc, errors)["properties"]) == {"field", "message"}
        for status in ("401", "413", "415", "503"):
            assert answer(path, "post", status)["title"] == "Envelope"
        conflict = answer(path, "post", "409")
        assert conflict["title"] == "OrderConflictAnswer"
        assert set(schema(doc, conflict["properties"]["data"])["properties"]) == {"status"}
    detail = answer("/v1/invoice-orders/{openApplyCode}", "get", "200")
    assert {"history", "invoices", "invoiceOrder"} <= set(schema(doc, detail["properties"]["data"])["properties"])
    callback = answer("/v1/callbacks/{channel}", "post", "200")
    assert callback["required"] == ["value"] and "message" in callback["properties"]


def test_the_operations_desk_is_documented(doc: dict) -> None:
    ops = "/v1/ops/applications"
    listing = doc["paths"][ops]["get"]
    assert {p["name"] for p in listing["parameters"]} == {
        "status", "businessSystem", "seller", "channel", "receivedFrom", "receivedTo", "openFindings", "limit",
        "cursor",
    }  # fmt: skip
    assert set(listing["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    page = schema(doc, listing["responses"]["200"]["content"]["application/json"]["schema"])
    rows = schema(doc, schema(doc, page["properties"]["data"])["properties"]["items"]["items"])
    assert set(rows["properties"]) == {  # ops_api.ROW_FIELDS (not imported here: see generated())
        "businessSystem", "openApplyCode", "status", "companyCode", "sellerTaxNumber", "buyerName", "channel",
        "requestNumber", "invoiceType", "direction", "amount", "tax", "receivedAt", "updatedAt", "openFindings",
        "reason",
    }  # fmt: skip
    detail = schema(doc, doc["paths"][ops + "/{businessSystem}/{openApplyCode}"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"])  # fmt: skip
    assert {"attempts", "leaseUntil", "nextPollAt", "rawKeys", "actions", "findings"} <= set(
        schema(doc, detail["properties"]["data"])["properties"]
    )
    act = doc["paths"][ops + "/{businessSystem}/{openApplyCode}/actions"]["post"]
    body = schema(doc, act["requestBody"]["content"]["application/json"]["schema"])
    assert {"action", "reason"} <= set(body["required"])
    for path, item in doc["paths"].items():
        if path.startswith("/v1/ops"):
            assert {"200", "401", "503"} <= set(next(iter(item.values()))["responses"]), path


def test_security_schemes_bearer_for_intake_access_token_for_callbacks(doc: dict) -> None:
    schemes = doc["components"]["securitySchemes"]
    bearer = schemes[schemas.BEARER]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    callback = schemes[schemas.CALLBACK_TOKEN]
    assert (callback["type"], callback["in"], callback["name"]) == ("apiKey", "query", "accessToken")
    expected = {operation: schemas.BEARER for operation in OPERATIONS}
    expected["/v1/callbacks/{channel}", "post"] = schemas.CALLBACK_TOKEN
    for (path, method), scheme in expected.items():
        assert doc["paths"][path][method]["security"] == [{scheme: []}], (path, method)


def test_no_validation_error_schemas_for_a_resolver_without_validation(doc: dict) -> None:
    """Powertools adds its 422 schemas to every document; this API never answers them."""
    assert not {"HTTPValidationError", "ValidationError", "ResponseValidationError"} & set(doc["components"]["schemas"])
    assert all("422" not in op["responses"] for item in doc["paths"].values() for op in item.values())


def test_the_example_orders_match_the_documented_body(doc: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(
        {"$ref": "#/components/schemas/Seed004Request", "components": doc["components"]}
    )
    examples = [
        ROOT / "tests" / "fixtures" / "seed004_example.json",
        *sorted((ROOT / "docs" / "examples").glob("*.json")),
    ]
    for example in examples:
        errors = [
            f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(json.loads(example.read_text()))
        ]
        assert not errors, (example.name, errors)


def test_document_is_valid_openapi(doc: dict) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(doc)
