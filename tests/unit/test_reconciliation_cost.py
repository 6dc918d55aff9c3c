"""Reconciliation reads only the window (issue 12): counted, as the poller's are in bench."""

from __future__ import annotations

from bench.reconciliation import IN_WINDOW, measure


def test_reconciliation_reads_only_the_window_requests_equal_with_1000_and_100000_stored():
    """Its DynamoDB requests with 1,000 and 100,000 stored applications and the same window are equal."""
    result = measure(sizes=[1_000, 100_000], runs=1)
    small, large = result["sizes"]
    assert (small["size"], large["size"]) == (1_000, 100_000)
    assert small["checked"] == large["checked"] == IN_WINDOW  # the window's applications, all of them
    assert small["requests"] == large["requests"]
    # Per application in the window: one GetItem and one BatchGetItem (its invoices); the indexes are
    # read by one Query per (day, shard) of the window plus one of the attention index.
    assert small["requests"]["dynamodb:GetItem"] == IN_WINDOW
    assert small["requests"]["dynamodb:Query"] <= 4 * 4 + 1
    assert not any(op.endswith(":Scan") for op in large["requests"])
