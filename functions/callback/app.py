"""Callback function: POST /v1/callbacks/{channel} (channels push results here)."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from fapiao_hub.api.callbacks import app
from fapiao_hub.domain import logkeys

logger = Logger()
logkeys.install(logger)
# X-Ray: the AWS SDK and the invoice file downloads (requests), nothing else to patch.
tracer = Tracer(patch_modules=("botocore", "requests"))
metrics = Metrics()


# No correlation id from the HTTP request: a line about a pushed result carries its application's code
# (fapiao_hub.domain.logkeys), and one push may carry several applications' results.
@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
