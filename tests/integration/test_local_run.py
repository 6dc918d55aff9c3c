"""The local run end to end: ``python -m local.run``, seed 004's order over HTTP, clean stop."""

from __future__ import annotations

import http.client
import json
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
import pytest
from stdnum.cn import uscc

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.integration.conftest import LocalRun

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# Seed 004's example carries a placeholder ("dddddmarkForTax"); a valid 统一社会信用代码 instead.
VALID_PURCHASER_TAX_NUMBER = "91220104MA13XY7P3B"

pytestmark = pytest.mark.integration


def call(
    run: LocalRun, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, dict[str, Any]]:
    url = urlsplit(run.api_url)
    assert url.hostname == "127.0.0.1"
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    payload = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, (json.loads(raw) if raw else {})
    finally:
        conn.close()


def seed004_order() -> dict[str, Any]:
    order = json.loads((FIXTURES / "seed004_example.json").read_text(encoding="utf-8"))
    assert uscc.is_valid(VALID_PURCHASER_TAX_NUMBER)
    order["invoiceOrder"]["purchaserTaxpayerNo"] = VALID_PURCHASER_TAX_NUMBER
    return order


def test_seed004_order_is_received_and_read_back_then_ctrl_c_stops(local_run: LocalRun) -> None:
    info = local_run.info
    assert urlsplit(info["aws_endpoint_url"]).hostname == "127.0.0.1"
    assert "Ctrl-C to stop" in local_run.log()
    assert info["api_url"] in local_run.log()
    order = seed004_order()
    code = order["invoiceOrder"]["openApplyCode"]

    status, body = call(local_run, "POST", "/v1/invoice-orders", order, token=local_run.token)
    assert status == 200, (body, local_run.log())
    assert body["success"] is True
    assert body["data"]["openApplyCode"] == code
    assert body["data"]["status"] == "RECEIVED"

    status, body = call(local_run, "GET", f"/v1/invoice-orders/{code}", token=local_run.token)
    assert status == 200, (body, local_run.log())
    assert body["success"] is True
    assert body["data"]["openApplyCode"] == code
    assert body["data"]["status"]  # RECEIVED, or further on once the dispatch pump has taken it

    # The function wrote to the moto the run provisioned (its environment came from the template).
    ddb = boto3.client(
        "dynamodb",
        endpoint_url=info["aws_endpoint_url"],
        region_name=info["region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    assert ddb.scan(TableName=info["tables"]["ApplicationsTable"], Select="COUNT")["Count"] >= 1

    status, _ = call(local_run, "GET", f"/v1/invoice-orders/{code}", token="not-the-token")
    assert status in (401, 403)
    status, body = call(local_run, "GET", "/no/such/route")
    assert (status, body) == (404, {"message": "Not Found"})

    assert local_run.stop(signal.SIGINT) == 0, local_run.log()
    assert not (local_run.state_dir / "local.json").exists()
    assert "stopped" in local_run.log()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_api_port_is_respected_and_sigterm_stops_cleanly(local_run_factory: Callable[..., LocalRun]) -> None:
    port = free_port()
    run = local_run_factory(API_PORT=str(port))
    assert run.api_url == f"http://127.0.0.1:{port}"
    config = json.loads((run.state_dir / "hub-config.json").read_text(encoding="utf-8"))
    digests = config["business_systems"]["sample-erp"]["token_sha256"]
    assert len(digests) == 1 and digests[0] != "0" * 64  # the fresh token's, not the placeholder
    assert run.stop(signal.SIGTERM) == 0, run.log()


def test_start_in_process_serves_and_restores_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``local.run.start`` (for tests): the same hub in this process, undone by ``stop()``."""
    import os

    from local.run import start

    monkeypatch.setenv("AWS_PROFILE", "a-developer-profile")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    environ_before = dict(os.environ)
    try:
        with start(api_port=0, state_dir=tmp_path / "state") as hub:
            assert os.environ["AWS_ENDPOINT_URL"] == hub.aws_endpoint_url
            assert "AWS_PROFILE" not in os.environ  # a real profile would win over the fake keys
            assert hub.local_json.exists()
            order = seed004_order()
            url = urlsplit(hub.api_url)
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
            try:
                conn.request(
                    "POST",
                    "/v1/invoice-orders",
                    body=json.dumps(order, ensure_ascii=False).encode(),
                    headers={"Authorization": f"Bearer {hub.token}", "Content-Type": "application/json"},
                )
                response = conn.getresponse()
                body = json.loads(response.read())
            finally:
                conn.close()
            assert response.status == 200, body
            assert body["data"]["status"] == "RECEIVED"
        assert not hub.local_json.exists()
        assert dict(os.environ) == environ_before
    finally:
        from fapiao_hub import runtime

        runtime.reset()  # its caches point at the stopped moto


def test_an_order_routed_to_the_xunlian_sandbox_is_issued(local_run: LocalRun) -> None:
    """The README's example: an order posted to the local run is ISSUED by the sandbox, once."""
    import time

    import requests

    sandbox = local_run.info["channels"]["xunlian"]
    order = json.loads((FIXTURES.parent.parent / "docs" / "examples" / "order-xunlian.json").read_text("utf-8"))
    assert order["invoiceOrder"]["bukrs"] == sandbox["company_code"]
    code = order["invoiceOrder"]["openApplyCode"]
    status, body = call(local_run, "POST", "/v1/invoice-orders", order, token=local_run.token)
    assert status == 200, body
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = call(local_run, "GET", f"/v1/invoice-orders/{code}", token=local_run.token)
        if body["data"]["status"] not in ("RECEIVED", "DISPATCHING"):
            break
        time.sleep(0.2)
    data = body["data"]
    assert data["status"] == "ISSUED", (data, local_run.log())
    transitions = [h["status"] for h in data["history"] if h.get("kind") != "note"]
    assert transitions == ["RECEIVED", "DISPATCHING", "ISSUED"]
    # The notifier's delivery to the sample business system is noted in the history (no status change).
    issued = requests.get(f"{sandbox['base_url']}/_sandbox/issued", timeout=5).json()
    assert issued["total"] == 1 and list(issued["counts"].values()) == [1]
    [number] = issued["counts"]
    [sandbox_invoice] = requests.get(f"{sandbox['base_url']}/_sandbox/issued/{number}", timeout=5).json()["invoices"]
    [invoice] = data["invoices"]
    assert invoice["invoiceNumber"] == sandbox_invoice["invoiceNumber"]
    assert invoice["invoiceCode"] == sandbox_invoice["invoiceCode"]
    assert invoice["invoiceType"] == "VAT_SPECIAL_ELECTRONIC" and invoice["status"] == "ISSUED"
    assert local_run.stop(signal.SIGINT) == 0, local_run.log()


def test_orders_routed_to_each_async_channel_are_issued_with_a_downloadable_pdf(local_run: LocalRun) -> None:
    """Partner (polled), Kingdee (pushed then polled), Ekuaibao (pushes its result): each order ends
    ISSUED, and the PDF behind the URL that GET returns is a PDF."""
    import time

    import requests

    channels = local_run.info["channels"]
    assert {c["type"] for c in channels.values()} >= {"partner", "kingdee", "ekuaibao"}
    assert channels["ekuaibao"]["callback_url"].startswith(local_run.api_url)
    codes = {}
    for name in ("partner", "kingdee", "ekuaibao"):
        order = seed004_order()
        code = f"async-{name}-1"
        order["invoiceOrder"].update(openApplyCode=code, bukrs=channels[name]["company_code"])
        status, body = call(local_run, "POST", "/v1/invoice-orders", order, token=local_run.token)
        assert status == 200, body
        codes[name] = code
    pending = dict(codes)
    deadline = time.monotonic() + 90
    seen: dict[str, dict] = {}
    while pending and time.monotonic() < deadline:
        for name, code in list(pending.items()):
            _, body = call(local_run, "GET", f"/v1/invoice-orders/{code}", token=local_run.token)
            data = body["data"]
            files = [f for i in data.get("invoices", []) for f in i.get("files", []) if f.get("url")]
            if data["status"] == "ISSUED" and any(f["format"] == "pdf" for f in files):
                seen[name] = data
                del pending[name]
        time.sleep(0.5)
    assert not pending, ({n: call(local_run, "GET", f"/v1/invoice-orders/{c}", token=local_run.token)[1]
                          for n, c in pending.items()}, local_run.log()[-4000:])  # fmt: skip
    for name, data in seen.items():
        [pdf] = [f for i in data["invoices"] for f in i["files"] if f.get("format") == "pdf"]
        downloaded = requests.get(pdf["url"], timeout=10)
        assert downloaded.status_code == 200 and downloaded.content.startswith(b"%PDF"), name
        assert len(downloaded.content) == pdf["size"]
    assert local_run.stop(signal.SIGINT) == 0, local_run.log()
