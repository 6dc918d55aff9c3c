"""Notifier function: outcome events (from the notify queue) to each business system's webhook."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from fapiao_hub import runtime
from fapiao_hub.domain import jsonutil, logkeys

logger = Logger()
logkeys.install(logger)
# X-Ray: the AWS SDK and the webhook calls (requests), nothing else to patch.
tracer = Tracer(patch_modules=("botocore", "requests"))
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def deliver_record(record: SQSRecord, lambda_context: LambdaContext | None = None) -> str:
    """One outcome event; its lines name its application (an unreadable event's name none).
    ``lambda_context``: the batch processor passes it, the notifier defers what it has no time for."""
    try:
        detail = jsonutil.loads(record.body)["detail"]
        application = (str(detail["source_system"]), str(detail["open_apply_code"]), detail.get("request_number"))
    except (jsonutil.InvalidJson, KeyError, TypeError):
        return runtime.notifier().deliver_record(record, lambda_context)  # refused, and it says so
    with logkeys.application(*application):
        return runtime.notifier().deliver_record(record, lambda_context)


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(event=event, record_handler=deliver_record, processor=processor, context=context)
