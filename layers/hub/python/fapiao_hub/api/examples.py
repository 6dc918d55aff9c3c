"""The OpenAPI document's examples of the business systems' routes: orders, the answers they get, reads
and batches, and the :func:`example` / :func:`refusal` builders every route's examples use.

A request example and the response example it gets share a name (``blueOrder`` under the request
body and under 200, ``ruleProblems`` under the body and under 400); response examples without a
request example of their name (401, 413, 415, 503) show the answer to a request broken as their
description says. tests/integration/test_openapi_examples.py sends every example to the local run and
checks it gets its documented answer.
"""

from __future__ import annotations

from typing import Any

from fapiao_hub.domain.models import application_key, request_number_for

# What the local run (make run) accepts: company VB5 of the sample business system goes to the
# Xunlian sandbox, EK1 to the Ekuaibao sandbox.
EXAMPLE_CODE = "swagger-example-0001"
EXAMPLE_LINE = {
    "goodsName": "CA7201HA6TA智联旗畅版(2024款)",
    "taxonomyCode": "1090305010300000000",
    "MaterialCode": "HFCECMCC2J2JDY0001",
    "taxrate": 0.13,
    "vehicleNo": "THFCECMCC2J2J1270",
}
EXAMPLE_ORDER: dict[str, Any] = {
    "invoiceOrder": {
        "openApplyCode": EXAMPLE_CODE,
        "bukrs": "VB5",
        "openInvoiceType": "0",
        "invoiceType": "028",
        "amtInclTaxSign": "1",
        "businessTypeCode": "098",
        "businessTypeName": "整车销售",
        "purchaserTaxpayerName": "吉林省神州红旗汽车销售服务有限公司",
        "purchaserTaxpayerNo": "91220101MA0Y5K3N4H",
        "purchaserTaxpayerCode": "DJL606",
        "invoiceAmt": 5318.58,
        "invoiceTax": 691.42,
        "invoiceAmtInclTax": 6010.0,
        "invoiceOrderSub": [
            {**EXAMPLE_LINE, "invoiceLineNature": "2", "model": "THFCECMCC2J2J1270", "unit": "辆", "quantity": 1,
             "price": 48.0, "amtInclTax": 48.0},
            {**EXAMPLE_LINE, "invoiceLineNature": "1", "amtInclTax": -38.0},
            {**EXAMPLE_LINE, "invoiceLineNature": "0", "model": "THFCECMCC2J2J1270", "unit": "辆", "quantity": 1,
             "price": 6000.0, "amtInclTax": 6000.0},
        ],
    }
}  # fmt: skip


def _order(**changes: Any) -> dict[str, Any]:
    return {"invoiceOrder": {**EXAMPLE_ORDER["invoiceOrder"], **changes}}


def _line(index: int, **changes: Any) -> list[dict[str, Any]]:
    lines = [dict(line) for line in EXAMPLE_ORDER["invoiceOrder"]["invoiceOrderSub"]]
    lines[index].update(changes)
    return lines


def example(summary: str, value: Any) -> dict[str, Any]:
    return {"summary": summary, "value": value}


def refusal(summary: str, status: int, message: str, data: Any = None) -> dict[str, Any]:
    """An answer in the intake's envelope for a refused request."""
    return example(summary, {"success": False, "code": status, "message": message, "data": data})


