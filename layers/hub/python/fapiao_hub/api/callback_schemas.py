"""What the channels' callback route (``api.callbacks``) declares in the OpenAPI document: the answer a
pushing channel gets, and what Ekuaibao (易快报) pushes, with their examples."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fapiao_hub.api.examples import example
from fapiao_hub.domain.models import application_key, request_number_for


class CallbackAnswer(BaseModel):
    """What the hub answers a pushing channel, in Ekuaibao's shape: value, and why not."""

    value: bool = Field(description="true: the push was taken")
    message: str | None = Field(None, description="why not")


# ---------------------------------------------------------------------------- pushed results (Ekuaibao)
# Documentation of what channels push; channels.ekuaibao.parse_push is the reader (liberal where
# Ekuaibao's own example deviates from its field table: numbers as strings or numbers, "" as absent).
_DECIMAL = "a number or a numeric string"


class _Liberal(BaseModel):
    model_config = ConfigDict(extra="allow")


class EkuaibaoPushLine(_Liberal):
    goodsName: str = Field(description="goods or service name")
    goodsCost: str | float = Field(description=f"line amount excluding tax; {_DECIMAL}")
    goodsVat: str | float = Field(description=f"line tax; {_DECIMAL}")
    taxrate: str | float | None = Field(None, description=f"tax rate (also accepted as taxRate); {_DECIMAL}")
    goodsNum: str | float | None = Field(None, description="quantity")
    goodsPrice: str | float | None = Field(None, description="unit price excluding tax")
    goodsUnit: str | None = Field(None, description="unit")
    goodsSpecification: str | None = Field(None, description="specification")
    taxTaxonomyCode: str | None = Field(None, description="tax classification code, 19 digits")
    invRowType: int | str | None = Field(None, description="line nature: 0 normal, 1 discount, 2 discounted")


class EkuaibaoPushInvoice(_Liberal):
    invoiceNumber: str = Field(description="the invoice number")
    invoiceCode: str | None = Field(None, description="legacy invoices' code; empty for 数电")
    invoiceTypeCode: str = Field(
        description="004 paper special, 007 paper normal, 026 electronic normal, 028 electronic special, "
        "01 数电 special, 02 数电 normal",
        json_schema_extra={"enum": ["004", "007", "026", "028", "01", "02"]},
    )
    invoiceType: int | str | None = Field(None, description="0 blue (default), 1 red")
    invoiceDate: int | str | None = Field(None, description="issue date, milliseconds since the epoch (UTC+8 date)")
    invoicingDate: int | str | None = Field(None, description="used when invoiceDate is absent")
    invoiceAmount: str | float = Field(description=f"amount excluding tax; {_DECIMAL}")
    invoiceTaxAmount: str | float | None = Field(None, description=f"tax; {_DECIMAL}")
    invoiceTotalPriceTax: str | float | None = Field(None, description=f"total including tax; {_DECIMAL}")
    checkCode: str | None = Field(None, description="check code (校验码)")
    invoicingStatus: str | None = Field(None, description="00 issued (default), 03 voided")
    orderNo: str | None = Field(None, description="the request number, when serialNo is absent")
    buyerName: str | None = Field(None, description="buyer name as issued")
    buyerTaxNo: str | None = Field(None, description="buyer tax number as issued")
    sellerName: str | None = Field(None, description="seller name as issued")
    sellerTaxNo: str | None = Field(None, description="seller tax number as issued")
    originalInvoiceNumber: str | None = Field(None, description="red: the reversed blue invoice's number")
    originalInvoiceCode: str | None = Field(None, description="red: the reversed blue invoice's code")
    originalsUrl: str | None = Field(None, description="the invoice file (PDF/OFD/XML), fetched by the hub")
    previewUrl: str | None = Field(None, description="a preview file, fetched by the hub")
    details: list[EkuaibaoPushLine] = Field(description="the invoice's lines (at least one)")


