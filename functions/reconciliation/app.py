"""Reconciliation function: daily, re-asks the channels about recent and waiting applications."""

from datetime import datetime

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from fapiao_hub import runtime
from fapiao_hub.usecases.reconciliation import Window

logger = Logger()
# X-Ray: the AWS SDK and the channels' HTTP calls (requests), nothing else to patch.
tracer = Tracer(patch_modules=("botocore", "requests"))
metrics = Metrics()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    # A scheduled event reconciles the window ending now; an operator may invoke it with
    # {"window": {"from": "...", "to": "..."}} (ISO 8601 with a zone) to go over another one.
    requested = (event or {}).get("window") if isinstance(event, dict) else None
    window = (
        Window(datetime.fromisoformat(requested["from"]), datetime.fromisoformat(requested["to"]))
        if requested
        else None
    )
    report = runtime.reconciler().run(window, time_left_ms=context.get_remaining_time_in_millis)
    metrics.add_metric(name="ReconciledApplications", unit=MetricUnit.Count, value=len(report.checked))
    summary = {
        "day": report.window.day.isoformat(),
        "checked": len(report.checked),
        "new_findings": len(report.new_findings),
        "not_verifiable": sum(1 for c in report.checked if c.verdict.value == "not_verifiable"),
        "report": report.keys,
    }
    logger.info("reconciliation run", extra=summary)
    return summary
