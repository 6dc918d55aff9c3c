"""The HTTP API's OpenAPI document, built from the routes: nothing in the layer imports this module.

The intake, batch, callback and ops routes declare their summaries, security, request body and answers
on their Powertools decorators (with the models of ``schemas``, ``ops_schemas`` and ``callback_schemas``);
Powertools generates each resolver's OpenAPI schema and :func:`document` merges them (``OpenAPIMerge``),
adding the request bodies' schemas and the outbound webhook (``webhook_schemas``). ``make openapi``
writes the result to docs/openapi.json (:func:`main`); tests/unit/test_openapi.py fails when that file
is out of date. The local run serves it at ``/openapi.json`` and as Swagger UI at ``/swagger``
(:func:`swagger_html`).
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from fapiao_hub.api.schemas import BEARER, BODY_MODELS, CALLBACK_TOKEN, SCHEMA_REF
from fapiao_hub.api.webhook_schemas import WEBHOOK_MODELS, webhooks

TITLE = "fapiao-hub"
DOCUMENT_PATH = Path("docs/openapi.json")

STATUS_DESCRIPTION = (
    "An application's status; it only moves forward. Open: RECEIVED, DISPATCHING, SUBMITTED, UNKNOWN (an "
    "attempt's outcome is being established: never sent twice), RETRY_WAIT, VOIDING. Settled: ISSUED, REJECTED, "
    "VOIDED. A person must look: MANUAL_REVIEW, MISMATCH, STUCK (still open 24 h after it was received)."
)


SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "description": "a business system's token on /v1/invoice-orders, an operator's token on /v1/ops (their "
        "SHA-256 digests are in the hub configuration)",
    },
    CALLBACK_TOKEN: {
        "type": "apiKey",
        "in": "query",
        "name": "accessToken",
        "description": "the channel's access token. A channel with an HMAC secret also signs each push: "
        "x-fapiao-timestamp (epoch seconds, within 5 minutes), optional x-fapiao-nonce, and x-fapiao-signature = "
        'hex HMAC-SHA256 with the secret over "{timestamp}.{body}" ("{timestamp}.{nonce}.{body}" with a nonce)',
    },
}


def version() -> str:
    try:
        return metadata.version("fapiao-hub")
    except metadata.PackageNotFoundError:  # the Lambda layer carries no distribution metadata
        return "0.0.0"


def document() -> dict[str, Any]:
    """The HTTP API's OpenAPI 3.1 document (intake, callback and ops routes), as JSON values.

    Imports the route modules. In a process that also runs the handlers, load the handlers first:
    a route module imported earlier creates its Powertools child logger without their parent.
    """
    from aws_lambda_powertools.event_handler.openapi.merge import OpenAPIMerge
    from aws_lambda_powertools.event_handler.openapi.models import OpenAPI
    from pydantic.json_schema import models_json_schema

    from fapiao_hub.api import callbacks as callback_api
    from fapiao_hub.api import intake as intake_api
    from fapiao_hub.api import ops as ops_api

    merge = OpenAPIMerge(
        title=TITLE,
        version=version(),
        description="Serverless hub for Chinese VAT e-invoices (发票 / 数电票). Business systems submit invoice "
        "applications (开票申请单) in the FAW (一汽) tax platform's invoice-order shape and read them back; the hub "
        "checks them against the tax rules (tolerances 0.01 / 0.06 / 1.27, rates in force, discount lines, red "
        "invoices, tax numbers, no control characters), issues each through its channel exactly once, and tells "
        "the business system the outcome by webhook (see webhooks). Channels (Ekuaibao 易快报) push their "
        "results to /v1/callbacks/{channel}. Every answer of the intake is an envelope {success, code, message, "
        "data} with code = the HTTP status. The operations desk (/v1/ops, operator tokens) finds, explains and "
        "resolves applications. Examples: a request example and its answer share a name.",
        tags=["intake", "callbacks", "operations"],
        on_conflict="error",
    )
    for app in (intake_api.app, callback_api.app, ops_api.app):
        merge.add_schema(app.get_openapi_schema(title=TITLE, security_schemes=SECURITY_SCHEMES))
    merged = merge.get_openapi_schema()
    components = merged.setdefault("components", {})
    components["securitySchemes"] = SECURITY_SCHEMES
    _, bodies = models_json_schema(
        [(model, "validation") for _, model in sorted({**BODY_MODELS, **WEBHOOK_MODELS}.items())],
        by_alias=True,
        ref_template=SCHEMA_REF + "{model}",
    )
    components.setdefault("schemas", {}).update(bodies.get("$defs", {}))
    merged["webhooks"] = webhooks()
    # The enum's docstring is written for the code's readers; this is the integrator's.
    components["schemas"]["Status"]["description"] = STATUS_DESCRIPTION
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

    used = refs(doc.get("paths", {})) | refs(doc.get("webhooks", {}))
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
    """``python -m fapiao_hub.api.openapi [PATH]``: write the document (default docs/openapi.json)."""
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else DOCUMENT_PATH
    target.write_text(to_json(document()), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