class EkuaibaoPush(_Liberal):
    """Ekuaibao's (易快报) invoicing-result push (POST /api/openapi/v2/invoicing in its API), as the hub takes it."""

    channelCode: str = Field(description="the channel's code at Ekuaibao", examples=["jcsk"])
    serialNo: str | None = Field(
        None,
        description="批次号: the hub's request number (20 characters, FH...), as sent to the channel; "
        "without it, each invoice's orderNo",
    )
    result: int | str | None = Field(
        None,
        description="0 issued (also when absent), 1 rejected, 2 in progress",
        json_schema_extra={"enum": [0, 1, 2, "0", "1", "2", "", None]},
    )
    rejectMsg: str | None = Field(None, description="why it was rejected (result 1)")
    data: list[EkuaibaoPushInvoice] | str | None = Field(
        None, description="the invoices (also accepted as a JSON string holding the list); result 0: at least one"
    )


# The Ekuaibao sandbox's application in the local run: docs/examples/order-ekuaibao.json submitted by
# the sample business system; its request number is derived from that key.
EXAMPLE_PUSH_NUMBER = request_number_for(application_key("sample-erp", "demo-ekuaibao-0001"))
PUSH_EXAMPLES = {
    "issued": example(
        "result 0: issued, with the invoice and its lines (an application of the local run's EK1)",
        {
            "channelCode": "jcsk",
            "serialNo": EXAMPLE_PUSH_NUMBER,
            "result": 0,
            "data": [
                {
                    "invoiceType": 0,
                    "invoiceTypeCode": "028",
                    "invoiceCode": "044002300111",
                    "invoiceNumber": "90000001",
                    "invoiceDate": 1787284800000,
                    "invoiceAmount": "5327.43",
                    "invoiceTaxAmount": "692.57",
                    "invoiceTotalPriceTax": "6020.00",
                    "checkCode": "58428259812242286445",
                    "buyerName": "吉林省神州红旗汽车销售服务有限公司",
                    "buyerTaxNo": "91220101MA0Y5K3N4H",
                    "invoicingStatus": "00",
                    "details": [
                        {"goodsName": "CA7201HA6TA智联旗畅版(2024款)", "goodsCost": "5327.43", "goodsVat": "692.57",
                         "taxrate": "0.13", "goodsNum": "1", "goodsPrice": "5327.43362832", "goodsUnit": "辆",
                         "taxTaxonomyCode": "1090305010300000000"},
                    ],
                }
            ],
        },
    ),
    "inProgress": example(
        "result 2: still in progress", {"channelCode": "jcsk", "serialNo": EXAMPLE_PUSH_NUMBER, "result": 2}
    ),
    "unknownRequestNumber": example(
        "result 1 (rejected) for a request number the hub never sent: kept as unmatched",
        {"channelCode": "jcsk", "serialNo": "FH000000000000000000", "result": 1, "rejectMsg": "购方税号有误"},
    ),
    "noInvoice": example("result 0 without an invoice", {"channelCode": "jcsk", "serialNo": "FH000000000000000000",
                                                          "result": 0, "data": []}),
}  # fmt: skip
PUSH_ANSWERS: dict[int, dict[str, Any]] = {
    200: {
        "issued": example("taken", {"value": True}),
        "inProgress": example("taken", {"value": True}),
    },
    400: {
        "noInvoice": example(
            "unreadable: the JSON path and why",
            {"value": False, "message": "data: result 0 (issued) carries no invoice"},
        )
    },
    401: {
        "noAccessToken": example(
            "no accessToken, or a wrong one (or a bad signature)", {"value": False, "message": "unauthorized"}
        )
    },
    404: {
        "unknownRequestNumber": example(
            "kept as an unmatched result",
            {"value": False, "message": "no application for request number FH000000000000000000"},
        )
    },
    413: {"tooLarge": example("over 2 MiB", {"value": False, "message": "body over 2097152 bytes"})},
}
