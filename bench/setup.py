"""The in-process sections' shared setup: one function's handler under moto, its AWS requests counted.

polling, reconciliation, listing and batch each measure one function's handler in this process,
under moto's in-process mock (DynamoDB serialized as in the tests), with the tables and queues
provisioned from template.yaml. :func:`function_in_moto` builds that once: moto's fake credentials
(:func:`moto_environment`), the resources, the function's environment, the handler loaded from
functions/<dir>/app.py, and a :class:`bench.hooks.RequestCounter` on the hub runtime's clients
(``fapiao_hub.runtime.watch_aws_requests``). warm uses the environment and the handler loader.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.hooks import RequestCounter

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
HUB_CONFIG = ROOT / "local" / "hub-config.json"
_BATCH = 25  # BatchWriteItem's limit


@contextmanager
def moto_environment(*, quiet: bool = True) -> Iterator[None]:
    """moto's fake credentials while inside, the process environment restored after. ``quiet``: no
    Powertools metrics and warnings only in the logs (warm keeps them: they are part of what it times)."""
    saved = dict(os.environ)
    try:
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
            os.environ.pop(name, None)
        os.environ.update(  # moto's fake credentials
            AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106
            AWS_DEFAULT_REGION=REGION, AWS_REGION=REGION, POWERTOOLS_TRACE_DISABLED="true",
        )  # fmt: skip
        if quiet:
            os.environ.update(POWERTOOLS_METRICS_DISABLED="true", POWERTOOLS_LOG_LEVEL="WARNING")
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class LambdaContext:
    """What a handler reads of Lambda's context object."""

    function_version = "$LATEST"
    memory_limit_in_mb = 512
    aws_request_id = "bench"
    log_stream_name = "bench"

    def __init__(self, function: str, remaining_ms: int = 60_000) -> None:
        self.function_name = function
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:{function}"
        self.log_group_name = f"/aws/lambda/{function}"
        self._remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining_ms


def schedule_event() -> dict[str, Any]:
    """What EventBridge Scheduler hands a scheduled function."""
    return {
        "version": "0",
        "id": "bench",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": REGION,
        "resources": [],
        "detail": {},
    }


def write_items(client: Any, table: str, items: Iterable[dict[str, Any]]) -> None:
    """Put ``items`` (DynamoDB's typed form) with BatchWriteItem, 25 a request, unprocessed ones again."""
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append({"PutRequest": {"Item": item}})
        if len(batch) == _BATCH:
            _write(client, table, batch)
            batch = []
    if batch:
        _write(client, table, batch)


def _write(client: Any, table: str, batch: list[dict[str, Any]]) -> None:
    request = {table: batch}
    while request:
        request = client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}


def load_handler(function_dir: str) -> Any:
    """functions/<function_dir>/app.py's ``lambda_handler``, loaded as Lambda would (its own module)."""
    name = f"_bench_{function_dir}_app"
    spec = importlib.util.spec_from_file_location(name, ROOT / "functions" / function_dir / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.lambda_handler


@dataclass(frozen=True)
class InProcess:
    """A function ready to measure: ``handler(event, context)``, its resources and its request counter."""

    resources: Any  # local.provision.Resources
    handler: Any
    counter: RequestCounter
    context: LambdaContext


@contextmanager
def function_in_moto(
    logical_id: str, function_dir: str, *, config: dict[str, Any] | None = None, faster_dynamodb: bool = False
) -> Iterator[InProcess]:
    """``logical_id``'s handler under moto's in-process mock, counted from its first request.

    ``config``: a hub configuration of the section's own (the local one otherwise);
    ``faster_dynamodb``: local.moto_speed's shortcuts (same answers) for sections that read many items.
    """
    with moto_environment():
        from moto import mock_aws

        from fapiao_hub import runtime
        from local.atomic_moto import serialized_in_process
        from local.moto_speed import faster_dynamodb as faster
        from local.provision import provision

        with ExitStack() as stack:
            config_file = HUB_CONFIG
            if config is not None:
                config_file = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "hub-config.json"
                config_file.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
            stack.enter_context(mock_aws())
            stack.enter_context(serialized_in_process())
            if faster_dynamodb:
                stack.enter_context(faster())
            resources = provision(ROOT / "template.yaml", region=REGION)
            os.environ.update(resources.function_environment(logical_id, {"HUB_CONFIG_FILE": str(config_file)}))
            runtime.reset()
            counter = RequestCounter()
            counter.attach()
            yield InProcess(resources, load_handler(function_dir), counter, LambdaContext(logical_id))
            runtime.reset()


def local_hub_config() -> dict[str, Any]:
    """local/hub-config.json, for a section to change before :func:`function_in_moto`."""
    return json.loads(HUB_CONFIG.read_text(encoding="utf-8"))
