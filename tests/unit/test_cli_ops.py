"""`fapiao-hub ops summary|list|show|act` against a fake ops API over real HTTP (a unit test's fake:
the contract's routes and envelopes, canned). The operator token never appears in any output."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from click.testing import CliRunner, Result

from fapiao_hub_client import cli

OPERATOR = "unit-test-operator-token-7d41c0"
BUSINESS = "unit-test-business-token-99aa01"
COLUMNS = ["businessSystem", "openApplyCode", "status", "companyCode", "sellerTaxNumber", "buyerName", "channel",
           "requestNumber", "invoiceType", "direction", "amount", "tax", "receivedAt", "updatedAt", "openFindings",
           "reason"]  # fmt: skip
ENV_CLEARED = {"FAPIAO_HUB_API_URL": None, "FAPIAO_HUB_TOKEN": None, "FAPIAO_HUB_STATE_DIR": None,
               cli.OPERATOR_TOKEN_VARIABLE: None}  # fmt: skip


def envelope(status: int, message: str, data: Any = None) -> tuple[int, dict[str, Any]]:
    return status, {"success": 200 <= status < 300, "code": status, "message": message, "data": data}


def item(n: int) -> dict[str, Any]:
    return {"businessSystem": "sample-erp", "openApplyCode": f"code-{n:04d}", "status": "ISSUED", "companyCode": "VB5",
            "sellerTaxNumber": "91220101MA17Q3K29H", "buyerName": f"买方, \"{n}\"", "channel": "xunlian",
            "requestNumber": f"R{n}", "invoiceType": "028", "direction": "blue", "amount": "100.00", "tax": "13.00",
            "receivedAt": f"2026-11-21T00:{n // 60:02d}:{n % 60:02d}.000Z", "updatedAt": "2026-11-21T01:00:00.000Z",
            "openFindings": 0, "reason": None}  # fmt: skip


def csv_of(items: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for entry in items:
        writer.writerow(["" if entry[c] is None else entry[c] for c in COLUMNS])
    return out.getvalue()


@dataclass
class FakeOps:
    url: str = ""
    items: list[dict[str, Any]] = field(default_factory=lambda: [item(n) for n in range(250)])
    requests: list[dict[str, Any]] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    act_answer: tuple[int, dict[str, Any]] | None = None
    reconcile: bool = True  # the local run's POST /ops/local-reconcile exists

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query))
        self.requests.append({"method": method, "path": parts.path, "query": query,
                              "authorization": headers.get("authorization"), "accept": headers.get("accept"),
                              "body": json.loads(body) if body else None})  # fmt: skip
        if headers.get("authorization") != f"Bearer {OPERATOR}":
            return *envelope(401, "not an operator"), {}
        if parts.path == "/v1/ops/summary":
            return *envelope(200, "ok", {"statuses": {"MANUAL_REVIEW": 2, "ISSUED": 7}, "needsPerson":
                             {"MANUAL_REVIEW": 2, "STUCK": 0, "MISMATCH": 0}, "openFindings": 1,
                             "deadLetterQueues": {"DispatchDLQ": 0, "NotifyDLQ": 3}}), {}  # fmt: skip
        if parts.path == "/v1/ops/applications":
            start = int(query.get("cursor", "0"))
            limit = int(query.get("limit", "100"))
            page = self.items[start : start + limit]
            following = str(start + limit) if start + limit < len(self.items) else None
            if "text/csv" in (headers.get("accept") or ""):
                return 200, csv_of(page), {"X-Next-Cursor": following or ""}
            return *envelope(200, "ok", {"items": page, "nextCursor": following}), {}
        prefix = "/v1/ops/applications/"
        if parts.path.startswith(prefix) and method == "GET":
            return *envelope(200, "ok", self.detail), {}
        if parts.path.startswith(prefix) and parts.path.endswith("/actions") and method == "POST":
            return *(self.act_answer or envelope(200, "ok", {**self.detail, "status": "ISSUED"})), {}
        if parts.path == "/ops/local-reconcile" and method == "POST" and self.reconcile:
            summary = {"day": "2026-12-08", "checked": 12, "new_findings": 1, "not_verifiable": 3,
                       "report": ["reports/reconciliation/2026-12-08.json"]}  # fmt: skip
            return *envelope(200, "reconciliation run", summary), {}
        return 404, {"message": "Not Found"}, {}


@pytest.fixture
def ops() -> Iterator[FakeOps]:
    fake = FakeOps()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, answer, extra = fake.answer(self.command, self.path, headers, body)
            text = answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)
            raw = text.encode("utf-8")
            self.send_response(status)
            kind = "text/csv; charset=utf-8" if isinstance(answer, str) else "application/json"
            self.send_header("Content-Type", kind)
            for name, value in extra.items():
                if value:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
    try:
        runner = CliRunner(mix_stderr=False)
    except TypeError:
        runner = CliRunner()
    result = runner.invoke(cli.main, list(args), env={**ENV_CLEARED, **(env or {})}, catch_exceptions=False)
    everything = result.stdout + result.stderr
    assert OPERATOR not in everything and BUSINESS not in everything
    assert "Traceback" not in everything
    return result


def test_every_ops_command_takes_the_shared_options() -> None:
    shared = {"api_url", "token", "state_dir"}
    assert shared <= {p.name for p in cli.ops.params}
    for name, command in cli.ops.commands.items():
        assert shared <= {p.name for p in command.params}, f"fapiao-hub ops {name} lacks a shared option"
    assert sorted(cli.ops.commands) == ["act", "list", "reconcile", "show", "summary"]


def test_summary_prints_the_counts(ops: FakeOps) -> None:
    result = invoke("ops", "summary", "--api-url", ops.url, "--token", OPERATOR)
    assert result.exit_code == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert ["MANUAL_REVIEW", "2", "yes"] in lines
    assert ["ISSUED", "7", "-"] in lines and ["STUCK", "0", "yes"] in lines
    assert ["open", "findings", "1"] in lines and ["NotifyDLQ", "3"] in lines
    assert [r["authorization"] for r in ops.requests] == [f"Bearer {OPERATOR}"]


def test_the_operator_token_comes_from_the_command_line_the_environment_or_local_json(
    ops: FakeOps, tmp_path: Path
) -> None:
    # A business system's token in FAPIAO_HUB_TOKEN is never sent to the ops routes.
    env = {"FAPIAO_HUB_TOKEN": BUSINESS, cli.OPERATOR_TOKEN_VARIABLE: OPERATOR}
    assert invoke("ops", "summary", "--api-url", ops.url, env=env).exit_code == 0
    state = tmp_path / "state"
    state.mkdir()
    (state / "local.json").write_text(json.dumps({"api_url": ops.url, "token": BUSINESS, "operator_token": OPERATOR}))
    assert invoke("ops", "summary", "--state-dir", str(state), env={"FAPIAO_HUB_TOKEN": BUSINESS}).exit_code == 0
    assert {r["authorization"] for r in ops.requests} == {f"Bearer {OPERATOR}"}
    # Without any operator token: one line saying where to put one, nothing sent.
    (state / "local.json").write_text(json.dumps({"api_url": ops.url, "token": BUSINESS}))
    result = invoke("ops", "summary", "--state-dir", str(state))
    assert result.exit_code == cli.EXIT_USAGE
    assert result.stderr.startswith("error: no operator token: give --token, set FAPIAO_HUB_OPERATOR_TOKEN")
    assert len(ops.requests) == 2


def test_a_refused_token_is_exit_2_without_the_token(ops: FakeOps) -> None:
    result = invoke("ops", "summary", "--api-url", ops.url, "--token", BUSINESS)
    assert result.exit_code == cli.EXIT_REFUSED
    assert result.stderr.strip() == "error: 401 not an operator"


def test_list_sends_the_filters_and_prints_the_next_cursor(ops: FakeOps) -> None:
    result = invoke(
        "ops", "list", "--api-url", ops.url, "--token", OPERATOR, "--status", "MANUAL_REVIEW", "--business-system",
        "sample-erp", "--seller", "91220101MA17Q3K29H", "--channel", "xunlian", "--received-from", "2026-11-01",
        "--received-to", "2026-11-30", "--limit", "20", "--cursor", "40",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    [request] = ops.requests
    assert request["query"] == {
        "status": "MANUAL_REVIEW", "businessSystem": "sample-erp", "seller": "91220101MA17Q3K29H",
        "channel": "xunlian", "receivedFrom": "2026-11-01", "receivedTo": "2026-11-30", "limit": "20", "cursor": "40",
    }  # fmt: skip
    assert "code-0040" in result.stdout and "code-0059" in result.stdout and "code-0060" not in result.stdout
    assert result.stdout.rstrip().endswith("--cursor 60")


def test_csv_export_pages_through_the_whole_query(ops: FakeOps, tmp_path: Path) -> None:
    target = tmp_path / "export.csv"
    result = invoke("ops", "list", "--api-url", ops.url, "--token", OPERATOR, "--limit", "100", "--status", "ISSUED",
                    "--csv", str(target))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert [r["query"].get("cursor") for r in ops.requests] == [None, "100", "200"]
    assert all(r["accept"] == "text/csv" and r["query"]["status"] == "ISSUED" for r in ops.requests)
    exported = list(csv.DictReader(target.open(encoding="utf-8", newline="")))
    assert [row["openApplyCode"] for row in exported] == [f"code-{n:04d}" for n in range(250)]  # each once, in order
    assert exported[7]["buyerName"] == '买方, "7"'
    assert "exporting" in result.stderr and "250 applications written to" in result.stderr
    assert not (tmp_path / "export.csv.partial").exists()


def test_show_prints_the_operator_view(ops: FakeOps) -> None:
    ops.detail = {
        "openApplyCode": "code-0001", "status": "MANUAL_REVIEW", "reason": "outcome unknown", "channel": "xunlian",
        "requestNumber": "R1", "attempts": 1, "leaseUntil": None, "nextPollAt": None,
        "history": [{"at": "2026-11-21T00:00:00.000Z", "status": "RECEIVED", "note": "received"}],
        "invoices": [],
        "findings": [{"id": "f-1", "kind": "RESULT_MISMATCH", "open": True, "summary": "amount differs"}],
        "rawKeys": ["raw/answers/xunlian/R1/1"], "actions": ["resolve-issued", "resolve-not-issued"],
    }  # fmt: skip
    result = invoke("ops", "show", "sample-erp", "code/0001", "--api-url", ops.url, "--token", OPERATOR)
    assert result.exit_code == 0, result.stderr
    assert ops.requests[0]["path"] == "/v1/ops/applications/sample-erp/code%2F0001"
    out = result.stdout
    assert "resolve-issued, resolve-not-issued" in out and "MANUAL_REVIEW" in out
    assert "f-1" in out and "amount differs" in out and "raw/answers/xunlian/R1/1" in out


def test_show_prints_lease_and_next_poll_in_china_time_never_epoch_seconds(ops: FakeOps) -> None:
    lease, poll = 1796692502, 1796692562  # 2026-12-08 01:15:02 and 01:16:02 UTC
    ops.detail = {
        "openApplyCode": "code-0002", "status": "SUBMITTED", "channel": "kingdee", "requestNumber": "R2",
        "attempts": 1, "leaseUntil": lease, "nextPollAt": poll, "history": [], "invoices": [], "findings": [],
        "rawKeys": [], "actions": ["query"],
    }  # fmt: skip
    result = invoke("ops", "show", "sample-erp", "code-0002", "--api-url", ops.url, "--token", OPERATOR)
    assert result.exit_code == 0, result.stderr
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines() if len(line.split()) > 1)
    assert lines["leaseUntil"] == "2026-12-08 09:15:02 +08:00"
    assert lines["nextPollAt"] == "2026-12-08 09:16:02 +08:00"
    assert str(lease) not in result.stdout and str(poll) not in result.stdout


def test_list_help_says_what_each_filter_takes() -> None:
    result = invoke("ops", "list", "--help")
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "--received-to YYYY-MM-DD Received on or before this day: a date in China time (UTC+8), included." in text
    assert "--received-from YYYY-MM-DD Received on or after this day" in text
    assert "--seller TAX_NUMBER" in text and "--status STATUS" in text
    assert "ISO time" not in text and "VALUE" not in text


def test_reconcile_runs_the_local_runs_reconciliation_with_the_operator_token(ops: FakeOps) -> None:
    result = invoke("ops", "reconcile", "--api-url", ops.url, "--token", OPERATOR)
    assert result.exit_code == 0, result.stderr
    [request] = ops.requests
    assert (request["method"], request["path"], request["authorization"]) == (
        "POST", "/ops/local-reconcile", f"Bearer {OPERATOR}"
    )  # fmt: skip
    lines = [line.split() for line in result.stdout.splitlines()]
    assert ["checked", "12"] in lines and ["new", "findings", "1"] in lines
    assert ["report", "reports/reconciliation/2026-12-08.json"] in lines
    ops.reconcile = False  # a hub without the local run's route (AWS): said so, exit 2
    missing = invoke("ops", "reconcile", "--api-url", ops.url, "--token", OPERATOR)
    assert missing.exit_code == 2 and "invoke ReconciliationFunction" in missing.stderr


def test_act_sends_the_action_reason_and_parameters(ops: FakeOps) -> None:
    result = invoke(
        "ops", "act", "sample-erp", "code-0001", "resolve-issued", "--reason", "seen at the bureau",
        "--invoice-number", "12345678", "--invoice-date", "2026-11-21", "--api-url", ops.url, "--token", OPERATOR,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    [request] = ops.requests
    assert request["method"] == "POST" and request["path"] == "/v1/ops/applications/sample-erp/code-0001/actions"
    assert request["body"] == {"action": "resolve-issued", "reason": "seen at the bureau",
                               "invoice": {"number": "12345678", "date": "2026-11-21"}}  # fmt: skip
    assert result.stdout.startswith("resolve-issued: done; sample-erp/code-0001 is now ISSUED")


def test_act_shows_the_apis_409_and_400(ops: FakeOps) -> None:
    ops.act_answer = envelope(409, "the action does not apply now", {"status": "ISSUED"})
    args = ("--api-url", ops.url, "--token", OPERATOR)
    result = invoke("ops", "act", "sample-erp", "c", "cancel", "--reason", "duplicate order", *args)
    assert result.exit_code == cli.EXIT_REFUSED
    assert result.stderr.strip() == "error: 409 the action does not apply now (current status ISSUED)"
    ops.act_answer = envelope(400, "invalid action", {"errors": [{"field": "invoice.number", "message": "required"}]})
    result = invoke("ops", "act", "sample-erp", "c", "resolve-issued", "--reason", "x", *args)
    assert result.exit_code == cli.EXIT_REFUSED
    assert result.stderr.strip() == "error: 400 invoice.number: required"
    assert ops.requests[-1]["body"] == {"action": "resolve-issued", "reason": "x", "invoice": {}}
    # A reason is required before anything is sent.
    result = invoke("ops", "act", "sample-erp", "c", "cancel", *args)
    assert result.exit_code == cli.EXIT_USAGE and "--reason" in result.stderr
    assert len(ops.requests) == 2


def test_act_sends_one_finding_id_as_findingId_and_several_as_findingIds(ops: FakeOps) -> None:
    args = ("--api-url", ops.url, "--token", OPERATOR)
    result = invoke("ops", "act", "sample-erp", "c", "acknowledge-finding", "--reason", "split", "--finding-id",
                    "f-1", *args)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert ops.requests[-1]["body"] == {"action": "acknowledge-finding", "reason": "split", "findingId": "f-1"}
    result = invoke("ops", "act", "sample-erp", "c", "acknowledge-finding", "--reason", "split", "--finding-id",
                    "f-1", "--finding-id", "f-2", "--finding-id", "f-3", *args)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert ops.requests[-1]["body"] == {
        "action": "acknowledge-finding", "reason": "split", "findingIds": ["f-1", "f-2", "f-3"],
    }  # fmt: skip
