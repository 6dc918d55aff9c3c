"""Poller function: every minute, hands due applications to the dispatch queue."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from fapiao_hub import runtime
from fapiao_hub.domain import logkeys
from fapiao_hub.usecases import polling

logger = Logger()
logkeys.install(logger)
# X-Ray patches only the AWS SDK: this function makes no other HTTP calls (the default would also
# patch, and so import, requests and sqlite3 at every cold start).
tracer = Tracer(patch_modules=("botocore",))
metrics = Metrics()


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    report = runtime.poller().run(time_left_ms=context.get_remaining_time_in_millis)
    metrics.add_metric(name="DueApplications", unit=MetricUnit.Count, value=report.due)
    # What waits for a person, every minute (zeros too): the backlog alarms last while it does.
    for name, count in polling.backlog(runtime.application_store()).items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=count)
    # Quiet when idle: a run that found nothing due is a debug line (locally one every 5 s).
    (logger.info if report.due else logger.debug)("poll run", extra={"due": report.due, "queued": report.queued})
    return {"due": report.due, "queued": report.queued}
