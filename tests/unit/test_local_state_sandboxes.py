"""local.state saves the channel sandboxes with the hub's state and gives it back at the next start;
a snapshot it cannot read leaves that sandbox empty (logged), never stops the run from starting."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from fapiao_hub.domain.models import InvoiceType
from local.state import LocalState, forget
from sandbox import xunlian as sandbox_xunlian
from tests.unit.test_sandbox_orders import application, get, xunlian_channel


class _Resources:
    tables: dict[str, str] = {}  # noqa: RUF012 (no tables or buckets: the sandboxes only)
    buckets: dict[str, str] = {}  # noqa: RUF012


class _Session:
    def client(self, *args: Any, **kwargs: Any) -> None:
        return None


def local_state(state: Path) -> LocalState:
    return LocalState(state, _Resources(), _Session(), "http://127.0.0.1:1", "us-east-1", "business-token")


def test_a_sandbox_saved_with_the_run_is_given_back_at_the_next_start(tmp_path: Path) -> None:
    first = sandbox_xunlian.run()
    try:
        saving = local_state(tmp_path)
        assert saving.restore_sandboxes({"xunlian": first}) == 0  # nothing saved yet
        xunlian_channel(first).issue(application(InvoiceType.VAT_SPECIAL_ELECTRONIC), "FH-L1")
        saving.save()
    finally:
        first.shutdown()
    saved = json.loads((tmp_path / "saved" / "sandboxes" / "xunlian.json").read_text(encoding="utf-8"))
    assert saved["base_url"] == first.base_url and "FH-L1" in saved["fields"]["_issued"]

    second = sandbox_xunlian.run()
    try:
        assert local_state(tmp_path).restore_sandboxes({"xunlian": second}) == 1
        assert get(f"{second.base_url}/_sandbox/issued")["counts"] == {"FH-L1": 1}
    finally:
        second.shutdown()

    forget(tmp_path)  # FAPIAO_HUB_FRESH: the sandboxes start empty too
    third = sandbox_xunlian.run()
    try:
        assert local_state(tmp_path).restore_sandboxes({"xunlian": third}) == 0
        assert get(f"{third.base_url}/_sandbox/issued")["total"] == 0
    finally:
        third.shutdown()


def test_a_snapshot_that_cannot_be_read_leaves_the_sandbox_empty_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "saved" / "sandboxes"
    folder.mkdir(parents=True)
    (folder / "xunlian.json").write_text('{"version": 1, "fields": {"_issued": [', encoding="utf-8")
    server = sandbox_xunlian.run()
    try:
        with caplog.at_level(logging.ERROR, logger="local.state"):
            assert local_state(tmp_path).restore_sandboxes({"xunlian": server}) == 0
        assert "sandbox xunlian: could not restore" in caplog.text
        assert get(f"{server.base_url}/_sandbox/issued")["total"] == 0
    finally:
        server.shutdown()
