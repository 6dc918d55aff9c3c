"""Intake function: POST /v1/invoice-orders (and the seed 004 path), GET /v1/invoice-orders/{code}."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from fapiao_hub.api.intake import app
from fapiao_hub.domain import logkeys

logger = Logger()
logkeys.install(logger)
# X-Ray patches only the AWS SDK: this function makes no other HTTP calls (the default would also
# patch, and so import, requests and sqlite3 at every cold start).
tracer = Tracer(patch_modules=("botocore",))
metrics = Metrics()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