ORDER_EXAMPLES = {
    "blueOrder": example(
        "a blue 增值税电子专用发票 (028) with a discount pair, company VB5", EXAMPLE_ORDER
    ),
    "ruleProblems": example(
        "breaks tax rules: a buyer tax number that is none, a discount line with a unit",
        _order(openApplyCode="swagger-example-0002", purchaserTaxpayerNo="dddddmarkForTax",
               invoiceOrderSub=_line(1, unit="辆")),
    ),
    "unknownCodes": example(
        "codes the hub does not know: invoiceType, openInvoiceType",
        _order(openApplyCode="swagger-example-0003", invoiceType="0999", openInvoiceType="9"),
    ),
    "sameCodeOtherContent": example(
        "blueOrder's openApplyCode again with other content", _order(remark="changed after submitting")
    ),
}  # fmt: skip
ORDER_ANSWERS: dict[int, dict[str, Any]] = {
    200: {
        "blueOrder": example(
            "stored and queued ('order already received' when the same body comes again)",
            {
                "success": True,
                "code": 200,
                "message": "order received",
                "data": {"openApplyCode": EXAMPLE_CODE, "status": "RECEIVED", "warnings": []},
            },
        )
    },
    400: {
        "ruleProblems": refusal(
            "every problem, by JSON path",
            400,
            "invalid invoice order: 2 problems",
            {
                "errors": [
                    {
                        "field": "invoiceOrder.invoiceOrderSub[1].unit",
                        "message": "a discount line must leave the unit empty",
                    },
                    {
                        "field": "invoiceOrder.purchaserTaxpayerNo",
                        "message": "tax number is malformed: 'd' is not allowed in a 15-character tax number "
                        "(digits and uppercase letters A-Z only)",
                    },
                ]
            },
        ),
        "unknownCodes": refusal(
            "unknown codes, with the accepted ones",
            400,
            "invalid invoice order: 2 problems",
            {
                "errors": [
                    {
                        "field": "invoiceOrder.invoiceType",
                        "message": "unknown invoice type code '0999' (accepted: 004, 007, 01, 0112, 02, 0212, 026, "
                        "028)",
                    },
                    {
                        "field": "invoiceOrder.openInvoiceType",
                        "message": "must be 0 (blue), 1 (red) or 2 (void), got '9'",
                    },
                ]
            },
        ),
    },
    401: {"noToken": refusal("no Authorization header (or an unknown token)", 401, "missing or invalid bearer token")},
    409: {
        "sameCodeOtherContent": refusal(
            "the openApplyCode is taken by other content",
            409,
            f"openApplyCode {EXAMPLE_CODE!r} was already received with different content and was ISSUED: an "
            "issued application is not replaced; reverse its invoice with a red application (openInvoiceType 1) "
            "under a new openApplyCode",
            {"status": "ISSUED"},
        )
    },
    413: {"tooLarge": refusal("a body over the limit", 413, "body is 6291457 bytes; the limit is 6291456")},
    415: {"notJson": refusal("Content-Type text/plain", 415, "Content-Type must be application/json")},
    503: {
        "queueDown": refusal(
            "stored, not yet queued",
            503,
            "the application was stored but could not be queued for dispatch; send the same request again",
        )
    },
}
READ_EXAMPLES = {
    "submitted": example("blueOrder's application (submit it first)", EXAMPLE_CODE),
    "unknown": example("an application this business system does not have", "no-such-order"),
}
READ_ANSWERS: dict[int, dict[str, Any]] = {
    200: {
        "submitted": example(
            "issued by the Xunlian sandbox",
            {
                "success": True,
                "code": 200,
                "message": "ok",
                "data": {
                    "openApplyCode": EXAMPLE_CODE,
                    "status": "ISSUED",
                    "warnings": [],
                    "version": 4,
                    "channel": "xunlian",
                    "createdAt": "2026-11-21T12:00:00.000Z",
                    "updatedAt": "2026-11-21T12:00:01.200Z",
                    "reason": None,
                    "history": [
                        {"at": "2026-11-21T12:00:00.000Z", "status": "RECEIVED", "note": "received"},
                        {"at": "2026-11-21T12:00:00.900Z", "status": "DISPATCHING", "previous": "RECEIVED",
                         "note": "attempt 1 (request number FH2V6Q3X7ABCDEFGHIJK)"},
                        {"at": "2026-11-21T12:00:01.200Z", "status": "ISSUED", "previous": "DISPATCHING",
                         "note": "issued"},
                    ],
                    "historyNextCursor": None,
                    "requestNumber": request_number_for(application_key("sample-erp", EXAMPLE_CODE)),
                    "findings": [],
                    "invoices": [
                        {"invoiceNumber": "00000001", "invoiceCode": "044002300111", "invoiceDate": "2026-11-21",
                         "invoiceType": "VAT_SPECIAL_ELECTRONIC", "amount": 5318.58, "tax": 691.42,
                         "status": "ISSUED", "channel": "xunlian",
                         "redRemainingAmount": 5318.58, "redRemainingTax": 691.42,
                         "verified": ["seller", "buyer", "invoice_type", "direction", "issued_on", "amount", "tax"],
                         "verifiedFromFile": [], "attestedByOperator": [], "fromApplication": [],
                         "files": [{"format": "pdf", "size": 1234, "sha256": "9f86d081884c7d65...",
                                    "url": "https://files.example/invoices/...?X-Amz-Expires=300"}]},
                    ],
                    "invoiceOrder": {**EXAMPLE_ORDER["invoiceOrder"], "invoiceAmt": 5318.58},
                },
            },
        )
    },
    401: ORDER_ANSWERS[401],
    404: {"unknown": refusal("not yours, or no such application", 404, "no invoice order 'no-such-order'")},
    503: {"awsDown": refusal("a moment's outage", 503, "temporarily unavailable; try again")},
}  # fmt: skip

# A batch: a new order and a broken one (each answered as its own POST).
BATCH_CODES = ("swagger-example-0010", "swagger-example-0011")
BATCH_EXAMPLES = {
    "batchOrders": example(
        "two orders: the second with an unknown invoiceType",
        {"invoiceOrders": [_order(openApplyCode=BATCH_CODES[0]),
                           _order(openApplyCode=BATCH_CODES[1], invoiceType="0999")]},
    ),
    "emptyBatch": example("no orders at all", {"invoiceOrders": []}),
}  # fmt: skip
BATCH_ANSWERS: dict[int, dict[str, Any]] = {
    200: {
        "batchOrders": example(
            "one received ('order already received' when sent again), one refused naming invoiceOrders[1]",
            {
                "success": True,
                "code": 200,
                "message": "batch of 2: 1 accepted, 1 refused",
                "data": {
                    "accepted": 1,
                    "refused": 1,
                    "invoiceOrders": [
                        {"index": 0, "openApplyCode": BATCH_CODES[0], "success": True, "code": 200,
                         "message": "order received",
                         "data": {"openApplyCode": BATCH_CODES[0], "status": "RECEIVED", "warnings": []}},
                        {"index": 1, "openApplyCode": BATCH_CODES[1], "success": False, "code": 400,
                         "message": "invalid invoice order: 1 problem",
                         "data": {"errors": [ORDER_ANSWERS[400]["unknownCodes"]["value"]["data"]["errors"][0]
                                             | {"field": "invoiceOrders[1].invoiceOrder.invoiceType"}]}},
                    ],
                },
            },
        )
    },
    400: {
        "emptyBatch": refusal(
            "an empty batch: nothing stored",
            400,
            "invalid batch: must hold 1 to 100 invoice orders, got 0",
            {"errors": [{"field": "invoiceOrders", "message": "must hold 1 to 100 invoice orders, got 0"}]},
        )
    },
}  # fmt: skip
