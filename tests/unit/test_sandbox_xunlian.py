"""The Xunlian serverIssue simulator (sandbox/xunlian.py), over real HTTP on 127.0.0.1.

The simulator is the oracle for "never issue twice" (docs/rules.md section 6), so these tests pin what it
counts: what is issued, what is not, and which faults leave an invoice behind.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from sandbox import faults
from sandbox.base import china_today
from sandbox.xunlian import XunlianServer, gbk_len, run

# Seed 001's request example, verbatim (otherId is a JSON number there).
SEED_001_REQUEST = """{
        "requisitionApplyNo":"KPTZ202104130005",
        "buyerAddress":"北京市昌平区北***院101楼620室010-58688395",
        "buyerBankAndId":"中国**银行股份有限公司北京广安门支行0200001919200131264",
        "buyerName":"**集团有限公司电子商务中心",
        "buyerTaxId":"91310000631757739B",
        "companyDataResource":"tb",
        "invoiceTypeCode":"01",
        "lines":[
            {
                "lineAttribute":"0",
                "itemName":"笔记本电脑",
                "lineAmountExcludeTax":"4570.80",
                "lineAmountIncludeTax":"5165.00",
                "priceExcludeTax":"4570.80000000",
                "priceIncludeTax":"5165.00000000",
                "quantity":"1.00000000",
                "taxAmount":"594.20",
                "taxClassificationCode":"1090509010000000000",
                "taxRate":"0.13",
                "unit":"台",
                "orderNo": null,
                "orderLineId": null,
                "statementCode": null,
                "statementLineId": null,
                 "noticeCodeNo": null,
                 "noticeLineId": null
            }
        ],
        "otherId":28045669365055408,
        "sellerAddress":"上海市徐汇区**路星联科研楼2幢3-4楼 24081101",
        "sellerBankAndId":"**银行(中国)有限公司上海分行088-296504-011",
        "sellerName":"上海**集团有限司",
        "sellerTaxId":"91310000631757739A",
        "specialInvoiceMark":"00",
        "totalAmountExcludeTax":"4570.80",
        "totalAmountIncludeTax":"5165.00",
        "totalTaxAmount":"594.20",
        "statementCode": null,
        "noticeCodeNo": null,
        "receiveMsgPhone": null,
        "receiveMsgEmail": null,
        "receiveRecipient": null,
        "terminalCode": "921092123",
        "payee": null,
        "drawer": null,
        "reviewer": "张三",
        "blueInvoiceNo": null,
        "blueInvoiceCode": null
    }"""
SEED_NO = "KPTZ202104130005"
SEED_OTHER_ID = "28045669365055408"

TIMEOUT = (1.0, 2.0)  # connect, read: generous for answers that come at once
SHORT_READ = (1.0, 0.3)  # for the timeout_after_issue fault; the server holds 2 s


@pytest.fixture(scope="module")
def server() -> Iterator[XunlianServer]:
    srv = run(port=0)
    yield srv
    srv.shutdown()


@pytest.fixture(autouse=True)
def _fresh(server: XunlianServer) -> None:
    assert requests.post(server.base_url + "/_sandbox/reset", timeout=TIMEOUT).status_code == 200
    configure(server, {"timeout_ms": 2000, "latency_ms": 20})


def seed_request() -> dict[str, Any]:
    return json.loads(SEED_001_REQUEST)


def issue(server: XunlianServer, payload: dict[str, Any], timeout: Any = TIMEOUT) -> requests.Response:
    return requests.post(server.issue_url, json=payload, timeout=timeout)


def answer(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return json.loads(response.text, parse_float=Decimal)


def counts(server: XunlianServer) -> dict[str, Any]:
    return requests.get(server.base_url + "/_sandbox/issued", timeout=TIMEOUT).json()


def issued_for(server: XunlianServer, number: str) -> dict[str, Any]:
    return requests.get(f"{server.base_url}/_sandbox/issued/{number}", timeout=TIMEOUT).json()


def configure(server: XunlianServer, config: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(server.base_url + "/_sandbox/config", json=config, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


def script(server: XunlianServer, plan: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(server.base_url + "/_sandbox/faults", json=plan, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


# -- issuing ---------------------------------------------------------------------------------------


def test_seed_example_is_issued_once(server: XunlianServer) -> None:
    assert server.issue_url.endswith("/sco-invoice-legged-biz/tax/output/openapi/serverIssue")
    today_before = china_today().isoformat()
    response = issue(server, seed_request())
    today_after = china_today().isoformat()
    result = answer(response)

    assert result["ok"] is True
    assert result["status"]["returnCode"] == "200"
    assert result["requestNum"] is None
    body = result["body"]
    assert body["requisitionApplyNo"] == SEED_NO
    assert body["otherId"] == SEED_OTHER_ID  # a string in the answer
    assert re.fullmatch(r"\d{8}", body["invoiceNumber"])
    assert re.fullmatch(r"\d{12}", body["invoiceCode"])
    assert re.fullmatch(r"\d{20}", body["invoiceParityCode"])
    assert re.fullmatch(r"ANI\d{14}", body["docId"])
    assert re.fullmatch(r"[0-9a-f-]{36}", body["invoiceUuid"])
    assert body["invoiceDate"] in {today_before, today_after}
    assert body["amount"] == Decimal("4570.80")  # a JSON number, exact with parse_float=Decimal
    assert '"amount": 4570.80}' in response.text  # as the seed writes it, never through float

    assert counts(server) == {"counts": {SEED_NO: 1}, "total": 1, "attempts": {SEED_NO: 1}}
    detail = issued_for(server, SEED_NO)
    assert detail["count"] == 1
    assert detail["invoices"][0]["invoiceNumber"] == body["invoiceNumber"]
    assert detail["invoices"][0]["amount"] == "4570.80"


def test_numbering_is_deterministic_after_reset(server: XunlianServer) -> None:
    first = answer(issue(server, seed_request()))["body"]
    requests.post(server.base_url + "/_sandbox/reset", timeout=TIMEOUT)
    again = answer(issue(server, seed_request()))["body"]
    assert {k: first[k] for k in ("invoiceCode", "invoiceNumber", "invoiceParityCode", "invoiceUuid")} == {
        k: again[k] for k in ("invoiceCode", "invoiceNumber", "invoiceParityCode", "invoiceUuid")
    }


def test_second_request_with_dedupe_on_answers_duplicate_and_issues_nothing(server: XunlianServer) -> None:
    first = answer(issue(server, seed_request()))
    second = answer(issue(server, seed_request()))

    assert second["ok"] is False
    assert second["status"]["returnCode"] == "4090"
    assert second["status"]["message"] == "duplicate requisitionApplyNo"
    assert second["body"] == first["body"]  # the existing invoice: a client can treat it as success
    summary = counts(server)
    assert summary["counts"] == {SEED_NO: 1}
    assert summary["attempts"] == {SEED_NO: 2}


def test_dedupe_off_issues_twice(server: XunlianServer) -> None:
    assert configure(server, {"dedupe": False})["dedupe"] is False
    first = answer(issue(server, seed_request()))["body"]
    second = answer(issue(server, seed_request()))["body"]
    assert first["invoiceNumber"] != second["invoiceNumber"]
    assert counts(server)["counts"] == {SEED_NO: 2}
    assert issued_for(server, SEED_NO)["count"] == 2


def test_other_id_is_the_key_without_requisition_apply_no(server: XunlianServer) -> None:
    payload = seed_request()
    del payload["requisitionApplyNo"]
    first = answer(issue(server, payload))
    assert first["ok"] is True
    assert first["body"]["requisitionApplyNo"] is None
    second = answer(issue(server, payload))
    assert second["status"]["returnCode"] == "4090"
    assert second["status"]["message"] == "duplicate otherId"
    assert counts(server)["counts"] == {SEED_OTHER_ID: 1}


def test_concurrent_duplicates_issue_once(server: XunlianServer) -> None:
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def send() -> None:
        result = answer(issue(server, seed_request()))
        with lock:
            results.append(result)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(r["status"]["returnCode"] for r in results)
    assert codes == ["200"] + ["4090"] * 7
    assert counts(server)["counts"] == {SEED_NO: 1}


def test_amounts_as_json_numbers(server: XunlianServer) -> None:
    text = (
        SEED_001_REQUEST.replace('"4570.80"', "4570.80")
        .replace('"5165.00"', "5165.00")
        .replace('"594.20"', "594.20")
        .replace('"0.13"', "0.13")
    )
    response = requests.post(
        server.issue_url, data=text.encode(), headers={"Content-Type": "application/json"}, timeout=TIMEOUT
    )
    result = answer(response)
    assert result["ok"] is True, result
    assert result["body"]["amount"] == Decimal("4570.80")


def test_red_invoice_with_blue_reference_is_issued(server: XunlianServer) -> None:
    payload = negate(seed_request())
    payload.update(requisitionApplyNo="RED-1", blueInvoiceNo="12221761", blueInvoiceCode="050002000205")
    result = answer(issue(server, payload))
    assert result["ok"] is True, result
    assert result["body"]["amount"] == Decimal("-4570.80")
    assert issued_for(server, "RED-1")["invoices"][0]["red"] is True


def negate(payload: dict[str, Any]) -> dict[str, Any]:
    for field in ("totalAmountExcludeTax", "totalAmountIncludeTax", "totalTaxAmount"):
        payload[field] = "-" + payload[field]
    line = payload["lines"][0]
    for field in ("lineAmountExcludeTax", "lineAmountIncludeTax", "taxAmount", "quantity"):
        line[field] = "-" + line[field]
    return payload


# -- validation ------------------------------------------------------------------------------------


def test_item_name_over_92_gbk_bytes_is_rejected_naming_field_and_excess(server: XunlianServer) -> None:
    payload = seed_request()
    payload["lines"][0]["itemName"] = "电" * 47
    assert gbk_len(payload["lines"][0]["itemName"]) == 94
    result = answer(issue(server, payload))

    assert result["ok"] is False
    assert result["status"]["returnCode"] == "4001"
    message = result["status"]["message"]
    assert "lines[0].itemName" in message
    assert "94 bytes" in message and "limit 92" in message and "2 too many" in message
    assert result["body"] is None
    assert counts(server)["total"] == 0


def test_item_name_of_exactly_92_gbk_bytes_is_accepted(server: XunlianServer) -> None:
    payload = seed_request()
    payload["lines"][0]["itemName"] = "电" * 45 + "ab"
    assert answer(issue(server, payload))["ok"] is True


def _mutate(changes: dict[str, Any], line_changes: dict[str, Any] | None = None) -> dict[str, Any]:
    payload = seed_request()
    for key, value in changes.items():
        if value is _DELETE:
            payload.pop(key, None)
        else:
            payload[key] = value
    for key, value in (line_changes or {}).items():
        if value is _DELETE:
            payload["lines"][0].pop(key, None)
        else:
            payload["lines"][0][key] = value
    return payload


_DELETE = object()


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (_mutate({"buyerName": _DELETE}), "buyerName: required"),
        (_mutate({"sellerTaxId": ""}), "sellerTaxId: required"),
        (_mutate({"buyerTaxId": None}), "buyerTaxId (special invoice): required"),
        (_mutate({"invoiceTypeCode": "02"}), "invoiceTypeCode: '02' is not one of"),
        (_mutate({"requisitionApplyNo": _DELETE, "otherId": None}), "requisitionApplyNo: required"),
        (_mutate({"lines": []}), "lines: required"),
        (_mutate({}, {"itemName": _DELETE}), "lines[0].itemName: required"),
        (_mutate({}, {"taxRate": _DELETE}), "lines[0].taxRate: required"),
        (_mutate({}, {"lineAmountIncludeTax": _DELETE}), "lines[0].lineAmountIncludeTax: required"),
        (
            _mutate({"computeWithTax": 0}, {"lineAmountExcludeTax": _DELETE}),
            "lines[0].lineAmountExcludeTax: required (computeWithTax=0)",
        ),
        (_mutate({}, {"quantity": _DELETE}), "both present or both empty"),
        (_mutate({"note": "备" * 107}), "note: 214 bytes in GBK"),
        (_mutate({"buyerName": "集团\U0001f600"}), "cannot be encoded in GBK"),
        (
            _mutate({"totalAmountExcludeTax": "4570.801"}),
            "totalAmountExcludeTax: 3 decimal places, at most 2",
        ),
        (_mutate({}, {"taxAmount": "abc"}), "lines[0].taxAmount: not a number"),
        (_mutate({}, {"taxAmount": "600.00"}), "lines[0].taxAmount: 600.00 differs"),
        (_mutate({"totalAmountIncludeTax": "5166.00"}), "totalAmountIncludeTax: 5166.00 differs"),
        (_mutate({}, {"lineAttribute": "2"}), "lines[0].discount: a discounted line"),
        (_mutate({"computeWithTax": "yes"}), "computeWithTax"),
        (negate(seed_request()), "blueInvoiceNo (red invoice): required"),
    ],
)
def test_validation_rejects_and_issues_nothing(server: XunlianServer, payload: dict, fragment: str) -> None:
    result = answer(issue(server, copy.deepcopy(payload)))
    assert result["ok"] is False
    assert result["status"]["returnCode"] == "4001"
    assert fragment in result["status"]["message"]
    assert counts(server)["total"] == 0


def test_body_that_is_not_json_is_rejected(server: XunlianServer) -> None:
    response = requests.post(
        server.issue_url, data=b"{not json", headers={"Content-Type": "application/json"}, timeout=TIMEOUT
    )
    result = answer(response)
    assert (result["ok"], result["status"]["returnCode"]) == (False, "4000")
    assert counts(server)["total"] == 0


# -- faults ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["error_5xx", "error_500", "error_502", "error_503"])
def test_5xx_issues_nothing(server: XunlianServer, entry: str) -> None:
    script(server, {SEED_NO: [entry]})
    response = issue(server, seed_request())
    assert response.status_code in (500, 502, 503)
    if entry != "error_5xx":
        assert str(response.status_code) == entry.removeprefix("error_")
    assert counts(server)["total"] == 0


def test_timeout_after_issue_leaves_an_invoice(server: XunlianServer) -> None:
    script(server, {SEED_NO: ["timeout_after_issue"]})
    with pytest.raises(requests.exceptions.ReadTimeout):
        issue(server, seed_request(), timeout=SHORT_READ)
    assert counts(server)["counts"] == {SEED_NO: 1}


def test_malformed_answer_leaves_an_invoice(server: XunlianServer) -> None:
    script(server, {SEED_NO: ["malformed"]})
    response = issue(server, seed_request())
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)
    with pytest.raises(requests.exceptions.JSONDecodeError):
        response.json()
    assert "\u201c" in response.text  # the seed's curly quotes
    assert counts(server)["counts"] == {SEED_NO: 1}
    number = issued_for(server, SEED_NO)["invoices"][0]["invoiceNumber"]
    assert f"\u201c{number}\u201d" in response.text


def test_connection_reset_issues_nothing(server: XunlianServer) -> None:
    script(server, {SEED_NO: ["connection_reset"]})
    with pytest.raises(requests.exceptions.ConnectionError):
        issue(server, seed_request())
    assert counts(server)["total"] == 0
    assert counts(server)["attempts"] == {SEED_NO: 1}


def test_reject_fault_issues_nothing(server: XunlianServer) -> None:
    script(server, {SEED_NO: ["reject"]})
    result = answer(issue(server, seed_request()))
    assert (result["ok"], result["status"]["returnCode"]) == (False, "4002")
    assert counts(server)["total"] == 0


def test_latency_then_normal_answer(server: XunlianServer) -> None:
    script(server, {SEED_NO: ["latency"]})
    assert answer(issue(server, seed_request()))["ok"] is True


def test_per_request_faults_are_consumed_in_order(server: XunlianServer) -> None:
    remaining = script(server, {SEED_NO: ["timeout_after_issue", "error_503", ["latency", "ok"]]})
    assert remaining == {SEED_NO: [["timeout_after_issue"], ["error_503"], ["latency"]]}

    with pytest.raises(requests.exceptions.ReadTimeout):
        issue(server, seed_request(), timeout=SHORT_READ)
    assert counts(server)["counts"] == {SEED_NO: 1}
    faults_left = requests.get(server.base_url + "/_sandbox/faults", timeout=TIMEOUT).json()
    assert faults_left == {SEED_NO: [["error_503"], ["latency"]]}

    assert issue(server, seed_request()).status_code == 503

    third = answer(issue(server, seed_request()))  # the retry finds the invoice the timeout left
    assert third["status"]["returnCode"] == "4090"
    assert third["body"]["invoiceNumber"] == issued_for(server, SEED_NO)["invoices"][0]["invoiceNumber"]

    fourth = answer(issue(server, {**seed_request(), "requisitionApplyNo": "OTHER"}))
    assert fourth["ok"] is True  # another number is untouched by the script
    assert requests.get(server.base_url + "/_sandbox/faults", timeout=TIMEOUT).json() == {}
    summary = counts(server)
    assert summary["counts"] == {SEED_NO: 1, "OTHER": 1}
    assert summary["attempts"] == {SEED_NO: 3, "OTHER": 1}


def test_rates_are_reproducible_with_a_seed(server: XunlianServer) -> None:
    config = {"seed": 7, "rates": {"error_5xx": 0.3, "reject": 0.3, "malformed": 0.2, "latency": 0.1}}

    def outcomes() -> list[str]:
        requests.post(server.base_url + "/_sandbox/reset", timeout=TIMEOUT)
        configure(server, {**config, "latency_ms": 1})
        seen = []
        for i in range(30):
            response = issue(server, {**seed_request(), "requisitionApplyNo": f"R{i}"})
            try:
                seen.append(f"{response.status_code}:{response.json()['status']['returnCode']}")
            except (requests.exceptions.JSONDecodeError, KeyError, TypeError):
                seen.append(f"{response.status_code}:unreadable")
        return seen

    first, second = outcomes(), outcomes()
    assert first == second
    assert len(set(first)) > 2  # the rates actually fired
    issued = counts(server)["total"]
    # Only answers that issued count: success and malformed.
    assert issued == sum(1 for o in second if o in ("200:200", "200:unreadable"))


def test_rate_one_faults_every_request(server: XunlianServer) -> None:
    configure(server, {"seed": 1, "rates": {"error_5xx": 1}})
    for _ in range(3):
        assert issue(server, seed_request()).status_code in (500, 502, 503)
    assert counts(server)["total"] == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"rates": {"error_5xx": 0.6, "reject": 0.6}},
        {"rates": {"nonsense": 0.1}},
        {"rates": {"latency": 2}},
        {"timeout_ms": -1},
        {"seed": "x"},
        {"dedupe": "yes"},
        {"colour": "blue"},
    ],
)
def test_bad_config_is_refused_and_changes_nothing(server: XunlianServer, bad: dict[str, Any]) -> None:
    before = requests.get(server.base_url + "/_sandbox/config", timeout=TIMEOUT).json()
    response = requests.post(server.base_url + "/_sandbox/config", json=bad, timeout=TIMEOUT)
    assert response.status_code == 400
    assert "error" in response.json()
    assert requests.get(server.base_url + "/_sandbox/config", timeout=TIMEOUT).json() == before


def test_bad_fault_script_is_refused(server: XunlianServer) -> None:
    for bad in ({"X": ["explode"]}, {"X": "malformed"}, {"X": [["malformed", "reject"]]}):
        response = requests.post(server.base_url + "/_sandbox/faults", json=bad, timeout=TIMEOUT)
        assert response.status_code == 400, bad
    assert requests.get(server.base_url + "/_sandbox/faults", timeout=TIMEOUT).json() == {}


def test_config_round_trip(server: XunlianServer) -> None:
    config = {
        "seed": 1,
        "rates": {
            "latency": 0.1,
            "error_5xx": 0.05,
            "timeout_after_issue": 0.02,
            "malformed": 0.02,
            "reject": 0.02,
        },
        "latency_ms": 200,
        "timeout_ms": 3000,
        "dedupe": True,
    }
    got = configure(server, config)
    assert got == requests.get(server.base_url + "/_sandbox/config", timeout=TIMEOUT).json()
    assert got["rates"] == {**dict.fromkeys(faults.RATE_FAULTS, 0.0), **config["rates"]}
    assert (got["seed"], got["latency_ms"], got["timeout_ms"], got["dedupe"]) == (1, 200, 3000, True)


def test_reset_clears_invoices_scripts_and_config(server: XunlianServer) -> None:
    answer(issue(server, seed_request()))
    script(server, {"X": ["reject"]})
    configure(server, {"dedupe": False, "rates": {"reject": 0.5}})

    assert requests.post(server.base_url + "/_sandbox/reset", timeout=TIMEOUT).status_code == 200

    assert counts(server) == {"counts": {}, "total": 0, "attempts": {}}
    assert issued_for(server, SEED_NO)["count"] == 0
    assert requests.get(server.base_url + "/_sandbox/faults", timeout=TIMEOUT).json() == {}
    config = requests.get(server.base_url + "/_sandbox/config", timeout=TIMEOUT).json()
    assert config["dedupe"] is True
    assert set(config["rates"].values()) == {0.0}
    assert answer(issue(server, seed_request()))["ok"] is True


def test_binds_loopback_only() -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        run(host="0.0.0.0")  # noqa: S104 - the point is that it is refused
