"""Dispatch function: SQS batches from the dispatch queue; only failed records return to the queue."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from fapiao_hub import runtime
from fapiao_hub.domain import logkeys
from fapiao_hub.infra.queues import DispatchRequest

logger = Logger()
logkeys.install(logger)
# X-Ray: the AWS SDK and the channels' HTTP calls (requests), nothing else to patch.
tracer = Tracer(patch_modules=("botocore", "requests"))
metrics = Metrics()
# A batch whose every record failed is answered like any other (all listed), not by raising.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@tracer.capture_method
def dispatch_record(record: SQSRecord) -> str:
    request = DispatchRequest.model_validate_json(record.body)
    # Every line of this record's work names its application; the next record's will name its own.
    with logkeys.application(request.source_system, request.open_apply_code):
        result = runtime.dispatcher().dispatch(
            request.source_system, request.open_apply_code, claimed_until=request.claimed_until
        )
        received = record.attributes.approximate_receive_count
        logger.info("dispatch step", extra={"result": result, "receive_count": received})
    metrics.add_metric(name=f"Dispatch.{result.replace(' ', '_')}", unit=MetricUnit.Count, value=1)
    return result


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(event=event, record_handler=dispatch_record, processor=processor, context=context)
