"""bench/batch.py at a small size: the batch route's AWS requests per order against single POSTs."""

from __future__ import annotations

from bench import report
from bench.batch import measure


def test_a_batch_costs_one_put_per_order_and_one_send_per_ten():
    result = measure(orders=12)
    assert result["single"]["requests"] == {"dynamodb:TransactWriteItems": 12, "sqs:SendMessage": 12}
    assert result["batch"]["requests"] == {"dynamodb:TransactWriteItems": 12, "sqs:SendMessageBatch": 2}
    assert result["resend"]["requests"] == result["batch"]["requests"]
    assert result["ratio"] == 24 / 14
    section = report.batch_section({"batch": result})
    assert "| one batch of 12 | 14 | 1.17 |" in section
    assert "requests per batched order (batch of 12)" in report.summary_table({"batch": result})
