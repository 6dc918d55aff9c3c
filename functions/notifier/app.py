"""Notifier function: outcome events (from the notify queue) to each business system's webhook."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from fapiao_hub import runtime

logger = Logger()
# X-Ray: the AWS SDK and the webhook calls (requests), nothing else to patch.
tracer = Tracer(patch_modules=("botocore", "requests"))
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(
        event=event, record_handler=runtime.notifier().deliver_record, processor=processor, context=context
    )
