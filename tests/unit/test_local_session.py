"""The local run's GET /ops/local-session (local/run.py LocalSession): the console on 127.0.0.1 gets the
operator token from local.json; another host (DNS rebinding) or a cross-site fetch gets nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local.run import LocalSession, console_url

TOKEN = "local-operator-token-0123456789"


def ask(session: LocalSession, **headers: str) -> tuple[int, dict]:
    answer = session.invoke({"headers": {"host": "127.0.0.1:3000", **headers}})
    assert answer["headers"]["cache-control"] == "no-store"
    return answer["statusCode"], json.loads(answer["body"])


@pytest.fixture
def session(tmp_path: Path) -> LocalSession:
    (tmp_path / "local.json").write_text(json.dumps({"api_url": "http://127.0.0.1:3000", "operator_token": TOKEN}))
    return LocalSession(tmp_path / "local.json")


def test_the_console_on_loopback_gets_the_operator_token(session: LocalSession) -> None:
    assert ask(session) == (200, {"token": TOKEN})
    assert ask(session, **{"sec-fetch-site": "same-origin"}) == (200, {"token": TOKEN})
    assert ask(session, host="localhost:3000") == (200, {"token": TOKEN})


@pytest.mark.parametrize(
    "headers",
    [
        {"host": "attacker.example:3000"},  # DNS rebinding: the page's own host name
        {"host": "127.0.0.1.nip.io:3000"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
    ],
)
def test_anything_else_gets_no_token(session: LocalSession, headers: dict[str, str]) -> None:
    status, body = ask(session, **headers)
    assert status == 403 and TOKEN not in json.dumps(body)


def test_without_an_operator_token_the_console_asks_for_one(tmp_path: Path) -> None:
    (tmp_path / "local.json").write_text(json.dumps({"api_url": "http://127.0.0.1:3000"}))
    assert ask(LocalSession(tmp_path / "local.json"))[0] == 404
    assert ask(LocalSession(tmp_path / "missing.json"))[0] == 404


def test_console_url() -> None:
    assert console_url("http://127.0.0.1:3000") == "http://127.0.0.1:3000/ops/"
