"""Run Lambda handlers in this process: module loading, context, environment, logging.

Every function of the template runs in one process, so three things Lambda gives each function
for free need care here:

* **Module identity.** Every handler file is ``functions/<name>/app.py``; each is loaded by file
  path under a unique module name (``_fapiao_fn_<LogicalId>_app``), never as ``app``.
* **Environment.** ``os.environ`` is process-wide, but each function has its own environment.
  :func:`apply_environments` splits the functions' environments: variables with the same value in
  every function (nearly all, thanks to the template's Globals) are set once in ``os.environ``;
  the rest (a function's own variables, or a variable whose value differs between functions) go
  into a per-function *overlay*. Only when overlays exist is ``os.environ`` replaced by
  :class:`ScopedEnviron`, which answers from the overlay of the function running in the current
  thread (a ``ContextVar``) and falls back to the process environment. A function never sees
  another function's own variables; importing a handler and every invocation run with that
  function's overlay active. Limitation: threads a handler starts itself begin with an empty
  context and see only the shared variables.
* **Concurrency.** Lambda runs one invocation per execution environment at a time, and handler
  modules rely on it. Each :class:`LocalFunction` therefore serialises its own invocations (one
  "container" per function); different functions run concurrently, except the functions invoked
  with API Gateway HTTP events: Powertools' HTTP resolvers keep the request being resolved on a
  class shared by every resolver in the process, so those functions take turns with each other
  (:data:`HTTP_RESOLVER_LOCK`).
* **Metrics.** With ``POWERTOOLS_METRICS_DISABLED`` (the local run's default) Powertools never
  clears the values its ``Metrics`` record, and prints them as an EMF blob once a metric holds 100
  values. :meth:`LocalFunction.invoke` discards them after each invocation instead.

Log lines carry the function's name: :class:`FunctionNameFilter` sets ``record.function_name`` from
the function running in the current thread (``local`` outside any). Every line, the functions' and
the run's own, is printed in one readable format (:class:`LocalFormatter`), which also keeps the keys
a function appends per thread, so that one function's keys never reach another's lines.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from local.template import FunctionSpec

log = logging.getLogger("local.runtime")

Handler = Callable[[Any, Any], Any]

current_function: ContextVar[str | None] = ContextVar("fapiao_local_function", default=None)
# The Lambda context of the invocation running in this thread, and whether it is a cold start.
current_invocation: ContextVar[tuple[LambdaContext, bool] | None] = ContextVar("fapiao_local_invocation", default=None)
_overlay: ContextVar[dict[str, str] | None] = ContextVar("fapiao_local_env_overlay", default=None)

# One lock for every function whose handler runs a Powertools HTTP resolver (the functions with
# HttpApi routes in the template: intake and callback). APIGatewayHttpResolver.resolve() stores the
# event on the class (BaseRouter.current_event and .lambda_context), not on the resolver, so
# all resolvers in the process share one "current request". In Lambda each function has its own
# process; here, were the intake and callback functions to run at once, one would read the other's
# request (a load test saw valid orders refused as "invoiceOrder is required" while a callback was
# being resolved). So these functions take turns with each other, as well as with themselves.
HTTP_RESOLVER_LOCK = threading.Lock()


# ------------------------------------------------------------------ Lambda context


class LambdaContext:
    """The parts of the Lambda context object handlers and Powertools use."""

    def __init__(
        self,
        function_name: str,
        *,
        memory_limit_in_mb: int = 128,
        timeout_seconds: float = 3,
        region: str = "us-east-1",
        account_id: str = "123456789012",
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account_id}:function:{function_name}"
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


# ------------------------------------------------------------------ environment


class ScopedEnviron(MutableMapping[str, str]):
    """``os.environ`` that answers from the current function's overlay first."""

    def __init__(self, base: MutableMapping[str, str]) -> None:
        self.base = base

    def __getitem__(self, key: str) -> str:
        overlay = _overlay.get()
        if overlay is not None and key in overlay:
            return overlay[key]
        return self.base[key]

    def __setitem__(self, key: str, value: str) -> None:
        overlay = _overlay.get()
        if overlay is not None and key in overlay:
            overlay[key] = value
        else:
            self.base[key] = value

    def __delitem__(self, key: str) -> None:
        overlay = _overlay.get()
        if overlay is not None and key in overlay:
            del overlay[key]
        else:
            del self.base[key]

    def __iter__(self) -> Iterator[str]:
        overlay = _overlay.get() or {}
        yield from overlay
        yield from (k for k in self.base if k not in overlay)

    def __len__(self) -> int:
        overlay = _overlay.get() or {}
        return len(overlay) + sum(1 for k in self.base if k not in overlay)

    def copy(self) -> dict[str, str]:
        return dict(self)

    def __repr__(self) -> str:
        return f"ScopedEnviron({dict(self)!r})"


