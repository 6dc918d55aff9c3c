"""Alarm metrics of what a person must look at (template.yaml FindingsAlarm, docs/operations.md).

Powertools buffers them; each function's handler flushes them (``@metrics.log_metrics``), so the
callers (workflow, reconciliation) do no I/O of their own. Every metric carries the ``service``
dimension only, as the project's others do: ``FindingsRecorded`` (every finding, the alarm's
metric), ``Findings.<KIND>`` (per FindingKind) and ``ResultMismatches`` (applications that went to
MISMATCH).
"""

from __future__ import annotations

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from fapiao_hub.domain.models import Finding

FINDINGS_RECORDED = "FindingsRecorded"
RESULT_MISMATCHES = "ResultMismatches"

metrics = Metrics()


def finding_recorded(finding: Finding) -> None:
    """Count a finding once, when it is first recorded (not when a repeat is recognised)."""
    metrics.add_metric(name=FINDINGS_RECORDED, unit=MetricUnit.Count, value=1)
    metrics.add_metric(name=f"Findings.{finding.kind.value}", unit=MetricUnit.Count, value=1)


def result_mismatch() -> None:
    metrics.add_metric(name=RESULT_MISMATCHES, unit=MetricUnit.Count, value=1)
