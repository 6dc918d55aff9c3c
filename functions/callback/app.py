"""Callback function: POST /v1/callbacks/{channel} (channels push results here)."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from fapiao_hub.callback_api import app

logger = Logger()
# X-Ray: the AWS SDK and the invoice file downloads (requests), nothing else to patch.
tracer = Tracer(patch_modules=("botocore", "requests"))
metrics = Metrics()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
