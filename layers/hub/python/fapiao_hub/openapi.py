"""The HTTP API's OpenAPI document: the answer models the routes declare, and the document itself.

The intake routes (``intake.api``) and the callback route (``callback_api``) declare their
summaries, security, request body and answers on their Powertools decorators; Powertools generates
each resolver's OpenAPI schema and :func:`document` merges the two (``OpenAPIMerge``). ``make
openapi`` writes the result to docs/openapi.json (:func:`main`); tests/unit/test_openapi.py fails
when that file is out of date. The local run serves it at ``/openapi.json`` and as Swagger UI at
``/swagger`` (:func:`swagger_html`).

Request bodies: Powertools documents a body only from a ``Body()``-annotated handler parameter,
and only its validation middleware fills such a parameter, before any middleware of ours runs. The
intake API must authenticate before it validates, so it validates by hand, and a route declares its
body with :func:`request_body` (an ``openapi_extensions`` entry); :func:`document` adds the body
model's JSON schema (by alias: the caller's field names) to the components.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from fapiao_hub.models import FindingKind, Status

TITLE = "fapiao-hub"
DOCUMENT_PATH = Path("docs/openapi.json")
SCHEMA_REF = "#/components/schemas/"

# Security scheme names, as routes refer to them.
BEARER = "bearerToken"
CALLBACK_TOKEN = "callbackAccessToken"  # noqa: S105 (a scheme name)

# Models named by request_body(): their schemas go into the document's components.
_BODY_MODELS: dict[str, type[BaseModel]] = {}


# ---------------------------------------------------------------------------- answer models
# Field names are the JSON names (camelCase where the callers use it).
class Envelope(BaseModel):
    """Seed 004's answer shape: every answer of the intake API has it."""

    success: bool = Field(description="true for a 2xx answer")
    code: int = Field(description="the HTTP status code, repeated")
    message: str = Field(description="what happened, for people")
    data: None = Field(description="null: nothing more to say")


class FieldProblem(BaseModel):
    field: str = Field(
        description="where, as the caller's JSON path", examples=["invoiceOrder.invoiceOrderSub[0].amtInclTax"]
    )
    message: str


class OrderErrors(BaseModel):
    errors: list[FieldProblem] = Field(description="every problem found, not only the first")


class OrderAccepted(BaseModel):
    openApplyCode: str
    status: Status
    warnings: list[str] = Field(description="accepted, but worth a look: 'field: message'")


class StatusChange(BaseModel):
    at: str = Field(description="ISO 8601, UTC")
    status: Status
    previous: Status | None = None
    note: str | None = None


class StoredFile(BaseModel):
    format: str = Field(examples=["pdf", "ofd", "xml"])
    size: int
    sha256: str
    url: str = Field(description="a download link, good for five minutes")


class MissingFile(BaseModel):
    error: str | None = Field(description="why the file could not be kept")
    source: str | None


class Invoice(BaseModel):
    invoiceNumber: str
    invoiceCode: str | None = None
    invoiceDate: str | None = None
    invoiceType: str | None = None
    amount: float | None = None
    tax: float | None = None
    checkCode: str | None = None
    status: str | None = None
    channel: str | None = None
    redRemainingAmount: float | None = Field(None, description="blue invoice: amount red invoices may still reverse")
    redRemainingTax: float | None = Field(None, description="a blue invoice: the tax red invoices may still reverse")
    files: list[StoredFile | MissingFile] | None = None


class Difference(BaseModel):
    field: str = Field(description="the field that differs, e.g. seller.tax_number, invoice_type, amount")
    expected: str | None = Field(description="what the application (or the hub's record) says")
    reported: str | None = Field(description="what the channel reported")


class Finding(BaseModel):
    id: str = Field(description="stable for the same discovery")
    kind: FindingKind
    at: str = Field(description="ISO 8601, UTC")
    source: str = Field(description="dispatch, poll, callback or reconciliation")
    summary: str
    differences: list[Difference]
    invoiceNumbers: list[str]
    open: bool = Field(description="true until a person acknowledges it")


class OrderDetail(OrderAccepted):
    version: int
    channel: str | None = Field(description="the channel the application is routed to")
    createdAt: str
    updatedAt: str
    reason: str | None = Field(description="why it is in its status (a rejection, an unknown outcome)")
    requestNumber: str = Field(description="the request number sent to the channel on every attempt")
    history: list[StatusChange]
    invoices: list[Invoice]
    findings: list[Finding] = Field(description="what a person must look at (docs/operations.md, Findings)")
    invoiceOrder: dict[str, Any] = Field(description="the application as seed 004's invoiceOrder (the submitted shape)")


class OrderAcceptedAnswer(Envelope):
    data: OrderAccepted  # type: ignore[assignment]


class OrderRefusedAnswer(Envelope):
    data: OrderErrors | None = Field(description="the problems, for an invalid invoice order")  # type: ignore[assignment]


class OrderDetailAnswer(Envelope):
    data: OrderDetail  # type: ignore[assignment]


class CallbackAnswer(BaseModel):
    """What the hub answers a pushing channel, in Ekuaibao's shape: value, and why not."""

    value: bool = Field(description="true: the push was taken")
    message: str | None = Field(None, description="why not")


