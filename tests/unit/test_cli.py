"""The ``fapiao-hub`` command (fapiao_hub_client.cli) with click's CliRunner against a tiny fake API: a
real http.server on 127.0.0.1, port 0, answering canned seed 004 envelopes."""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fapiao_hub.api import seed004
from fapiao_hub.domain import rules
from fapiao_hub.domain.config import HubConfig, token_sha256
from fapiao_hub_client import cli, demo

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "unit-test-bearer-token-5f0c9a1e"  # must never appear in any output
ENV_CLEARED = {"FAPIAO_HUB_API_URL": None, "FAPIAO_HUB_TOKEN": None, "FAPIAO_HUB_STATE_DIR": None}


def envelope(status: int, message: str, data: Any = None) -> tuple[int, dict[str, Any]]:
    return status, {"success": 200 <= status < 300, "code": status, "message": message, "data": data}


def application(code: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"openApplyCode": code, "status": status, "reason": None, "history": [], "invoices": [], **extra}


@dataclass
class FakeApi:
    """Canned answers: POSTs by openApplyCode, GETs as a sequence per code (the last repeats)."""

    url: str = ""
    posts: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    gets: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    unauthorized_message: str = "missing or invalid bearer token"
    batches: bool = True  # False: a hub without the batch route (404)

    def post(self, order: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        code = order["invoiceOrder"]["openApplyCode"]
        default = envelope(200, "order received", {"openApplyCode": code, "status": "RECEIVED", "warnings": []})
        return self.posts.get(code, default)

    def answer(self, method: str, path: str, authorization: str | None, body: bytes) -> tuple[int, Any]:
        self.requests.append((method, path, authorization))
        if authorization != f"Bearer {TOKEN}":
            return envelope(401, self.unauthorized_message)
        if method == "POST" and path == "/v1/invoice-orders":
            return self.post(json.loads(body))
        if method == "POST" and path == "/v1/invoice-orders/batch" and self.batches:
            # Each item answered as its own POST, field paths under invoiceOrders[i] (intake.batch).
            items = []
            for i, order in enumerate(json.loads(body)["invoiceOrders"]):
                _, answer = self.post(order)
                data = answer["data"]
                if isinstance(data, dict) and "errors" in data:
                    data = {"errors": [{**e, "field": f"invoiceOrders[{i}].{e['field']}"} for e in data["errors"]]}
                items.append({"index": i, **answer, "data": data})
            accepted = sum(1 for item in items if item["code"] == 200)
            return envelope(
                200, "batch", {"accepted": accepted, "refused": len(items) - accepted, "invoiceOrders": items}
            )
        prefix = "/v1/invoice-orders/"
        if method == "GET" and path.startswith(prefix):
            code = path[len(prefix) :]
            answers = self.gets.get(code)
            if not answers:
                return envelope(404, f"no invoice order {code!r}")
            return answers.pop(0) if len(answers) > 1 else answers[0]
        return 404, {"message": "Not Found"}


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, answer = fake.answer(self.command, self.path, self.headers.get("Authorization"), body)
            raw = json.dumps(answer, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # click 8.1: stdout and stderr apart
    except TypeError:
        return CliRunner()  # click >= 8.2: always apart


def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
    result = runner().invoke(cli.main, list(args), env={**ENV_CLEARED, **(env or {})}, catch_exceptions=False)
    everything = result.stdout + result.stderr
    assert TOKEN not in everything
    assert "Traceback" not in everything
    return result


def with_api(api: FakeApi, *args: str, token: str = TOKEN) -> Result:
    return invoke("--api-url", api.url, "--token", token, *args)


def order_file(directory: Path, name: str, code: str) -> Path:
    path = directory / name
    path.write_text(json.dumps(demo.with_code(demo.SEED_EXAMPLE, code), ensure_ascii=False), encoding="utf-8")
    return path


def rows(text: str) -> list[list[str]]:
    """A plain-text table's rows, split on runs of two or more spaces."""
    import re

    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------------------- submit
def test_submit_prints_a_summary_table_and_exits_2_when_any_order_is_refused(api: FakeApi, tmp_path: Path) -> None:
    api.posts["bad-1"] = envelope(
        400,
        "invalid invoice order: 2 problems",
        {
            "errors": [
                {"field": "invoiceOrder.bukrs", "message": "unknown company code 'ZZ'"},
                {"field": "invoiceOrder.invoiceType", "message": "unknown"},
            ]
        },
    )
    api.posts["dup-1"] = envelope(409, "openApplyCode 'dup-1' was already received with different content")
    api.posts["again-1"] = envelope(200, "order already received", {"openApplyCode": "again-1", "status": "ISSUED"})
    api.posts["busy-1"] = envelope(503, "the application was stored but could not be queued for dispatch")
    files = [
        order_file(tmp_path, "a.json", "ok-1"),
        order_file(tmp_path, "b.json", "bad-1"),
        order_file(tmp_path, "c.json", "dup-1"),
        order_file(tmp_path, "d.json", "again-1"),
        order_file(tmp_path, "e.json", "busy-1"),
    ]
    result = with_api(api, "submit", *map(str, files))

    assert result.exit_code == 2, result.stderr
    summary, details = result.stdout.split("\n\n")
    table = rows(summary)
    assert table[0] == ["file", "openApplyCode", "result", "reason"]
    by_code = {row[1]: row for row in table[1:]}
    assert by_code["ok-1"][2:] == ["accepted", "order received"]
    # Intake refused it (400): "rejected" is the lifecycle word for what a channel did to an application.
    assert by_code["bad-1"][2:] == ["refused", "invoiceOrder.bukrs: unknown company code 'ZZ' (+1 more)"]
    assert "rejected" not in result.stdout
    # Every field error of the refused order, each on its own line.
    assert rows(details) == [
        ["refused by intake (400), field by field"],
        ["file", "openApplyCode", "field", "problem"],
        [str(files[1]), "bad-1", "invoiceOrder.bukrs", "unknown company code 'ZZ'"],
        [str(files[1]), "bad-1", "invoiceOrder.invoiceType", "unknown"],
    ]
    assert by_code["dup-1"][2] == "conflict" and "already received with different content" in by_code["dup-1"][3]
    assert by_code["again-1"][2:] == ["already received", "order already received"]
    assert by_code["busy-1"][2] == "error" and by_code["busy-1"][3].startswith("503 ")
    assert [row[0] for row in table[1:]] == [str(f) for f in files]
    assert "submitting 5 orders" in result.stderr  # the progress bar (stderr; label only when not a tty)
    # Several files: one batch call.
    assert [r[:2] for r in api.requests] == [("POST", "/v1/invoice-orders/batch")]
    assert [r[2] for r in api.requests] == [f"Bearer {TOKEN}"]


def test_submit_exits_0_when_all_accepted_and_reads_directories_sorted(api: FakeApi, tmp_path: Path) -> None:
    orders = tmp_path / "orders"
    orders.mkdir()
    order_file(orders, "2-second.json", "second")
    order_file(orders, "1-first.json", "first")
    (orders / "notes.txt").write_text("not an order")
    result = with_api(api, "submit", str(orders))
    assert result.exit_code == 0, result.stderr
    assert [row[1] for row in rows(result.stdout)[1:]] == ["first", "second"]
    assert [path for method, path, _ in api.requests] == ["/v1/invoice-orders/batch"]


def test_submit_of_many_files_batches_them_by_100_with_a_progress_bar(api: FakeApi, tmp_path: Path) -> None:
    files = [str(order_file(tmp_path, f"{i:03d}.json", f"many-{i:03d}")) for i in range(250)]
    api.posts["many-120"] = envelope(
        400, "invalid invoice order: 1 problem", {"errors": [{"field": "invoiceOrder.bukrs", "message": "unknown"}]}
    )
    result = with_api(api, "submit", *files)
    assert result.exit_code == 2, result.stderr
    assert [path for _, path, _ in api.requests] == ["/v1/invoice-orders/batch"] * 3
    summary, details = result.stdout.split("\n\n")
    table = rows(summary)[1:]
    assert [row[1] for row in table] == [f"many-{i:03d}" for i in range(250)]
    assert [row[2] for row in table].count("accepted") == 249
    # The field path as in the file (the batch's invoiceOrders[20]. prefix is the hub's, not the file's).
    assert rows(details)[2] == [files[120], "many-120", "invoiceOrder.bukrs", "unknown"]
    assert "submitting 250 orders" in result.stderr


def test_submit_against_a_hub_without_the_batch_route_posts_each(api: FakeApi, tmp_path: Path) -> None:
    api.batches = False
    files = [str(order_file(tmp_path, f"{i}.json", f"old-{i}")) for i in range(3)]
    result = with_api(api, "submit", *files)
    assert result.exit_code == 0, result.stderr
    assert [path for _, path, _ in api.requests] == ["/v1/invoice-orders/batch"] + ["/v1/invoice-orders"] * 3
    assert [row[2] for row in rows(result.stdout)[1:]] == ["accepted"] * 3


def test_submit_one_file_has_no_progress_bar(api: FakeApi, tmp_path: Path) -> None:
    result = with_api(api, "submit", str(order_file(tmp_path, "one.json", "one")))
    assert result.exit_code == 0
    assert result.stderr == ""
    assert rows(result.stdout)[1] == [str(tmp_path / "one.json"), "one", "accepted", "order received"]


def test_submit_an_unreadable_file_is_an_error_row_and_exit_1(api: FakeApi, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    good = order_file(tmp_path, "good.json", "good")
    result = with_api(api, "submit", str(broken), str(good))
    assert result.exit_code == 1
    table = {row[0]: row for row in rows(result.stdout)[1:]}
    assert table[str(broken)][1:3] == ["-", "error"] and table[str(broken)][3].startswith("not JSON")
    assert table[str(good)][2] == "accepted"
    assert len(api.requests) == 1  # the broken file was never sent


def test_submit_of_a_missing_path_is_a_usage_error(api: FakeApi, tmp_path: Path) -> None:
    result = with_api(api, "submit", str(tmp_path / "nope.json"))
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert not api.requests


# ---------------------------------------------------------------------------- status
def test_status_shows_status_reason_history_invoices_and_files(api: FakeApi) -> None:
    sha = "ab" * 32
    api.gets["demo-1"] = [
        envelope(
            200,
            "ok",
            application(
                "demo-1",
                "ISSUED",
                channel="partner",
                history=[
                    {"at": "2026-01-01T00:00:00.000Z", "status": "RECEIVED", "note": "received"},
                    {"at": "2026-01-01T00:00:01.000Z", "status": "SUBMITTED", "note": "sent to partner"},
                    {"at": "2026-01-01T00:00:09.000Z", "status": "ISSUED", "note": "issued by partner"},
                ],
                invoices=[
                    {
                        "invoiceNumber": "00000001",
                        "invoiceCode": "003082600080",
                        "invoiceDate": "2026-01-01",
                        "amount": 5327.43,
                        "tax": 692.57,
                        "status": "ISSUED",
                        "files": [
                            {"format": "pdf", "size": 1234, "sha256": sha, "url": "http://127.0.0.1:9/f.pdf?sig=1"},
                            {"error": "download failed: 404", "source": "url"},
                        ],
                    }
                ],
            ),
        )
    ]
    result = with_api(api, "status", "demo-1")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out.splitlines()[:4] == [
        "openApplyCode demo-1",
        "status        ISSUED",
        "reason        -",
        "channel       partner",
    ]
    table = rows(out)
    assert ["time", "status", "note"] in table
    assert ["2026-01-01T00:00:01.000Z", "SUBMITTED", "sent to partner"] in table
    assert ["number", "code", "date", "amount", "tax", "status"] in table
    assert ["00000001", "003082600080", "2026-01-01", "5327.43", "692.57", "ISSUED"] in table
    assert ["invoice", "format", "size", "sha256", "url"] in table
    assert ["00000001", "pdf", "1234", sha, "http://127.0.0.1:9/f.pdf?sig=1"] in table
    assert ["00000001", "-", "-", "-", "error: download failed: 404"] in table


def test_status_of_a_rejected_application_shows_the_reason(api: FakeApi) -> None:
    api.gets["r-1"] = [envelope(200, "ok", application("r-1", "REJECTED", reason="xunlian rejected it: 数电 (X)"))]
    result = with_api(api, "status", "r-1")
    assert result.exit_code == 0
    assert "reason        xunlian rejected it: 数电 (X)" in result.stdout
    assert "invoices\n  none" in result.stdout


def test_status_of_an_unknown_code_is_404_exit_2(api: FakeApi) -> None:
    result = with_api(api, "status", "nope")
    assert result.exit_code == 2
    assert result.stderr == "error: 404 no invoice order 'nope'\n"


# ---------------------------------------------------------------------------- watch
def test_watch_prints_each_status_change_until_every_application_is_final(api: FakeApi) -> None:
    api.gets["a"] = [
        envelope(200, "ok", application("a", "RECEIVED")),
        envelope(200, "ok", application("a", "DISPATCHING")),
        envelope(200, "ok", application("a", "DISPATCHING")),
        envelope(200, "ok", application("a", "ISSUED", invoices=[{"invoiceNumber": "00000007"}])),
    ]
    api.gets["b"] = [
        envelope(200, "ok", application("b", "SUBMITTED")),
        envelope(503, "temporarily unavailable; try again"),  # skipped, asked again
        envelope(200, "ok", application("b", "REJECTED", reason="UNSUPPORTED_INVOICE_TYPE")),
    ]
    result = with_api(api, "watch", "a", "b", "--interval", "0.05")
    assert result.exit_code == 0, result.stderr
    changes = [line.split(None, 1)[1] for line in result.stdout.splitlines()]
    assert changes == [
        "a  RECEIVED",
        "b  SUBMITTED",
        "a  RECEIVED -> DISPATCHING",
        "b  SUBMITTED -> REJECTED  (UNSUPPORTED_INVOICE_TYPE)",
        "a  DISPATCHING -> ISSUED  (invoice 00000007)",
    ]
    # Final applications are not asked about again.
    assert sum(1 for _, path, _ in api.requests if path.endswith("/b")) == 3


def test_watch_keeps_watching_the_others_past_an_unknown_code_then_exits_2(api: FakeApi) -> None:
    api.gets["a"] = [
        envelope(200, "ok", application("a", "SUBMITTED")),
        envelope(200, "ok", application("a", "ISSUED", invoices=[{"invoiceNumber": "00000007"}])),
    ]
    api.gets["c"] = [envelope(200, "ok", application("c", "MISMATCH", reason="amount differs"))]
    result = with_api(api, "watch", "nope", "a", "c", "--interval", "0.05")
    assert result.exit_code == 2, result.stderr
    changes = [line.split(None, 1)[1] for line in result.stdout.splitlines()]
    assert changes == [
        "nope  unknown to the hub (404 no invoice order 'nope')",
        "a     SUBMITTED",
        "c     MISMATCH  (amount differs)",
        "a     SUBMITTED -> ISSUED  (invoice 00000007)",
    ]
    assert result.stderr == "error: unknown to the hub: nope (404 no invoice order 'nope')\n"
    # Asked about once: an unknown code is not polled again.
    assert sum(1 for _, path, _ in api.requests if path.endswith("/nope")) == 1


def test_watch_of_only_unknown_codes_ends_at_once_with_exit_2(api: FakeApi) -> None:
    result = with_api(api, "watch", "x", "y", "--interval", "5", "--timeout", "60")
    assert result.exit_code == 2
    assert result.stderr == "error: unknown to the hub: x (404 no invoice order 'x'), y (404 no invoice order 'y')\n"


def test_watch_times_out_with_exit_4_naming_those_still_open(api: FakeApi) -> None:
    api.gets["done"] = [envelope(200, "ok", application("done", "ISSUED"))]
    api.gets["slow"] = [envelope(200, "ok", application("slow", "SUBMITTED"))]
    result = with_api(api, "watch", "done", "slow", "--interval", "0.05", "--timeout", "0.3")
    assert result.exit_code == 4
    assert result.stderr == "error: timed out after 0.3 s; still open: slow (SUBMITTED)\n"
    assert "done  ISSUED" in result.stdout and "slow  SUBMITTED" in result.stdout


def test_final_statuses_are_the_models_statuses_that_are_not_open() -> None:
    from fapiao_hub.domain.models import Status

    assert {s.value for s in Status if not s.is_open} == cli.FINAL_STATUSES


# ---------------------------------------------------------------------------- shared options
def test_every_command_takes_the_shared_options_before_or_after_it() -> None:
    shared = {"api_url", "token", "state_dir"}
    assert shared <= {p.name for p in cli.main.params}
    for name, command in cli.main.commands.items():
        assert shared <= {p.name for p in command.params}, f"fapiao-hub {name} lacks a shared option"


@pytest.mark.parametrize("where", ["before", "after"])
def test_api_url_and_token_after_the_subcommand(api: FakeApi, tmp_path: Path, where: str) -> None:
    api.gets["x"] = [envelope(200, "ok", application("x", "ISSUED"))]
    options = ["--api-url", api.url, "--token", TOKEN]
    for command in (["status", "x"], ["watch", "x"], ["submit", str(order_file(tmp_path, "o.json", "o"))]):
        args = [*options, *command] if where == "before" else [*command, *options]
        result = invoke(*args)
        assert result.exit_code == 0, (args, result.stderr)
    assert {auth for _, _, auth in api.requests} == {f"Bearer {TOKEN}"}


def test_after_the_subcommand_wins_over_before_and_the_command_line_over_the_environment(api: FakeApi) -> None:
    api.gets["x"] = [envelope(200, "ok", application("x", "ISSUED"))]
    dead = f"http://127.0.0.1:{closed_port()}"
    assert invoke("--api-url", dead, "--token", "wrong-token-wrong", "status", "x", "--api-url", api.url,
                  "--token", TOKEN).exit_code == 0  # fmt: skip
    env = {"FAPIAO_HUB_API_URL": dead, "FAPIAO_HUB_TOKEN": "wrong-token-wrong"}
    assert invoke("--api-url", api.url, "--token", TOKEN, "status", "x", env=env).exit_code == 0
    assert invoke("status", "x", "--api-url", api.url, "--token", TOKEN, env=env).exit_code == 0
    assert invoke("status", "x", "--api-url", dead, env={"FAPIAO_HUB_TOKEN": TOKEN}).exit_code == 3


def test_demo_takes_the_state_dir_and_the_api_url_after_it(api: FakeApi, tmp_path: Path) -> None:
    # The README's `fapiao-hub demo --api-url ...` used to fail with "No such option".
    result = invoke("demo", "--api-url", api.url, "--token", TOKEN, "--state-dir", str(tmp_path / "state"))
    assert result.exit_code == 1
    assert "No such option" not in result.stderr
    assert result.stderr.startswith(f"error: {tmp_path / 'state' / 'local.json'} not found: the demo needs")


def test_each_commands_help_lists_the_shared_options() -> None:
    for name in cli.main.commands:
        result = invoke(name, "--help")
        assert result.exit_code == 0, result.stderr
        assert all(option in result.stdout for option in ("--api-url", "--token", "--state-dir")), name


# ---------------------------------------------------------------------------- errors
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_api_is_one_line_and_exit_3() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    result = invoke("--api-url", url, "--token", TOKEN, "status", "x")
    assert result.exit_code == 3
    assert result.stderr == f"error: cannot reach {url}: connection refused (is `make run` running?)\n"
    assert result.stdout == ""


def test_a_wrong_token_is_401_exit_2_and_submit_stops_there(api: FakeApi, tmp_path: Path) -> None:
    result = with_api(api, "status", "x", token="not-the-right-token-at-all")
    assert (result.exit_code, result.stderr) == (2, "error: 401 missing or invalid bearer token\n")
    files = [str(order_file(tmp_path, f"{i}.json", f"o{i}")) for i in range(3)]
    result = with_api(api, "submit", *files, token="not-the-right-token-at-all")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == "error: 401 missing or invalid bearer token"
    assert sum(1 for method, _, _ in api.requests if method == "POST") == 1


def test_the_token_is_never_printed_even_when_an_answer_repeats_it(api: FakeApi) -> None:
    api.unauthorized_message = f"token {TOKEN} is not known"  # a careless server
    result = invoke("--api-url", api.url, "--token", TOKEN + "x", "status", "x")
    assert result.exit_code == 2
    assert TOKEN not in result.stderr and "***" in result.stderr


def test_missing_local_json_is_exit_1_with_a_hint(tmp_path: Path) -> None:
    result = invoke("--state-dir", str(tmp_path / "state"), "status", "x")
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {tmp_path / 'state' / 'local.json'} not found")
    assert "make run" in line and "--api-url" in line
    result = invoke("--state-dir", str(tmp_path / "state"), "demo")
    assert result.exit_code == 1 and "the demo needs the local run's channels" in result.stderr


def test_url_and_token_come_from_local_json_by_default_and_from_the_environment(api: FakeApi, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "local.json").write_text(json.dumps({"api_url": api.url, "token": TOKEN}))
    api.gets["x"] = [envelope(200, "ok", application("x", "RECEIVED"))]
    assert invoke("status", "x", env={"FAPIAO_HUB_STATE_DIR": str(state)}).exit_code == 0
    assert invoke("--state-dir", str(state), "status", "x").exit_code == 0
    env = {"FAPIAO_HUB_API_URL": api.url, "FAPIAO_HUB_TOKEN": TOKEN, "FAPIAO_HUB_STATE_DIR": str(tmp_path / "none")}
    assert invoke("status", "x", env=env).exit_code == 0


def test_usage_errors_are_one_line_and_exit_1(api: FakeApi) -> None:
    result = with_api(api, "watch")
    assert result.exit_code == 1
    assert result.stderr == "error: Missing argument 'CODE...'. (see 'fapiao-hub watch --help')\n"
    result = invoke("--no-such-option")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    result = invoke("--api-url", "ftp://example", "--token", TOKEN, "status", "x")
    assert (result.exit_code, result.stderr.startswith("error: invalid API URL")) == (1, True)


def test_an_answer_that_is_not_json_is_exit_2(tmp_path: Path) -> None:
    from http.server import SimpleHTTPRequestHandler

    class Html(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(502)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>bad gateway</html>")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = invoke("--api-url", url, "--token", TOKEN, "status", "x")
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 2
    assert result.stderr == f"error: 502 unexpected answer from {url}/v1/invoice-orders/x (not a JSON object)\n"


# ---------------------------------------------------------------------------- local
def test_local_runs_local_run_main_with_the_given_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import local.run

    seen = {}

    def fake_main() -> int:
        import os

        seen["state"] = os.environ.get("FAPIAO_HUB_STATE_DIR")
        return 0

    monkeypatch.setattr(local.run, "main", fake_main)
    result = invoke("--state-dir", str(tmp_path / "s"), "local")  # CliRunner restores the environment after
    assert result.exit_code == 0
    assert seen["state"] == str((tmp_path / "s").resolve())
    result = invoke("local", "--state-dir", str(tmp_path / "t"))
    assert result.exit_code == 0
    assert seen["state"] == str((tmp_path / "t").resolve())


def test_local_says_so_in_one_line_when_the_repository_is_not_at_hand(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "local", None)  # import local -> ImportError
    monkeypatch.setattr(cli, "_checkouts", lambda: [tmp_path])
    result = invoke("local")
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: `fapiao-hub local` needs the fapiao-hub repository")


# ---------------------------------------------------------------------------- output and samples
def test_tables_align_chinese_text_by_display_width() -> None:
    text = cli.format_table(["sample", "state"], [("数电 0112", "REJECTED"), ("blue", None)])
    assert text.splitlines() == ["sample     state", "数电 0112  REJECTED", "blue       -"]


def _local_config() -> tuple[HubConfig, Any]:
    document = json.loads((ROOT / "local" / "hub-config.json").read_text(encoding="utf-8"))
    document["business_systems"]["sample-erp"]["token_sha256"] = [token_sha256("t")]
    config = HubConfig.model_validate(document)
    return config, config.business_systems["sample-erp"]


def _convert(body: dict[str, Any]) -> seed004.IntakeResult:
    config, system = _local_config()
    return seed004.to_application(
        body, source_system="sample-erp", system=system, config=config, policy=rules.RulePolicy.default()
    )


def test_the_built_in_sample_is_the_docs_example_and_every_demo_order_passes_intake() -> None:
    for channel in ("xunlian", "partner", "kingdee", "ekuaibao"):
        published = json.loads((ROOT / "docs" / "examples" / f"order-{channel}.json").read_text(encoding="utf-8"))
        header = published["invoiceOrder"]
        built = demo.with_code(demo.SEED_EXAMPLE, header["openApplyCode"], header["bukrs"])
        for line in published["invoiceOrder"]["invoiceOrderSub"]:
            for noise in ("openApplyCode", "currentPage", "pageSize", "searchCount"):
                line.pop(noise, None)
        assert built == published, channel
        order, source = demo.blue_order(channel, header["bukrs"], f"demo-{channel}-x")
        assert source == f"docs/examples/order-{channel}.json"
        assert {line["openApplyCode"] for line in order["invoiceOrder"]["invoiceOrderSub"]} == {f"demo-{channel}-x"}
        result = _convert(order)
        assert result.errors == [] and result.channel == channel
        assert demo.discount_pairs(order) == 2
    assert _convert(demo.digital_order("VB5", "d-1")).errors == []  # accepted; VB5's 数电 channel issues it
    refused = _convert(demo.unknown_company_order("u-1", {"VB5"}))
    assert [e.field for e in refused.errors] == ["invoiceOrder.bukrs"]


def test_the_red_sample_reverses_part_of_the_issued_invoice() -> None:
    blue, _ = demo.blue_order("xunlian", "VB5", "b-1")
    invoice = {"invoiceNumber": "00000001", "invoiceCode": "003082600080", "invoiceDate": "2026-11-21"}
    red = demo.red_order(blue, invoice, "r-1")
    header = red["invoiceOrder"]
    assert header["openInvoiceType"] == "1"
    assert (header["blueInvoiceNumber"], header["blueInvoiceCode"]) == ("00000001", "003082600080")
    assert header["redVatInvoiceInfoLog"]["blueInvoiceCode"] == "003082600080"
    assert (header["invoiceAmtInclTax"], header["invoiceAmt"], header["invoiceTax"]) == (-6000.0, -5309.73, -690.27)
    result = _convert(red)
    assert result.errors == [], result.errors
    application = result.application
    assert application.red.blue_invoice_number == "00000001"
    assert -application.amount < _convert(blue).application.amount  # smaller than the blue invoice
