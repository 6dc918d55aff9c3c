"""The outbound webhook in the OpenAPI document (its ``webhooks`` section): the outcome notification the
hub POSTs to a business system, its headers and its answers. No route declares it; usecases.notify
builds what is sent."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fapiao_hub.api.examples import EXAMPLE_CODE, example
from fapiao_hub.api.schemas import (
    ATTESTED_FIELD,
    FROM_APPLICATION_FIELD,
    FROM_FILE_FIELD,
    SCHEMA_REF,
    VERIFIED_FIELD,
    Finding,
)


class NotifiedFile(BaseModel):
    format: str = Field(description="pdf, ofd or xml")
    size: int = Field(description="bytes")
    sha256: str = Field(description="hex SHA-256; download with GET /v1/invoice-orders/{openApplyCode}")


class NotifiedInvoice(BaseModel):
    invoiceNumber: str | None
    invoiceCode: str | None = Field(description="legacy invoices only")
    invoiceDate: str | None = Field(description="yyyy-mm-dd")
    invoiceType: str | None = Field(description="the canonical type, e.g. VAT_SPECIAL_ELECTRONIC")
    amount: float | str | None = Field(description="amount excluding tax")
    tax: float | str | None
    status: str | None = Field(description="ISSUED or VOIDED")
    verified: list[str] | None = VERIFIED_FIELD
    verifiedFromFile: list[str] | None = FROM_FILE_FIELD
    attestedByOperator: list[str] | None = ATTESTED_FIELD
    fromApplication: list[str] | None = FROM_APPLICATION_FIELD
    files: list[NotifiedFile]


class NotifiedApplication(BaseModel):
    model_config = ConfigDict(extra="allow")

    openApplyCode: str | None = Field(description="your application number")
    status: str | None = Field(
        description="ISSUED, REJECTED, VOIDED, CANCELLED, STUCK, MANUAL_REVIEW or MISMATCH (a person looks)"
    )
    reason: str | None = Field(description="why (rejected, stuck, needs review)")
    channel: str | None = Field(description="the channel it went to")
    requestNumber: str = Field(description="the request number sent to the channel (its portal keys on it)")


class OutcomeNotification(BaseModel):
    """The hub's outcome event, as POSTed to a business system's webhook (format "hub")."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="the idempotency key, also in X-Fapiao-Event-Id: the same outcome, the same id")
    type: str = Field(
        description="the outcome",
        json_schema_extra={
            "enum": [
                "InvoiceIssued",
                "ApplicationRejected",
                "InvoiceVoided",
                "ApplicationStuck",
                "ApplicationNeedsReview",
                "ApplicationCancelled",
                "FindingRecorded",
            ]
        },
    )
    schema_version: str | None = Field(description="1")
    occurred_at: str | None = Field(description="ISO 8601, UTC")
    application: NotifiedApplication = Field(description="the application the outcome is about")
    invoices: list[NotifiedInvoice] = Field(description="the invoices the outcome concerns (issued, voided)")
    findings: list[Finding] | None = Field(
        None,
        description="ApplicationNeedsReview and FindingRecorded: what a person should look at (each difference "
        "between the application and what the channel reported)",
    )


def _header(name: str, description: str, example_value: str, required: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "description": description,
        "schema": {"type": "string"},
        "example": example_value,
    }


NOTIFICATION_EXAMPLE = {
    "id": "3f1c2a9d8b7e6f5a4c3b2a1908f7e6d5",
    "type": "InvoiceIssued",
    "schema_version": "1",
    "occurred_at": "2026-11-21T12:00:01Z",
    "application": {
        "openApplyCode": EXAMPLE_CODE,
        "status": "ISSUED",
        "reason": None,
        "channel": "xunlian",
        "requestNumber": "FH2V6Q3X7ABCDEFGHIJK",
    },
    "invoices": [
        {
            "invoiceNumber": "00000001",
            "invoiceCode": "044002300111",
            "invoiceDate": "2026-11-21",
            "invoiceType": "VAT_SPECIAL_ELECTRONIC",
            "amount": 5318.58,
            "tax": 691.42,
            "status": "ISSUED",
            "verified": ["seller", "buyer", "invoice_type", "direction", "issued_on", "amount", "tax"],
            "verifiedFromFile": [],
            "attestedByOperator": [],
            "fromApplication": [],
            "files": [{"format": "pdf", "size": 1234, "sha256": "9f86d081884c7d65..."}],
        }
    ],
}


def webhooks() -> dict[str, Any]:
    """OpenAPI 3.1 ``webhooks``: what the hub POSTs to a business system's webhook."""
    return {
        "outcome": {
            "post": {
                "operationId": "outcomeNotification",
                "summary": "The hub tells your business system an application's outcome",
                "description": "Sent to the webhook URL in your business system's entry of the hub configuration, "
                "at least once per outcome (InvoiceIssued, ApplicationRejected, InvoiceVoided, ApplicationStuck, "
                "ApplicationNeedsReview). Verify the signature: hex HMAC-SHA256 keyed with the webhook's secret "
                'over the bytes "{X-Fapiao-Timestamp}." + body, compared with X-Fapiao-Signature after its '
                "'sha256=' prefix; refuse timestamps more than 5 minutes off. Then de-duplicate on "
                "X-Fapiao-Event-Id and answer 2xx quickly. Files are described, not sent: download them with "
                "GET /v1/invoice-orders/{openApplyCode}. A webhook configured with the format 'ekuaibao' "
                "receives the EkuaibaoPush shape instead (serialNo = the openApplyCode, result 0 issued or "
                "voided, 1 rejected; stuck and needs-review outcomes are not sent), with accessToken in the query.",
                "tags": ["notifications"],
                "parameters": [
                    _header(
                        "X-Fapiao-Event-Id",
                        "the idempotency key: the same outcome always carries the same id (also the body's id)",
                        NOTIFICATION_EXAMPLE["id"],
                    ),
                    _header("X-Fapiao-Timestamp", "when it was signed, seconds since the epoch", "1787313601"),
                    _header(
                        "X-Fapiao-Signature",
                        'sha256= + hex HMAC-SHA256(webhook secret, "{timestamp}." + body); sent when the webhook '
                        "has a secret",
                        "sha256=5d41402abc4b2a76b9719d911017c592...",
                        required=False,
                    ),
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": SCHEMA_REF + OutcomeNotification.__name__},
                            "examples": {"issued": example("an invoice issued", NOTIFICATION_EXAMPLE)},
                        }
                    },
                },
                "responses": {
                    "200": {"description": "any 2xx: delivered"},
                    "400": {
                        "description": "any other 4xx (and 3xx): refused for good; the notification goes to the "
                        "hub's dead-letter queue at once (an operator redrives it)"
                    },
                    "503": {
                        "description": "408, 429, 5xx or a timeout: sent again after 30 s, doubling to 15 min, 8 "
                        "tries in all (a Retry-After is honoured up to 15 min)"
                    },
                },
            }
        }
    }


WEBHOOK_MODELS: dict[str, type[BaseModel]] = {OutcomeNotification.__name__: OutcomeNotification}