# ---------------------------------------------------------------------------- route metadata
def answer(description: str, model: type[BaseModel], headers: dict[str, str] | None = None) -> dict[str, Any]:
    """One entry of a route's ``responses``: a JSON answer of ``model``, with documented headers."""
    declared: dict[str, Any] = {"description": description, "content": {"application/json": {"model": model}}}
    if headers:
        declared["headers"] = {
            name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()
        }
    return declared


def request_body(description: str, model: type[BaseModel] | None = None) -> dict[str, Any]:
    """``openapi_extensions`` declaring a required JSON body: ``model``'s schema, else any object."""
    if model is not None:
        _BODY_MODELS[model.__name__] = model
        schema: dict[str, Any] = {"$ref": SCHEMA_REF + model.__name__}
    else:
        schema = {"type": "object", "additionalProperties": True}
    return {
        "requestBody": {
            "description": description,
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }


SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "description": "a business system's token (its SHA-256 is in the hub configuration)",
    },
    CALLBACK_TOKEN: {
        "type": "apiKey",
        "in": "query",
        "name": "accessToken",
        "description": "the channel's access token; a channel with an HMAC secret also signs each push "
        "(x-fapiao-timestamp, x-fapiao-signature, optional x-fapiao-nonce; see callback_auth)",
    },
}


# ---------------------------------------------------------------------------- the document
def version() -> str:
    try:
        return metadata.version("fapiao-hub")
    except metadata.PackageNotFoundError:  # the Lambda layer carries no distribution metadata
        return "0.0.0"


def document() -> dict[str, Any]:
    """The HTTP API's OpenAPI 3.1 document (intake and callback routes), as JSON values.

    Imports the route modules. In a process that also runs the handlers, load the handlers first:
    a route module imported earlier creates its Powertools child logger without their parent.
    """
    from aws_lambda_powertools.event_handler.openapi.merge import OpenAPIMerge
    from aws_lambda_powertools.event_handler.openapi.models import OpenAPI
    from pydantic.json_schema import models_json_schema

    from fapiao_hub import callback_api
    from fapiao_hub.intake import api as intake_api

    merge = OpenAPIMerge(
        title=TITLE,
        version=version(),
        description="Serverless hub for Chinese VAT e-invoices: business systems submit invoice applications "
        "(seed 004 shape) and read them back; channels push their results.",
        tags=["intake", "callbacks"],
        on_conflict="error",
    )
    for app in (intake_api.app, callback_api.app):
        merge.add_schema(app.get_openapi_schema(title=TITLE, security_schemes=SECURITY_SCHEMES))
    merged = merge.get_openapi_schema()
    components = merged.setdefault("components", {})
    components["securitySchemes"] = SECURITY_SCHEMES
    _, bodies = models_json_schema(
        [(model, "validation") for _, model in sorted(_BODY_MODELS.items())],
        by_alias=True,
        ref_template=SCHEMA_REF + "{model}",
    )
    components.setdefault("schemas", {}).update(bodies.get("$defs", {}))
    doc = OpenAPI.model_validate(merged).model_dump(mode="json", by_alias=True, exclude_none=True)
    _drop_unreferenced_schemas(doc)
    return json.loads(json.dumps(doc))  # response codes as strings, as in the JSON file


def _drop_unreferenced_schemas(doc: dict[str, Any]) -> None:
    """Powertools always adds its validation-error schemas; this API never answers them."""
    schemas = doc.get("components", {}).get("schemas", {})

    def refs(node: Any) -> set[str]:
        found: set[str] = set()
        stack = [node]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                ref = item.get("$ref")
                if isinstance(ref, str) and ref.startswith(SCHEMA_REF):
                    found.add(ref.removeprefix(SCHEMA_REF))
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
        return found

    used = refs(doc.get("paths", {}))
    pending = list(used)
    while pending:
        for name in refs(schemas.get(pending.pop(), {})) - used:
            used.add(name)
            pending.append(name)
    for name in set(schemas) - used:
        del schemas[name]


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def swagger_html(doc: dict[str, Any] | None = None) -> str:
    """A Swagger UI page for the document, with Swagger UI's JS and CSS inline (no CDN).

    Powertools ships Swagger UI's dist files and inlines them the same way in its own
    ``enable_swagger`` route when no ``swagger_base_url`` is given.
    """
    from aws_lambda_powertools.event_handler.openapi import swagger_ui

    dist = Path(swagger_ui.__file__).parent
    spec = json.dumps(document() if doc is None else doc, ensure_ascii=False).replace("</", "<\\/")
    return swagger_ui.generate_swagger_html(
        spec,
        (dist / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        (dist / "swagger-ui.min.css").read_text(encoding="utf-8"),
        "",
        None,
    ).replace("<title>Swagger UI</title>", f"<title>{TITLE} API</title>")


def main(argv: list[str] | None = None) -> int:
    """``python -m fapiao_hub.openapi [PATH]``: write the document (default docs/openapi.json)."""
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else DOCUMENT_PATH
    target.write_text(to_json(document()), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    # Run as the imported module: the routes register their body models there, not in __main__.
    from fapiao_hub.openapi import main as _main

    sys.exit(_main())
