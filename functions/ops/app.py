"""Ops function: the operations desk's API (GET /v1/ops/summary, /v1/ops/applications[/{system}/{code}],
POST .../actions). Operator tokens only."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from fapiao_hub.api.ops import app
from fapiao_hub.domain import logkeys

logger = Logger()
logkeys.install(logger)
# X-Ray patches only the AWS SDK; the channels an action queries are reached through the workflow's
# own traced calls.
tracer = Tracer(patch_modules=("botocore",))
metrics = Metrics()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
