"""Cold start: each function imports only what it uses (issue 7; docs/benchmarks.md section 3).

Each handler is imported in a fresh interpreter with a Lambda's environment (Powertools' Tracer on,
as with ``Tracing: Active``), then the runtime factories its first request calls are run, as
bench/coldstart.py does; the modules it loaded must not include what the function never uses: the
notifier and its HTTP client, the channels, callback authentication, Powertools' batch utility
(where the function consumes no queue)...
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# What each function's first request builds, and a Lambda's environment: the benchmark's own.
from bench.coldstart import FUNCTIONS, LAYER_SOURCE, ROOT, lambda_environment

SCRIPT = """
import json, sys
sys.path[:0] = [{task!r}, {layer!r}]
import app
if {factories!r}:
    from fapiao_hub import runtime
    for name in {factories!r}:
        getattr(runtime, name)()
print(json.dumps(sorted(sys.modules)))
"""

CHANNEL_MODULES = ["fapiao_hub.channels.xunlian", "fapiao_hub.channels.partner", "fapiao_hub.channels.kingdee"]
BATCH_UTILITY = "aws_lambda_powertools.utilities.batch"  # builds Powertools' parser models at import

# Modules (and their submodules) a function must not load at cold start.
NOT_LOADED = {
    # No outbound HTTP but AWS: no requests (X-Ray patches the AWS SDK only), no channels at all.
    "intake": [
        "requests", "fapiao_hub.usecases.notify", "fapiao_hub.usecases.notifications", "fapiao_hub.channels",
        "fapiao_hub.usecases.callback_auth",
        BATCH_UTILITY,
    ],
    "poller": [
        "requests", "fapiao_hub.usecases.notify", "fapiao_hub.usecases.notifications", "fapiao_hub.channels",
        "fapiao_hub.usecases.callback_auth",
        "fapiao_hub.infra.files",  # the store's S3 overflow is built on first use: no S3 client
        "aws_lambda_powertools.event_handler", BATCH_UTILITY,
    ],
    "dispatch": ["fapiao_hub.usecases.notify", "fapiao_hub.usecases.notifications", *CHANNEL_MODULES],
    "callback": ["fapiao_hub.usecases.notify", "fapiao_hub.usecases.notifications", *CHANNEL_MODULES, BATCH_UTILITY],
    "notifier": [
        "fapiao_hub.channels.registry", *CHANNEL_MODULES, "fapiao_hub.usecases.callback_auth", "fapiao_hub.infra.files",
    ],
    # Static files: the standard library only (no SDK, no Powertools, not even the hub's package).
    "console": ["fapiao_hub", "boto3", "botocore", "aws_lambda_powertools", "aws_xray_sdk", "requests", "pydantic"],
    # Channels are built when a run first asks one; no workflow, queue or event bus.
    "reconciliation": [
        "fapiao_hub.usecases.notify", "fapiao_hub.usecases.notifications", *CHANNEL_MODULES,
        "fapiao_hub.usecases.callback_auth",
        "fapiao_hub.usecases.dispatch", "fapiao_hub.infra.events", "fapiao_hub.infra.queues",
        "aws_lambda_powertools.event_handler", BATCH_UTILITY,
    ],
    # Reads and lists: the operations use case (workflow, channels, notifier) only when an operator acts.
    "ops": [
        "requests", "fapiao_hub.usecases.notify", "fapiao_hub.usecases.notifications", *CHANNEL_MODULES,
        "fapiao_hub.usecases.callback_auth",
        "fapiao_hub.usecases.operations", "fapiao_hub.usecases.resolutions", "fapiao_hub.usecases.action_checks",
        "fapiao_hub.usecases.dispatch", BATCH_UTILITY,
    ],
}  # fmt: skip


def cold_start_modules(function: str) -> set[str]:
    factories = FUNCTIONS[function]["factories"]
    script = SCRIPT.format(task=str(ROOT / "functions" / function), layer=str(LAYER_SOURCE), factories=factories)
    done = subprocess.run(  # noqa: S603 (this interpreter, our own script)
        [sys.executable, "-c", script],
        env=lambda_environment(function),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_a_cold_start_loads_only_what_the_function_uses(function: str) -> None:
    modules = cold_start_modules(function)
    if FUNCTIONS[function]["factories"]:
        assert "fapiao_hub.runtime" in modules and "fapiao_hub.infra.store" in modules
        # The Tracer was on (as in Lambda), so what it patches counts.
        assert "aws_xray_sdk.ext.botocore" in modules
    unwanted = tuple(NOT_LOADED[function])
    loaded = sorted(name for name in modules if name in unwanted or name.startswith(tuple(u + "." for u in unwanted)))
    assert loaded == [], f"the {function} function's cold start loads {loaded}"