class EnvironmentPlan:
    """What :func:`apply_environments` did, so :meth:`restore` can undo it."""

    def __init__(self, shared: dict[str, str], overlays: dict[str, dict[str, str]]) -> None:
        self.shared = shared
        self.overlays = overlays
        self._saved: dict[str, str | None] = {}
        self._original_environ: Any = None

    def apply(self) -> None:
        partial = {k for overlay in self.overlays.values() for k in overlay}
        for key in self.shared.keys() | partial:
            self._saved.setdefault(key, os.environ.get(key))
        for key in partial:
            os.environ.pop(key, None)  # only the functions that declare it may see it
        os.environ.update(self.shared)
        if any(self.overlays.values()) and not isinstance(os.environ, ScopedEnviron):
            self._original_environ = os.environ
            os.environ = ScopedEnviron(os.environ)  # type: ignore[assignment]  # noqa: B003 - on purpose

    def restore(self) -> None:
        if self._original_environ is not None:
            os.environ = self._original_environ  # noqa: B003 - put the original back
            self._original_environ = None
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved.clear()


def apply_environments(environments: Mapping[str, Mapping[str, str]]) -> EnvironmentPlan:
    """Set the variables all functions share; return the plan with each function's overlay."""
    envs = [dict(e) for e in environments.values()]
    shared: dict[str, str] = {}
    if envs:
        shared = {k: v for k, v in envs[0].items() if all(k in e and e[k] == v for e in envs[1:])}
    overlays = {name: {k: v for k, v in env.items() if k not in shared} for name, env in environments.items()}
    plan = EnvironmentPlan(shared, overlays)
    plan.apply()
    for name, overlay in overlays.items():
        if overlay:
            log.info("%s: function-specific variables %s", name, ", ".join(sorted(overlay)))
    return plan


@contextmanager
def function_scope(name: str, overlay: dict[str, str] | None) -> Iterator[None]:
    """Mark the current thread as running ``name`` with its environment overlay."""
    fn_token = current_function.set(name)
    env_token = _overlay.set(overlay) if overlay else None
    try:
        yield
    finally:
        if env_token is not None:
            _overlay.reset(env_token)
        current_function.reset(fn_token)


# ------------------------------------------------------------------ metrics


def find_metrics(module: Any) -> list[Any]:
    """The Powertools ``Metrics`` / ``EphemeralMetrics`` objects a handler module holds."""
    try:
        from aws_lambda_powertools.metrics import EphemeralMetrics, Metrics
    except ImportError:  # a handler without Powertools
        return []
    return [value for value in vars(module).values() if isinstance(value, Metrics | EphemeralMetrics)]


def discard_disabled_metrics(metrics: Sequence[Any]) -> None:
    """While metrics are disabled, drop what an invocation recorded.

    Powertools' ``flush_metrics`` (run by ``@metrics.log_metrics`` after each invocation) neither
    prints nor clears the values when metrics are disabled (``POWERTOOLS_METRICS_DISABLED``,
    ``POWERTOOLS_DEV``), yet ``add_metric`` prints the whole set as an EMF blob, disabled or not,
    once a metric holds 100 values: a busy local run printed ``{"_aws": ...}`` lines on stdout
    every hundredth dispatch or callback. Clearing after each invocation, as an enabled flush
    would, keeps the values from piling up. (``Metrics`` share their values class-wide, so this may
    drop values another function is recording at the same moment: they would not be printed anyway.)
    """
    if not metrics:
        return
    from aws_lambda_powertools.metrics.functions import is_metrics_disabled

    if is_metrics_disabled():
        for instance in metrics:
            instance.clear_metrics()


