"""The local run (``make run``, ``python -m local.run``): the whole hub on 127.0.0.1.

1. a moto server on 127.0.0.1 (``MOTO_PORT``, default: a free port), with fake credentials and
   ``AWS_ENDPOINT_URL`` set for this process (a developer's own AWS profile and endpoint settings
   are masked, so nothing leaves the machine);
2. tables, queues, bucket, bus and rules provisioned from template.yaml (local.provision);
3. the hub configuration: local/hub-config.json (the committed sample) with a fresh random bearer
   token's SHA-256, written to ``<state>/hub-config.json`` and given to the functions as
   ``HUB_CONFIG_FILE`` (instead of the SSM parameter);
4. every function's handler imported by file path with its template environment
   (local.runtime explains how per-function environments share one process);
5. the HTTP API on http://127.0.0.1:${API_PORT:-3000} (payload v2.0 events, local.gateway) and
   pumps for SQS event sources, EventBridge rules and rate schedules (local.pumps);
6. ``<state>/local.json`` with the API URL, token, operator token (``operator_token``: the local
   operator's, role ``operator``), moto endpoint, region and resource names,
   written once everything is up (and removed on a clean stop).

``<state>`` is ``.fapiao-hub/`` in the repository unless ``FAPIAO_HUB_STATE_DIR`` says otherwise;
``FAPIAO_HUB_LOCAL_CONFIG`` names another hub configuration than the sample (tests use it).
The operations console is at ``<api>/ops/``; it signs in by itself through ``GET /ops/local-session``
(:class:`LocalSession`, local run only).
Ctrl-C (SIGINT) or SIGTERM stops the HTTP server, the pumps and moto, and exits 0.

``make run`` keeps its state across a restart (local.state): tables, files, the channel sandboxes'
records and the token are saved under ``<state>/saved/`` on a clean stop and every
``FAPIAO_HUB_SAVE_SECONDS`` (30), and restored at the next start; ``FAPIAO_HUB_FRESH=1``
(``make run FRESH=1``) starts empty (sandboxes too), with a new token.

The daily reconciliation fires every ``LOCAL_RECONCILIATION_SECONDS`` (300) locally, and at once on
``POST /ops/local-reconcile`` with the operator token (:class:`LocalReconcile`, ``fapiao-hub ops reconcile``).

Tests use :func:`start`, which returns a :class:`LocalHub` (a context manager).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from local.gateway import HttpApiGateway, Route
from local.provision import DEFAULT_PREFIX, DEFAULT_REGION, Resources, provision
from local.pumps import BridgePump, Pump, SchedulePump, SqsPump
from local.runtime import (
    EnvironmentPlan,
    LocalFunction,
    apply_environments,
    load_function,
    setup_logging,
    tag_log_handlers,
    unload_functions,
)
from local.state import SAVE_SECONDS, LocalState, PeriodicSave, forget, fresh_requested, saved_token

log = logging.getLogger("local.run")

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
SAMPLE_HUB_CONFIG = Path(__file__).resolve().parent / "hub-config.json"
LOCAL_SYSTEM = "sample-erp"  # the business system the generated token belongs to
LOCAL_OPERATOR = "local-operator"  # the operator (role "operator") the generated operator token belongs to
HOST = "127.0.0.1"

# Masked for the run: they would send boto3 to a real account or another endpoint.
_MASKED_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)


def state_dir_default() -> Path:
    return Path(os.environ.get("FAPIAO_HUB_STATE_DIR") or ROOT / ".fapiao-hub")


def _start_xunlian(channel: dict[str, Any]) -> Any:
    from sandbox import xunlian

    return xunlian.run(host=HOST, port=0)


def _start_partner(channel: dict[str, Any]) -> Any:
    import requests

    from sandbox import partner

    credentials = channel["credentials"]
    server = partner.run(
        host=HOST, port=0, client_id=credentials["client_id"], client_secret=credentials["client_secret"]
    )
    # Every application the hub asks about is known ("applied"), then issued two seconds later.
    config = {"auto": True, "issue_after_ms": 2000, "invoices_per_application": 1}
    requests.post(f"{server.base_url}/_sandbox/config", json=config, timeout=5).raise_for_status()
    return server


def _start_kingdee(channel: dict[str, Any]) -> Any:
    from sandbox import kingdee

    return kingdee.run(host=HOST, port=0, access_token=channel["credentials"]["access_token"], issue_delay_ms=2000)


def _start_ekuaibao(channel: dict[str, Any]) -> Any:
    from sandbox import ekuaibao

    credentials = channel["credentials"]
    return ekuaibao.run(
        host=HOST, port=0, access_token=credentials["access_token"], hmac_secret=credentials.get("hmac_secret")
    )


# Channel type -> how to start its sandbox (a "base_url": "sandbox" in the sample configuration).
SANDBOXES = {
    "xunlian": _start_xunlian,
    "partner": _start_partner,
    "kingdee": _start_kingdee,
    "ekuaibao": _start_ekuaibao,
}
# Channels that push their results (the sandbox needs the hub's callback URL).
PUSHING = {"ekuaibao"}
# Scheduled functions fire this often locally (rate(1 minute) in AWS), so a demo does not wait.
LOCAL_SCHEDULE_SECONDS = float(os.environ.get("LOCAL_SCHEDULE_SECONDS", "5"))
# The daily reconciliation (template.yaml ReconciliationSchedule) fires every few minutes locally
# (not every few seconds: each run re-asks the channels about every application of its window, and a
# developer reads its findings between runs); LOCAL_RECONCILIATION_SECONDS changes it (tests: 1).
LOCAL_RECONCILIATION_SECONDS = float(os.environ.get("LOCAL_RECONCILIATION_SECONDS", "300"))


def local_schedule_seconds(function_logical_id: str) -> float:
    """How often a scheduled function fires in the local run (whatever its rate says in AWS)."""
    if function_logical_id == "ReconciliationFunction":
        return max(LOCAL_SCHEDULE_SECONDS, LOCAL_RECONCILIATION_SECONDS)
    return LOCAL_SCHEDULE_SECONDS


def start_sandboxes(config: dict[str, Any]) -> dict[str, Any]:
    """Start a sandbox for every channel whose base_url is "sandbox"; point the channel at it."""
    started = {}
    for name, channel in (config.get("channels") or {}).items():
        if channel.get("base_url") != "sandbox":
            continue
        started[name] = SANDBOXES[channel["type"]](channel)
        channel["base_url"] = started[name].base_url
        # The sandbox serves its invoice files over plain http on loopback: allowed for it alone.
        channel["file_hosts"] = [*channel.get("file_hosts", []), started[name].base_url]
        log.info("sandbox %s (%s) on %s", name, channel["type"], started[name].base_url)
    return started


def start_receivers(config: dict[str, Any]) -> dict[str, Any]:
    """A webhook receiver for every business system whose webhook url is "sandbox"."""
    from sandbox import receiver

    started = {}
    for name, system in (config.get("business_systems") or {}).items():
        webhook = system.get("webhook")
        if webhook and webhook.get("url") == "sandbox":
            started[name] = receiver.run(host=HOST, port=0, secret=webhook.get("secret"))
            webhook["url"] = started[name].url
            log.info("webhook receiver of %s on %s", name, started[name].url)
    return started


class OutOfBandForwarder(Pump):
    """Hands SUBMITTED applications of pushing channels to their sandbox.

    Such channels (Ekuaibao) receive applications outside the hub's API: the business's own
    integration hands them over. Locally this thread plays that part, once per application.

    It reads the sparse ``due-work`` index (only open applications carry ``due_bucket``), so its
    cost follows the open work, not the table. The index projects keys, source system and code
    only, so status, channel and request number of the open applications not yet settled are read
    from the table (BatchGetItem). Settled: handed over, or routed to a channel that does not push
    (an application's channel is set at intake); they are not read again while they stay open.
    """

    idle_wait = 1.0
    index = "due-work"  # template.yaml, ApplicationsTable; fapiao_hub.infra.store.polling.DueWork.due reads it too

    def __init__(
        self,
        dynamodb: Any,
        table: str,
        sandboxes: dict[str, Any],
        order_for: Callable[[str, str], dict[str, Any] | None],
    ) -> None:
        from fapiao_hub.infra.store.polling import DUE_BUCKET

        super().__init__("out-of-band forwarder")
        self._dynamodb = dynamodb
        self._table = table
        # (source system, code) -> the stored application in the channel's hand-over shape: the
        # sandbox issues what it is handed, as the vendor would.
        self._order_for = order_for
        self._sandboxes = sandboxes
        self._due_bucket = DUE_BUCKET
        self._forwarded: set[str] = set()  # request numbers handed over (once each)
        self._settled: set[str] = set()  # keys of open applications that need no further look

    def poll_once(self) -> int:
        forwarded = 0
        open_keys = self._open_keys()
        self._settled &= set(open_keys)  # closed ones left the index: forget them
        for item in self._read([key for key in open_keys if key not in self._settled]):
            key = item["pk"]["S"]
            channel = item.get("channel", {}).get("S")
            number = item.get("request_number", {}).get("S")
            if channel is not None and channel not in self._sandboxes:
                self._settled.add(key)  # another channel's, for good
            elif item.get("status", {}).get("S") == "SUBMITTED" and channel and number:
                if number not in self._forwarded:
                    order = self._order_for(item["source_system"]["S"], item["open_apply_code"]["S"])
                    self._sandboxes[channel].submit(number, order=order)
                    self._forwarded.add(number)
                    forwarded += 1
                self._settled.add(key)
        self._stop_event.wait(self.idle_wait)
        return forwarded

    def _open_keys(self) -> list[str]:
        """The table keys of every open application, from the sparse index."""
        pages = self._dynamodb.get_paginator("query").paginate(
            TableName=self._table,
            IndexName=self.index,
            KeyConditionExpression="due_bucket = :open",
            ExpressionAttributeValues={":open": {"S": self._due_bucket}},
            ProjectionExpression="pk",
        )
        return [item["pk"]["S"] for page in pages for item in page["Items"]]

    def _read(self, keys: list[str]) -> list[dict[str, Any]]:
        """Status, channel and request number of ``keys`` (the index does not project them)."""
        items: list[dict[str, Any]] = []
        for start in range(0, len(keys), 100):  # BatchGetItem takes at most 100 keys
            request: dict[str, Any] = {
                self._table: {
                    "Keys": [{"pk": {"S": key}} for key in keys[start : start + 100]],
                    "ProjectionExpression": "pk, #s, channel, request_number, source_system, open_apply_code",
                    "ExpressionAttributeNames": {"#s": "status"},
                }
            }
            while request and not self.stopping:
                answer = self._dynamodb.batch_get_item(RequestItems=request)
                items += answer.get("Responses", {}).get(self._table, [])
                request = answer.get("UnprocessedKeys") or {}
        return items


def _hand_over_order(store: Any, source_system: str, open_apply_code: str) -> dict[str, Any] | None:
    from fapiao_hub.channels.ekuaibao import hand_over

    stored = store.get(source_system, open_apply_code)
    return hand_over(stored.application) if stored is not None else None


class ApiDocs:
    """Local run only: ``GET /swagger`` (Swagger UI, no CDN) and ``GET /openapi.json`` (fapiao_hub.api.openapi)."""

    name = "api-docs"
    PATHS = ("/swagger", "/openapi.json")

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        from fapiao_hub.api import openapi

        query = event.get("queryStringParameters") or {}
        if event["rawPath"] == "/openapi.json" or query.get("format") == "json":  # Swagger UI links ?format=json
            return {
                "statusCode": 200,
                "headers": {"content-type": "application/json"},
                "body": openapi.to_json(openapi.document()),
            }
        return {
            "statusCode": 200,
            "headers": {"content-type": "text/html; charset=utf-8"},
            "body": openapi.swagger_html(),
        }


class LocalSession:
    """Local run only: ``GET /ops/local-session`` answers ``{"token": <operator token>}``, so the console
    opened from ``make run`` signs in by itself (docs/operations.md, Console).

    The token is read from local.json (``operator_token``) at each request, never put in the page or a
    URL. Answered only to the console's own origin: the Host must be the loopback address (a DNS
    rebinding page names its own host), and a browser's fetch metadata, when sent, must say
    same-origin. The answer is never cached. In AWS this route does not exist (the console asks
    for a token instead).
    """

    name = "local-session"
    PATH = "/ops/local-session"
    _HOSTS = ("127.0.0.1", "localhost")

    def __init__(self, local_json: Path) -> None:
        self._local_json = local_json

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        headers = event.get("headers") or {}
        host = str(headers.get("host", "")).rsplit(":", 1)[0]
        site = headers.get("sec-fetch-site")
        if host not in self._HOSTS or (site is not None and site != "same-origin"):
            return self._answer(403, {"message": "the local session is for the console on 127.0.0.1 only"})
        try:
            token = json.loads(self._local_json.read_text(encoding="utf-8")).get("operator_token")
        except (OSError, ValueError):
            token = None
        if not isinstance(token, str) or not token:
            return self._answer(404, {"message": "no operator token in local.json"})
        return self._answer(200, {"token": token})

    @staticmethod
    def _answer(status: int, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "statusCode": status,
            "headers": {"content-type": "application/json", "cache-control": "no-store",
                        "x-content-type-options": "nosniff"},
            "body": json.dumps(body),
        }  # fmt: skip


class LocalReconcile:
    """Local run only: ``POST /ops/local-reconcile`` runs the reconciliation now and answers its summary
    (``fapiao-hub ops reconcile``), rather than waiting for the next ``LOCAL_RECONCILIATION_SECONDS``.

    An operator's act: the bearer token must be the local operator's (local.json ``operator_token``,
    read at each request), and the Host the loopback address, as for :class:`LocalSession`. In AWS
    this route does not exist: an operator invokes ReconciliationFunction itself (its handler takes
    ``{"window": {"from", "to"}}`` for another window than the day's).
    """

    name = "local-reconcile"
    PATH = "/ops/local-reconcile"

    def __init__(self, local_json: Path, reconciliation: Any) -> None:
        self._local_json = local_json
        self._reconciliation = reconciliation

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        import hmac

        headers = event.get("headers") or {}
        if str(headers.get("host", "")).rsplit(":", 1)[0] not in LocalSession._HOSTS:
            return LocalSession._answer(403, {"success": False, "message": "the local run's own address only"})
        try:
            expected = json.loads(self._local_json.read_text(encoding="utf-8")).get("operator_token")
        except (OSError, ValueError):
            expected = None
        given = str(headers.get("authorization", "")).removeprefix("Bearer ").strip()
        if not isinstance(expected, str) or not expected or not hmac.compare_digest(given, expected):
            return LocalSession._answer(401, {"success": False, "message": "the local operator's token is required"})
        summary = self._reconciliation.invoke({})
        return LocalSession._answer(200, {"success": True, "message": "reconciliation run", "data": summary})


def console_url(api_url: str) -> str:
    """The operations console of a run whose API is at ``api_url``."""
    return f"{api_url}/ops/"


def write_hub_config(
    sample: Path,
    target: Path,
    token: str,
    config: dict[str, Any] | None = None,
    operator_token: str | None = None,
) -> Path:
    """The sample configuration with ``token``'s SHA-256 for the local business system, and
    ``operator_token``'s for the local operator (role ``operator``, every business system)."""
    from fapiao_hub.domain.config import HubConfig, token_sha256

    config = config if config is not None else json.loads(sample.read_text(encoding="utf-8"))
    systems = config.get("business_systems") or {}
    if LOCAL_SYSTEM not in systems:
        raise RuntimeError(f"{sample} has no business system {LOCAL_SYSTEM!r}")
    systems[LOCAL_SYSTEM]["token_sha256"] = [token_sha256(token)]
    if operator_token:
        config.setdefault("operators", {})[LOCAL_OPERATOR] = {
            "token_sha256": [token_sha256(operator_token)],
            "role": "operator",
        }
    HubConfig.model_validate(config)  # fail here, not in the first request
    _write_private(target, json.dumps(config, ensure_ascii=False, indent=2))
    return target


def _write_private(path: Path, text: str) -> None:
    """Write atomically, readable by the owner only (the files hold a bearer token)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    os.replace(tmp, path)


class _ProcessEnv:
    """Changes to os.environ made by the run, undone by :meth:`restore`."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def set(self, key: str, value: str | None) -> None:
        self._saved.setdefault(key, os.environ.get(key))
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value

    def restore(self) -> None:
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved.clear()


@dataclass
class LocalHub:
    api_url: str
    token: str
    aws_endpoint_url: str
    region: str
    state_dir: Path
    local_json: Path
    resources: Resources
    functions: dict[str, LocalFunction]
    gateway: HttpApiGateway
    pumps: list[Pump] = field(default_factory=list)
    _moto: Any = None
    _sandboxes: dict[str, Any] = field(default_factory=dict)
    _env_plan: EnvironmentPlan | None = None
    _process_env: _ProcessEnv | None = None
    _state: LocalState | None = None
    _stopped: bool = False

    def stop(self) -> None:
        """Stop the HTTP server and the pumps, save the state (when kept), stop moto; undo the environment changes."""
        if self._stopped:
            return
        self._stopped = True
        _shutdown(self.gateway, self.pumps, self._env_plan, self._process_env, self._moto, self._sandboxes, self._state)
        self.local_json.unlink(missing_ok=True)
        log.info("stopped")

    def __enter__(self) -> LocalHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _shutdown(
    gateway: HttpApiGateway | None,
    pumps: list[Pump],
    env_plan: EnvironmentPlan | None,
    process_env: _ProcessEnv | None,
    moto: Any,
    sandboxes: dict[str, Any] | None = None,
    state: LocalState | None = None,
) -> None:
    if gateway is not None:
        gateway.stop()
    for pump in pumps:
        pump._stop_event.set()
    for pump in pumps:
        pump.stop()
    if state is not None:  # nothing writes any more; moto is still up
        try:
            log.info("saved %s to %s", state.save(), state.dir)
        except Exception:
            log.exception("could not save the state to %s; the last save stands", state.dir)
    unload_functions()
    if env_plan is not None:
        env_plan.restore()
    if process_env is not None:
        process_env.restore()
    if moto is not None:
        moto.stop()
    for sandbox in (sandboxes or {}).values():
        sandbox.shutdown()


def _channel_info(config: dict[str, Any], sandboxes: dict[str, Any], api_url: str) -> dict[str, Any]:
    """Per sandbox channel: a company code routed to it, the sandbox's URL, and for pushing
    channels the hub's callback URL and the local credentials (for scripts)."""
    info: dict[str, Any] = {}
    for name, sandbox in sandboxes.items():
        channel = config["channels"][name]
        # A company whose first choice is this channel (its orders go there), else any that lists it.
        listing = [
            (code, company.get("channels") or ([company["channel"]] if company.get("channel") else []))
            for system in config["business_systems"].values()
            for code, company in system.get("companies", {}).items()
        ]
        companies = [code for code, names in listing if names[:1] == [name]]
        companies += [code for code, names in listing if name in names[1:]]
        info[name] = {"type": channel["type"], "company_code": companies[0] if companies else None,
                      "base_url": sandbox.base_url}  # fmt: skip
        if channel["type"] in PUSHING:
            info[name]["callback_url"] = f"{api_url}/v1/callbacks/{name}"
            info[name]["credentials"] = channel.get("credentials", {})
    return info


def _derive_request_numbers() -> None:
    """LOCAL_DERIVED_REQUEST_NUMBERS set: intake gives new applications the old derived request number
    (models.request_number_for) instead of a random one, so that a test can script a sandbox's faults
    for an application's number before sending the order. Computable numbers are what issue 18 took
    away: only for tests, never in AWS (the Lambda's composition root has no such switch)."""
    from functools import cache

    from fapiao_hub import runtime
    from fapiao_hub.domain.models import request_number_for
    from fapiao_hub.usecases.intake import Intake

    @cache
    def intake() -> Intake:
        return Intake(runtime.application_store(), runtime.dispatch_queue(), request_numbers=request_number_for)

    runtime.intake = intake  # type: ignore[assignment]
    log.warning("LOCAL_DERIVED_REQUEST_NUMBERS: request numbers are derived from the application key (tests only)")


def start(
    api_port: int = 0,
    *,
    moto_port: int = 0,
    state_dir: str | Path | None = None,
    template_path: str | Path = TEMPLATE,
    hub_config: str | Path = SAMPLE_HUB_CONFIG,
    region: str = DEFAULT_REGION,
    parameters: dict[str, Any] | None = None,
    prefix: str = DEFAULT_PREFIX,
    token: str | None = None,
    moto_process: bool = False,
    keep_state: bool = False,
) -> LocalHub:
    """Start everything (see the module docstring); ``stop()`` the result, or use ``with``.

    ``moto_process``: moto in a child process of its own (local.atomic_moto.MotoProcess) rather than
    in this one; the soak runs so, to give moto a core of its own. ``keep_state``: restore what the
    last run saved in ``<state>/saved/`` and save there (local.state), as ``make run`` does;
    ``FAPIAO_HUB_FRESH`` set forgets it first.
    """
    import boto3

    from local.atomic_moto import AtomicMotoServer, MotoProcess

    state = Path(state_dir) if state_dir is not None else state_dir_default()
    state.mkdir(parents=True, exist_ok=True)
    local_json = state / "local.json"
    local_json.unlink(missing_ok=True)
    template_path = Path(template_path)
    root = template_path.resolve().parent

    moto = None
    sandboxes: dict[str, Any] = {}
    helpers: dict[str, Any] = {}  # sandboxes and receivers, stopped with the run
    gateway = None
    pumps: list[Pump] = []
    env_plan = None
    local_state = None
    process_env = _ProcessEnv()
    if keep_state and fresh_requested():
        forget(state)
        log.info("FAPIAO_HUB_FRESH: starting empty, with a new token (%s deleted)", state / "saved")
    token = token or (saved_token(state) if keep_state else None) or secrets.token_urlsafe(32)
    operator_token = (saved_token(state, "operator-token") if keep_state else None) or secrets.token_urlsafe(32)
    try:
        moto = (MotoProcess if moto_process else AtomicMotoServer)(HOST, moto_port).start()
        endpoint = "http://{}:{}".format(*moto.get_host_and_port())
        log.info("moto server on %s", endpoint)

        for key in [*_MASKED_AWS_VARIABLES, *(k for k in os.environ if k.startswith("AWS_ENDPOINT_URL_"))]:
            process_env.set(key, None)
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_ENDPOINT_URL": endpoint,
            # No shared config/credentials files: nothing in ~/.aws may redirect the run.
            "AWS_CONFIG_FILE": str(state / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(state / "no-aws-credentials"),
        }.items():
            process_env.set(key, value)

        resources = provision(
            template_path,
            session=boto3.Session(),
            endpoint_url=endpoint,
            region=region,
            parameters=parameters,
            prefix=prefix,
        )
        if keep_state:
            local_state = LocalState(state, resources, boto3.Session(), endpoint, region, token, operator_token)
            restored = local_state.restore()
            if restored is None:
                local_state.save()  # the token, at once: a hard kill before the first save keeps it
                log.info("nothing saved in %s: starting empty", local_state.dir)
            else:
                log.info("restored %s from %s", restored, local_state.dir)
        if os.environ.get("LOCAL_DERIVED_REQUEST_NUMBERS"):
            _derive_request_numbers()
        config_document = json.loads(Path(hub_config).read_text(encoding="utf-8"))
        sandboxes = start_sandboxes(config_document)
        receivers = start_receivers(config_document)
        helpers.update(sandboxes)
        helpers.update({f"receiver:{name}": r for name, r in receivers.items()})
        hub_config_file = write_hub_config(
            Path(hub_config), state / "hub-config.json", token, config_document, operator_token=operator_token
        )

        specs = resources.functions()
        extra = {
            "HUB_CONFIG_FILE": str(hub_config_file),
            "HUB_CONFIG_PARAMETER": None,  # the file replaces the SSM parameter locally
            "AWS_ENDPOINT_URL": endpoint,  # the template declares it empty (AWS's own endpoints)
            "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
            # EMF metric blobs are print()ed without the function's name; CloudWatch is not here.
            "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "true"),
        }
        environments = {spec.name: resources.function_environment(lid, extra) for lid, spec in specs.items()}
        env_plan = apply_environments(environments)

        functions: dict[str, LocalFunction] = {}
        for lid, spec in specs.items():
            functions[lid] = load_function(
                spec,
                root,
                region=region,
                account_id=resources.account_id,
                overlay=env_plan.overlays.get(spec.name),
            )
            log.info("loaded %s (%s/%s)", spec.name, spec.code_uri, spec.handler)
        tag_log_handlers()

        routes = [
            Route(route.method, route.path, functions[lid]) for lid, spec in specs.items() for route in spec.http_routes
        ]
        routes += [Route("GET", path, ApiDocs()) for path in ApiDocs.PATHS]
        routes.append(Route("GET", LocalSession.PATH, LocalSession(local_json)))
        if "ReconciliationFunction" in functions:
            reconcile = LocalReconcile(local_json, functions["ReconciliationFunction"])
            routes.append(Route("POST", LocalReconcile.PATH, reconcile))
        gateway = HttpApiGateway(routes, port=api_port, account_id=resources.account_id).start()
        for name, sandbox in sandboxes.items():
            if config_document["channels"][name]["type"] in PUSHING:
                sandbox.callback_url = f"{gateway.url}/v1/callbacks/{name}"
        if local_state is not None:  # before any dispatch; pushes still pending need the callback URL
            restored_sandboxes = local_state.restore_sandboxes(sandboxes)
            if restored_sandboxes:
                where = local_state.dir / "sandboxes"
                log.info("took back %d channel sandboxes' records from %s", restored_sandboxes, where)

        sqs = boto3.client("sqs", region_name=region, endpoint_url=endpoint)
        for lid, spec in specs.items():
            for source in spec.sqs_sources:
                if not source.enabled:
                    continue
                if not source.queue_url:
                    log.warning("%s: queue %s is not the template's; not pumped", spec.name, source.queue_arn)
                    continue
                pumps.append(
                    SqsPump(
                        sqs,
                        source.queue_url,
                        source.queue_arn,
                        functions[lid],
                        batch_size=source.batch_size,
                        report_batch_item_failures=source.report_batch_item_failures,
                        region=region,
                    )
                )
            for schedule in spec.schedules:
                if schedule.enabled:
                    pumps.append(
                        SchedulePump(
                            functions[lid],
                            schedule.expression,
                            input=schedule.input,
                            scheduler=schedule.kind == "ScheduleV2",
                            region=region,
                            account_id=resources.account_id,
                            interval=local_schedule_seconds(lid),
                        )
                    )
        for function_lid, schedule in resources.schedule_targets:
            if schedule.enabled and function_lid in functions:
                rule = resources.rules.get(schedule.event)
                pumps.append(
                    SchedulePump(
                        functions[function_lid],
                        schedule.expression,
                        input=schedule.input,
                        scheduler=schedule.kind == "AWS::Scheduler::Schedule",
                        rule_arn=rule.arn if rule else "",
                        region=region,
                        account_id=resources.account_id,
                        interval=local_schedule_seconds(function_lid),
                    )
                )
        for bridge in resources.bridges:
            if bridge.function in functions:
                pumps.append(
                    BridgePump(
                        sqs,
                        bridge.queue_url,
                        functions[bridge.function],
                        input=bridge.input,
                        input_path=bridge.input_path,
                    )
                )
        pushing = {n: sb for n, sb in sandboxes.items() if config_document["channels"][n]["type"] in PUSHING}
        if pushing:
            from fapiao_hub.infra.files import FileStore
            from fapiao_hub.infra.store import ApplicationStore

            dynamodb = boto3.client("dynamodb", region_name=region, endpoint_url=endpoint)
            table = resources.tables["ApplicationsTable"]
            store = ApplicationStore(
                boto3.resource("dynamodb", region_name=region, endpoint_url=endpoint).Table(table),
                FileStore(
                    boto3.client("s3", region_name=region, endpoint_url=endpoint),
                    resources.buckets["InvoiceFileBucket"],
                ),
            )
            pumps.append(OutOfBandForwarder(dynamodb, table, pushing, partial(_hand_over_order, store)))
        if local_state is not None and SAVE_SECONDS > 0:
            pumps.append(PeriodicSave(local_state, SAVE_SECONDS))
        for pump in pumps:
            pump.start()
            log.info("pump %s", pump.name)

        hub = LocalHub(
            api_url=gateway.url,
            token=token,
            aws_endpoint_url=endpoint,
            region=region,
            state_dir=state,
            local_json=local_json,
            resources=resources,
            functions=functions,
            gateway=gateway,
            pumps=pumps,
            _moto=moto,
            _sandboxes=helpers,
            _env_plan=env_plan,
            _process_env=process_env,
            _state=local_state,
        )
        info = {
            "api_url": hub.api_url,
            "console_url": console_url(hub.api_url),
            "token": token,
            # The local operator's token (role "operator"): the console signs in with it (LocalSession),
            # `fapiao-hub ops` reads it from here.
            "operator_token": operator_token,
            "aws_endpoint_url": endpoint,
            "region": region,
            "hub_config_file": str(hub_config_file),
            "routes": sorted(r.route_key + " -> " + r.function.name for r in gateway.routes),
            "functions": {lid: f.name for lid, f in functions.items()},
            "channels": _channel_info(config_document, sandboxes, hub.api_url),
            "webhooks": {
                name: {"url": r.url, "notifications": f"{r.base_url}/_sandbox/notifications"}
                for name, r in receivers.items()
            },
            **resources.as_dict(),
        }
        _write_private(local_json, json.dumps(info, indent=2))
        return hub
    except BaseException:
        _shutdown(gateway, pumps, env_plan, process_env, moto, helpers)  # not saved: it may be half restored
        raise


def main() -> int:
    setup_logging()
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        hub = start(
            api_port=int(os.environ.get("API_PORT", "3000")),
            moto_port=int(os.environ.get("MOTO_PORT", "0")),
            keep_state=True,
            # Another configuration than the sample (tests: a channel that does not de-duplicate).
            hub_config=os.environ.get("FAPIAO_HUB_LOCAL_CONFIG") or SAMPLE_HUB_CONFIG,
        )
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        log.error("a port is in use (%s); set API_PORT (or MOTO_PORT) to a free one", error)
        return 1
    except Exception:
        log.exception("the local run could not start")
        return 1
    print(
        "\n".join(
            [
                "",
                "fapiao-hub local run is ready",
                f"  API          {hub.api_url}",
                f"  Swagger UI   {hub.api_url}/swagger",
                f"  console      {console_url(hub.api_url)}   (signs in by itself from this machine)",
                f"  token        {hub.token}   (Authorization: Bearer <token>)",
                f"  moto         {hub.aws_endpoint_url}",
                f"  local.json   {hub.local_json}",
                "  Ctrl-C to stop",
                "",
            ]
        ),
        flush=True,
    )
    while not stop.wait(1.0):
        pass
    hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
