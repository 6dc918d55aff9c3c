"""Keeps bench/ from rotting: the request-counting part for one flow, and the report, at a tiny size.

Structure only (counts exist and add up, the report renders): no figure or timing is asserted.
"""

from __future__ import annotations

import pytest

from bench import cost, report
from bench.flows import run_flows
from bench.machine import machine_info

pytestmark = pytest.mark.integration  # the local run in process: a moto server and HTTP on 127.0.0.1


def test_one_flow_is_counted_and_the_report_renders(tmp_path):
    results = {"requests": run_flows(tmp_path / "state", flows=("xunlian",), run_id="smoke")}
    flow = results["requests"]["flows"]["xunlian"]

    assert flow["status"] == "ISSUED"
    assert flow["total"] == len(flow["calls"]) > 0
    assert sum(n for ops in flow["by_function"].values() for n in ops.values()) == flow["total"]
    assert {"IntakeFunction", "DispatchFunction"} <= set(flow["by_function"])
    assert all(call["label"] for call in flow["calls"])  # every call is recognised
    assert flow["invocations"] and all(inv["wall_s"] >= 0 for inv in flow["invocations"])

    results["cost"] = cost.costs(results["requests"]["flows"])
    assert results["cost"]["flows"]["xunlian"]["total"] > 0

    document = report.render(machine_info(), results, "python -m bench --sections requests")
    assert "## 1. AWS requests per issued invoice" in document
    assert "blue, Xunlian (synchronous)" in document
    assert "## 3. Cold start per function" in document and "Not run in this invocation" in document
    assert report.summary(results)