# ------------------------------------------------------------------ functions


class LocalFunction:
    """A handler plus what Lambda would give it: a context, its environment, one at a time."""

    def __init__(
        self,
        name: str,
        handler: Handler,
        *,
        timeout: float = 3,
        memory_size: int = 128,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        overlay: dict[str, str] | None = None,
        lock: threading.Lock | None = None,
        metrics: Sequence[Any] = (),
    ) -> None:
        """``lock``: shared with other functions that must not run at the same time as this one
        (:data:`HTTP_RESOLVER_LOCK`); by default a lock of its own. ``metrics``: the handler's
        Powertools ``Metrics``, whose values are discarded after each invocation while metrics are
        disabled (see :func:`discard_disabled_metrics`)."""
        self.name = name
        self.handler = handler
        self.timeout = timeout
        self.memory_size = memory_size
        self.region = region
        self.account_id = account_id
        self.overlay = overlay or {}
        self._lock = lock if lock is not None else threading.Lock()
        self.metrics = tuple(metrics)
        self._cold = True

    def context(self) -> LambdaContext:
        return LambdaContext(
            self.name,
            memory_limit_in_mb=self.memory_size,
            timeout_seconds=self.timeout,
            region=self.region,
            account_id=self.account_id,
        )

    def invoke(self, event: Any) -> Any:
        """Call the handler; exceptions propagate (callers map them as Lambda's caller would)."""
        with self._lock, function_scope(self.name, self.overlay):
            tag_log_handlers()  # loggers a handler creates lazily get the function name too
            context = self.context()
            invocation = current_invocation.set((context, self._cold))
            self._cold = False
            started = time.monotonic()
            try:
                return self.handler(event, context)
            finally:
                current_invocation.reset(invocation)
                discard_disabled_metrics(self.metrics)
                elapsed = time.monotonic() - started
                if elapsed > self.timeout:
                    log.warning(
                        "invocation took %.1fs, over the %ss timeout (Lambda would have cut it off)",
                        elapsed,
                        self.timeout,
                    )


def load_function(
    spec: FunctionSpec,
    root: Path,
    *,
    region: str,
    account_id: str,
    overlay: dict[str, str] | None = None,
) -> LocalFunction:
    """Import the handler of ``spec`` by file path, with its layers on sys.path."""
    if not spec.code_uri or not spec.handler:
        raise RuntimeError(f"{spec.logical_id}: no local CodeUri/Handler to load")
    for layer in spec.layers:
        layer_path = str((root / layer / "python").resolve())
        if layer_path not in sys.path:
            sys.path.insert(0, layer_path)
    module_path, _, attribute = spec.handler.rpartition(".")
    file = (root / spec.code_uri / Path(*module_path.split("."))).with_suffix(".py")
    if not file.is_file():
        raise FileNotFoundError(f"{spec.logical_id}: handler file {file} does not exist")
    module_name = f"_fapiao_fn_{spec.logical_id}_{module_path.replace('.', '_')}"
    module_spec = importlib.util.spec_from_file_location(module_name, file)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        with function_scope(spec.name, overlay):
            module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    handler = getattr(module, attribute)
    return LocalFunction(
        spec.name,
        handler,
        timeout=spec.timeout,
        memory_size=spec.memory_size,
        region=region,
        account_id=account_id,
        overlay=overlay,
        # Invoked with API Gateway HTTP events, so through a Powertools HTTP resolver: see HTTP_RESOLVER_LOCK.
        lock=HTTP_RESOLVER_LOCK if spec.http_routes else None,
        metrics=find_metrics(module),
    )


def unload_functions() -> None:
    for name in [n for n in sys.modules if n.startswith("_fapiao_fn_")]:
        del sys.modules[name]


