"""Which application a log line is about: its code and request number on every line, set at the boundary.

Each function's handler sets the keys where work on one application begins (an SQS record, a
pushed result, an accepted order) and removes them where it ends, so every line in between, the
layer's and the channels' alike, names that application, and no line names another. The keys are
Powertools' *thread-safe* keys (a ContextVar): in Lambda, where one invocation runs at a time,
that is the same as ordinary keys; in the local run, where every function runs in threads of one
process and shares one Powertools logger, a thread never sees another's application.

``correlation_id`` is the application's code too (docs/operations.md: search by it).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools.logging.formatter import remove_context_keys, set_context_keys

KEYS = ("correlation_id", "open_apply_code", "request_number", "source_system")

# Powertools warns on every invocation that recorded no metric (the notifier's run with nothing to
# deliver, an intake 401): not a fault, and raw text in a log that is otherwise one line per event.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


def keys_for(source_system: str, open_apply_code: str, request_number: str | None = None) -> dict[str, str]:
    """The keys naming one application; its request number as the caller passes it (the stored one:
    drawn at random at intake, it cannot be derived here), or none until it is known (name_request)."""
    keys = {"correlation_id": open_apply_code, "open_apply_code": open_apply_code, "source_system": source_system}
    if request_number:
        keys["request_number"] = request_number
    return keys


def name_request(request_number: str) -> None:
    """The application named by set_application was read: its lines name its request number from here on."""
    set_context_keys(request_number=request_number)


def set_application(source_system: str, open_apply_code: str, request_number: str | None = None) -> None:
    """Name the application on every further line of this invocation (until ``clear_state``).

    Powertools' thread-safe keys (what ``Logger.thread_safe_append_keys`` sets), whichever logger logs.
    """
    set_context_keys(**keys_for(source_system, open_apply_code, request_number))


def clear_application() -> None:
    remove_context_keys(KEYS)


@contextmanager
def application(source_system: str, open_apply_code: str, request_number: str | None = None) -> Iterator[None]:
    """Lines logged inside name this application; after it, none does (per record, per result)."""
    set_application(source_system, open_apply_code, request_number)
    try:
        yield
    finally:
        clear_application()


def install(logger: Any) -> None:
    """The layer's plain ``logging`` loggers (the channels') write through ``logger``'s handler.

    In Lambda they would otherwise reach the runtime's own text handler, without the keys above.
    Idempotent (every function calls it at import).
    """
    handler = logger.registered_handler
    layer = logging.getLogger("fapiao_hub")
    if handler not in layer.handlers:
        layer.addHandler(handler)
    layer.setLevel(logger.log_level)
    layer.propagate = False