# ------------------------------------------------------------------ logging

# Keys every line has (or that say nothing locally): left out of the readable line.
_QUIET_KEYS = frozenset({
    "timestamp", "level", "message", "function_name", "location", "service", "sampling_rate", "cold_start",
    "function_memory_size", "function_arn", "function_request_id", "xray_trace_id", "source_system",
})  # fmt: skip


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return json.dumps(text, ensure_ascii=False) if not text or any(c.isspace() or c == '"' for c in text) else text


class LocalFormatter(LambdaPowertoolsFormatter):
    """The local run's one line format, for the functions' Powertools loggers and its own alike.

    ``time level function code=<openApplyCode> request=<request number> message key=value ...``
    (the code and request number when the line is about an application). Lambda keeps Powertools'
    JSON; this is for a person reading a console.

    Keys appended to a Powertools logger live in its formatter, and every function shares the one
    logger of the service: locally, functions running side by side would print each other's keys
    (an application's code on another's line). Here every key a function appends is kept per
    thread (Powertools' thread-safe keys), so each invocation sees only its own.
    """

    def __init__(self) -> None:
        super().__init__(datefmt="%Y-%m-%d %H:%M:%S,%F", serialize_stacktrace=False)

    def append_keys(self, **additional_keys: Any) -> None:
        self.thread_safe_append_keys(**additional_keys)

    def remove_keys(self, keys: Any) -> None:
        self.thread_safe_remove_keys(keys)

    def clear_state(self) -> None:
        self.thread_safe_clear_keys()

    def get_current_keys(self) -> dict[str, Any]:
        return {**self.log_format, **self.thread_safe_get_current_keys()}

    def serialize(self, log: dict[str, Any]) -> str:
        code = log.get("open_apply_code")
        head = f"{log.get('timestamp', '')} {log.get('level', ''):<7} {log.get('function_name', 'local'):<28}"
        if code:
            head += f" code={_value(code)}"
            if log.get("request_number"):
                head += f" request={_value(log['request_number'])}"
        exception = log.pop("exception", None)
        log.pop("exception_name", None)
        skip = _QUIET_KEYS | {"open_apply_code", "request_number"}
        if log.get("correlation_id") == code:
            skip |= {"correlation_id"}
        pairs = " ".join(f"{k}={_value(v)}" for k, v in log.items() if k not in skip)
        line = f"{head} {log.get('message', '')}" + (f"  {pairs}" if pairs else "")
        return f"{line}\n{exception}" if exception else line


class FunctionNameFilter(logging.Filter):
    """Stamps each record with the function (and invocation) running in the current thread.

    The function handlers share the layer's Powertools logger (one per service name), whose
    formatter holds the keys ``inject_lambda_context`` appends: with functions running side by
    side those would name whichever function was invoked last. The record attributes set here
    take precedence in Powertools' output, so the Lambda context keys stay right.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "function_name"):
            record.function_name = current_function.get() or "local"
        invocation = current_invocation.get()
        if invocation is not None and not hasattr(record, "function_request_id"):
            context, cold_start = invocation
            record.function_request_id = context.aws_request_id
            record.function_arn = context.invoked_function_arn
            record.function_memory_size = context.memory_limit_in_mb
            record.cold_start = cold_start
        return True


_FILTER = FunctionNameFilter()
_FORMATTER = LocalFormatter()


def setup_logging(level: int = logging.INFO, stream: Any = None) -> None:
    """One stream (stdout, where Powertools loggers write too), one line format (:class:`LocalFormatter`)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(_FORMATTER)
    handler.addFilter(_FILTER)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # a stray warning is a log line too, not raw text on stderr
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def tag_log_handlers() -> None:
    """Every handler now attached (Powertools' included): the function-name filter, and the local
    format with per-thread keys in place of Powertools' formatter."""
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        for handler in lg.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
            if isinstance(handler.formatter, LambdaPowertoolsFormatter) and handler.formatter is not _FORMATTER:
                handler.setFormatter(_FORMATTER)
