"""The ``fapiao-hub`` command: a client of the hub's HTTP API, plus the local run.

    fapiao-hub local                    the local run (same as ``make run``)
    fapiao-hub submit FILE_OR_DIR...    post seed 004 orders; a summary table
    fapiao-hub status CODE              status, reason, history, invoices and files
    fapiao-hub watch CODE...            follow applications until every one is final
    fapiao-hub demo                     sample orders through every sandbox channel of the local run
    fapiao-hub ops summary|list|show|act|reconcile  the operations desk (an operator token; ``list --csv``
                                        exports; ``reconcile``: the local run's reconciliation, now)

The API URL and bearer token come from ``--api-url``/``--token`` (``FAPIAO_HUB_API_URL``,
``FAPIAO_HUB_TOKEN``), else from ``<state-dir>/local.json``, which the local run writes. These
options (and ``--state-dir``) go before or after the subcommand (``fapiao-hub demo --api-url ...``);
given both ways, the one after the subcommand counts.

Exit codes: 0 done; 1 usage or configuration; 2 the API refused (401, 400, 404, 409, ...; ``watch``:
a code the hub does not know, once the others are final); 3 the API is unreachable; 4 ``watch``/``demo``
timed out with applications still open; 5 ``demo``: a sample did not end in its expected state.
Errors are one line on stderr, never a traceback (``FAPIAO_HUB_DEBUG=1`` shows it), never the token.

Not part of the Lambda layer's runtime: no handler imports this module (it needs ``click``).
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
import os
import socket
import ssl
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click
import requests

from fapiao_hub_client import demo as samples

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_REFUSED = 2
EXIT_UNREACHABLE = 3
EXIT_TIMEOUT = 4
EXIT_MISMATCH = 5

# models' statuses that are not open (not imported: the command need not load pydantic's models).
FINAL_STATUSES = frozenset({"ISSUED", "REJECTED", "VOIDED", "CANCELLED", "MANUAL_REVIEW", "STUCK", "MISMATCH"})
ORDERS_PATH = "/v1/invoice-orders"
BATCH_PATH = ORDERS_PATH + "/batch"
BATCH_SIZE = 100  # the batch route's limit
REQUEST_TIMEOUT = 30.0
DEFAULT_STATE_DIR = ".fapiao-hub"

# Values that must never reach the terminal (the bearer token), whatever an error message says.
_SECRETS: set[str] = set()


_MIN_SECRET = 8  # shorter "tokens" are no secret worth mangling every message for


def _redact(text: str) -> str:
    for secret in _SECRETS:
        if len(secret) >= _MIN_SECRET:
            text = text.replace(secret, "***")
    return text


def _say_error(message: str) -> None:
    click.echo(f"error: {_redact(message)}", err=True)


class CliError(click.ClickException):
    """Ends the command with one line on stderr and ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        _say_error(self.format_message())


class ApiError(CliError):
    """The API answered, but not with success (``status`` is the HTTP status)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}", EXIT_REFUSED)
        self.status = status


# ---------------------------------------------------------------------------- HTTP client
class _Bearer(requests.auth.AuthBase):
    """The token as an auth object (so a ~/.netrc entry can never replace it)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request


@dataclass
class Answer:
    status: int
    success: bool
    message: str
    data: Any

    @property
    def errors(self) -> list[dict[str, Any]]:
        errors = self.data.get("errors") if isinstance(self.data, dict) else None
        return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def _connection_reason(error: BaseException) -> str:
    """What went wrong under a requests ConnectionError, in a few words."""
    seen: set[int] = set()
    pending: list[Any] = [error]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, socket.gaierror):
            return "host not found"
        if isinstance(current, ssl.SSLError):
            return "TLS handshake failed"
        if isinstance(current, ConnectionResetError):
            return "connection reset"
        if isinstance(current, TimeoutError):
            return "timed out"
        if isinstance(current, BaseException):
            pending.extend([getattr(current, "reason", None), current.__cause__, current.__context__])
            pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
    text = str(error)
    if "refused" in text.lower():
        return "connection refused"
    return "connection failed"


class Client:
    """The intake API: POST and GET invoice orders, answers in seed 004's envelope."""

    def __init__(self, api_url: str, token: str, *, timeout: float = REQUEST_TIMEOUT) -> None:
        url = api_url.strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CliError(f"invalid API URL {api_url!r} (expected http://host:port or https://...)")
        self.api_url = url
        self.timeout = timeout
        _SECRETS.add(token)
        self._session = requests.Session()
        self._session.auth = _Bearer(token)
        self._session.headers["User-Agent"] = "fapiao-hub-cli"

    def request(self, method: str, path: str, body: Any = None) -> Answer:
        url = self.api_url + path
        data = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            response = self._session.request(method, url, data=data, headers=headers, timeout=self.timeout)
        except requests.Timeout:
            raise CliError(
                f"cannot reach {self.api_url}: no answer within {self.timeout:g} s", EXIT_UNREACHABLE
            ) from None
        except requests.ConnectionError as error:
            hint = " (is `make run` running?)" if _is_loopback(self.api_url) else ""
            reason = _connection_reason(error)
            raise CliError(f"cannot reach {self.api_url}: {reason}{hint}", EXIT_UNREACHABLE) from None
        except requests.RequestException as error:
            raise CliError(f"request to {self.api_url} failed: {type(error).__name__}", EXIT_UNREACHABLE) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ApiError(response.status_code, f"unexpected answer from {url} (not a JSON object)")
        message = str(body.get("message") or response.reason or "")
        answer = Answer(response.status_code, bool(body.get("success", response.ok)), message, body.get("data"))
        if response.status_code in (401, 403):
            raise ApiError(response.status_code, message or "not authorized")
        return answer

    def submit(self, order: Any) -> Answer:
        return self.request("POST", ORDERS_PATH, order)

    def submit_batch(self, orders: Sequence[Any]) -> Answer:
        return self.request("POST", BATCH_PATH, {"invoiceOrders": list(orders)})

    def get(self, code: str) -> dict[str, Any]:
        """The application's data, or ApiError (404 for an unknown code)."""
        answer = self.request("GET", f"{ORDERS_PATH}/{requests.utils.quote(code, safe='')}")
        if answer.status != 200 or not isinstance(answer.data, dict):
            raise ApiError(answer.status, answer.message or "unexpected answer")
        return answer.data


# ---------------------------------------------------------------------------- settings
@dataclass
class Settings:
    api_url: str | None
    token: str | None
    state_dir: Path
    _client: Client | None = field(default=None, repr=False)

    @property
    def local_json(self) -> Path:
        return self.state_dir / "local.json"

    def local_info(self, needed_for: str = "") -> dict[str, Any]:
        path = self.local_json
        if not path.is_file():
            if needed_for:
                how = f"{needed_for}; start it (`make run` or `fapiao-hub local`) or point --state-dir at its directory"
            else:
                how = (
                    "start the local run (`make run` or `fapiao-hub local`), or give --api-url and --token "
                    "(FAPIAO_HUB_API_URL, FAPIAO_HUB_TOKEN)"
                )
            raise CliError(f"{path} not found: {how}")
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise CliError(f"{path} is not readable JSON ({type(error).__name__})") from None
        if not isinstance(info, dict):
            raise CliError(f"{path} is not a JSON object")
        token = info.get("token")
        if isinstance(token, str):
            _SECRETS.add(token)
        return info

    def client(self) -> Client:
        if self._client is None:
            api_url, token = self.api_url, self.token
            if not (api_url and token):
                info = self.local_info()
                api_url = api_url or info.get("api_url")
                token = token or info.get("token")
                if not api_url or not token:
                    raise CliError(f"{self.local_json} has no api_url or token; start the local run again")
            self._client = Client(api_url, token)
        return self._client


# ---------------------------------------------------------------------------- shared options
# --api-url, --token and --state-dir are declared once (shared_options) and put on the group and on
# every subcommand, so they go before or after the subcommand. Each occurrence records its value in
# ctx.meta (shared by the group's and the subcommand's contexts); the subcommand's runs last, so a
# value given after the subcommand wins, and one from the environment or the default never
# replaces one given on the command line.
_CHOSEN = "fapiao_hub_client.cli.shared_options"
_FROM_COMMAND_LINE = click.core.ParameterSource.COMMANDLINE


def _choose(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    chosen: dict[str, tuple[Any, bool]] = ctx.meta.setdefault(_CHOSEN, {})
    given = ctx.get_parameter_source(param.name or "") is _FROM_COMMAND_LINE
    if given or param.name not in chosen or not chosen[param.name][1]:
        chosen[param.name or ""] = (value, given)


_SHARED_OPTIONS = (
    click.option(
        "--api-url",
        envvar="FAPIAO_HUB_API_URL",
        metavar="URL",
        expose_value=False,
        callback=_choose,
        help="The hub's API base URL, e.g. http://127.0.0.1:3000 (default: local.json's api_url).",
    ),
    click.option(
        "--token",
        envvar="FAPIAO_HUB_TOKEN",
        metavar="TOKEN",
        expose_value=False,
        callback=_choose,
        help="A bearer token (default: local.json's token; ops commands: its operator_token).",
    ),
    click.option(
        "--state-dir",
        envvar="FAPIAO_HUB_STATE_DIR",
        default=DEFAULT_STATE_DIR,
        show_default=True,
        type=click.Path(file_okay=False, path_type=Path),
        expose_value=False,
        callback=_choose,
        help="The local run's state directory (local.json).",
    ),
)


def shared_options[F: Callable[..., Any]](function: F) -> F:
    """--api-url, --token and --state-dir on a command (the group and each subcommand)."""
    for option in reversed(_SHARED_OPTIONS):
        function = option(function)
    return function


def _settings(ctx: click.Context) -> Settings:
    """The shared options as chosen (see above), once per invocation."""
    settings = ctx.meta.get(Settings)
    if settings is None:
        chosen = ctx.meta.get(_CHOSEN, {})
        api_url = chosen.get("api_url", (None, False))[0]
        token = chosen.get("token", (None, False))[0]
        state_dir = chosen.get("state_dir", (Path(DEFAULT_STATE_DIR), False))[0]
        if token:
            _SECRETS.add(token)
        settings = ctx.meta[Settings] = Settings(api_url or None, token or None, state_dir)
    return settings


def _state_dir_given(ctx: click.Context) -> bool:
    """Whether --state-dir was given on the command line (before or after the subcommand)."""
    return bool(ctx.meta.get(_CHOSEN, {}).get("state_dir", (None, False))[1])


def pass_settings[F: Callable[..., Any]](function: F) -> F:
    """Calls the command with the Settings as its first argument."""

    @click.pass_context
    def with_settings(ctx: click.Context, /, *args: Any, **kwargs: Any) -> Any:
        return ctx.invoke(function, _settings(ctx), *args, **kwargs)

    return functools.update_wrapper(with_settings, function)  # type: ignore[return-value]


# ---------------------------------------------------------------------------- output
def _width(text: str) -> int:
    """Terminal columns: CJK characters take two."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text
    )


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return " ".join(str(value).split())  # one line per row


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], indent: str = "") -> str:
    """Aligned plain text: a header row, then the rows; two spaces between columns."""
    table = [[str(h) for h in headers], *([_cell(v) for v in row] for row in rows)]
    widths = [max(_width(row[i]) for row in table) for i in range(len(headers))]
    lines = []
    for row in table:
        cells = [cell + " " * (widths[i] - _width(cell)) for i, cell in enumerate(row)]
        lines.append((indent + "  ".join(cells)).rstrip())
    return "\n".join(lines)


def _echo_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], indent: str = "") -> None:
    click.echo(_redact(format_table(headers, rows, indent)))


def _clock() -> str:
    return time.strftime("%H:%M:%S")


CHINA_TIME = dt.timezone(dt.timedelta(hours=8))


def china_time(epoch: Any) -> str | None:
    """Epoch seconds as China time with its zone (``2026-12-08 09:15:02 +08:00``): an operator in China
    reads a time, not a number; None stays None, anything else is shown as it came."""
    if isinstance(epoch, bool) or not isinstance(epoch, int | float):
        return None if epoch is None else str(epoch)
    try:
        moment = dt.datetime.fromtimestamp(epoch, CHINA_TIME)
    except (OverflowError, OSError, ValueError):
        return str(epoch)
    return moment.strftime("%Y-%m-%d %H:%M:%S +08:00")


def _shorten(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------- submit
@dataclass
class Submitted:
    label: str
    code: str | None
    # accepted / already received / refused (intake's 400: not an application; "rejected" is a
    # channel's word for an application, a lifecycle status) / conflict / error
    result: str
    reason: str
    http_status: int | None = None
    status: str | None = None  # the application's status when accepted
    errors: tuple[tuple[str, str], ...] = ()  # intake's field errors: (the order's JSON path, what is wrong)

    @property
    def accepted(self) -> bool:
        return self.result in ("accepted", "already received")


def _reason(answer: Answer) -> str:
    errors = answer.errors
    if errors:
        first = errors[0]
        text = f"{first.get('field', '?')}: {first.get('message', '')}"
        return text + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else "")
    return answer.message


def classify(label: str, code: str | None, answer: Answer) -> Submitted:
    """A POST answer as one summary row."""
    if answer.status == 200:
        data = answer.data if isinstance(answer.data, dict) else {}
        already = "already" in answer.message
        warnings = data.get("warnings") or []
        reason = answer.message + (f"; warning: {warnings[0]}" if warnings else "")
        return Submitted(
            label,
            data.get("openApplyCode") or code,
            "already received" if already else "accepted",
            reason,
            answer.status,
            data.get("status"),
        )
    result = {400: "refused", 409: "conflict"}.get(answer.status, "error")
    reason = _reason(answer) if answer.status == 400 else answer.message
    if result == "error":
        reason = f"{answer.status} {reason}"
    errors = tuple((str(e.get("field", "?")), str(e.get("message", ""))) for e in answer.errors)
    return Submitted(label, code, result, reason, answer.status, errors=errors if answer.status == 400 else ())


def _order_code(order: Any) -> str | None:
    header = order.get("invoiceOrder") if isinstance(order, dict) else None
    code = header.get("openApplyCode") if isinstance(header, dict) else None
    return str(code) if code is not None else None


def submit_orders(client: Client, orders: Sequence[tuple[str, Any]], *, progress: bool = True) -> list[Submitted]:
    """POST the (label, order)s: one alone, several through the batch route in chunks of 100; an
    order that is an exception instead (an unreadable file) is an error row. A progress bar on
    stderr when there is more than one."""

    def one(label: str, order: Any) -> Submitted:
        if isinstance(order, Exception):
            return Submitted(label, None, "error", str(order))
        return classify(label, _order_code(order), client.submit(order))

    if len(orders) <= 1:
        return [one(label, order) for label, order in orders]
    results: list[Submitted | None] = [None] * len(orders)
    readable = [i for i, (_, order) in enumerate(orders) if not isinstance(order, Exception)]
    for i, (label, order) in enumerate(orders):
        if isinstance(order, Exception):
            results[i] = one(label, order)
    chunks = [readable[start : start + BATCH_SIZE] for start in range(0, len(readable), BATCH_SIZE)]
    with click.progressbar(
        length=len(readable),
        label=f"submitting {len(orders)} orders",
        file=click.get_text_stream("stderr") if progress else io.StringIO(),
    ) as bar:
        for chunk in chunks:
            for i, submitted in zip(chunk, _submit_chunk(client, [orders[i] for i in chunk]), strict=True):
                results[i] = submitted
            bar.update(len(chunk))
    return [r for r in results if r is not None]


def _submit_chunk(client: Client, orders: Sequence[tuple[str, Any]]) -> list[Submitted]:
    """One batch call; each order's row from its own answer (field paths as in its file)."""
    answer = client.submit_batch([order for _, order in orders])
    items = answer.data.get("invoiceOrders") if isinstance(answer.data, dict) else None
    if answer.status in (404, 413):  # a hub without the batch route, or orders too large together
        return [classify(label, _order_code(order), client.submit(order)) for label, order in orders]
    if answer.status != 200 or not isinstance(items, list) or len(items) != len(orders):
        reason = f"{answer.status} {_reason(answer) if answer.status == 400 else answer.message}"
        return [Submitted(label, _order_code(order), "error", reason, answer.status) for label, order in orders]
    found = []
    for index, ((label, order), item) in enumerate(zip(orders, items, strict=True)):
        item = item if isinstance(item, dict) else {}
        data = item.get("data")
        prefix = f"invoiceOrders[{index}]."
        if isinstance(data, dict) and isinstance(data.get("errors"), list):
            errors = [
                {**e, "field": str(e.get("field", "")).removeprefix(prefix)} if isinstance(e, dict) else e
                for e in data["errors"]
            ]
            data = {**data, "errors": errors}
        status = int(item.get("code") or 0)
        one = Answer(status, bool(item.get("success", status == 200)), str(item.get("message") or ""), data)
        found.append(classify(label, _order_code(order), one))
    return found


def echo_submitted(results: Sequence[Submitted], first: str = "file") -> None:
    """The summary table, then every field error of the orders intake refused."""
    _echo_table([first, "openApplyCode", "result", "reason"], [(r.label, r.code, r.result, r.reason) for r in results])
    refused = [r for r in results if r.errors]
    if refused:
        click.echo("\nrefused by intake (400), field by field")
        _echo_table(
            [first, "openApplyCode", "field", "problem"],
            [(r.label, r.code, path, problem) for r in refused for path, problem in r.errors],
            "  ",
        )


class _LocalFileError(Exception):
    pass


def _read_order(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return _LocalFileError(f"cannot read the file: {getattr(error, 'strerror', None) or type(error).__name__}")
    try:
        return json.loads(text)
    except ValueError as error:
        return _LocalFileError(f"not JSON: {error}")


def _order_files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.glob("*.json") if p.is_file())
            if not found:
                raise CliError(f"no *.json files in {path}")
            files.extend(found)
        else:
            files.append(path)
    return files


# ---------------------------------------------------------------------------- watch
class Watcher:
    """Polls applications, prints a line whenever one's status changes, until all are final.

    A code the hub does not know (404, or 400 for one it cannot be) gets a line saying so and is
    dropped into ``unknown``; the others are still watched."""

    def __init__(
        self,
        client: Client,
        *,
        interval: float = 1.0,
        timeout: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.interval = interval
        self.timeout = timeout
        self._clock = clock
        self._sleep = sleep
        self.latest: dict[str, dict[str, Any]] = {}
        self.open: list[str] = []
        self.unknown: dict[str, str] = {}  # code -> the API's answer ("404 no invoice order 'x'")
        self._width = 0

    def add(self, code: str) -> None:
        if code not in self.open and code not in self.latest and code not in self.unknown:
            self.open.append(code)
            self._width = max(self._width, len(code))

    def status(self, code: str) -> str | None:
        return (self.latest.get(code) or {}).get("status")

    def _report(self, code: str, previous: str | None, data: dict[str, Any]) -> None:
        status = data.get("status")
        change = f"{previous} -> {status}" if previous else str(status)
        line = f"{_clock()}  {code.ljust(self._width)}  {change}"
        if status in FINAL_STATUSES and status != "ISSUED" and data.get("reason"):
            line += f"  ({_shorten(str(data['reason']))})"
        elif status == "ISSUED":
            numbers = [str(i.get("invoiceNumber")) for i in data.get("invoices") or [] if i.get("invoiceNumber")]
            if numbers:
                line += f"  (invoice {', '.join(numbers)})"
        click.echo(_redact(line))

    def run(self, on_final: Callable[[str, dict[str, Any]], None] | None = None) -> bool:
        """True once every application is final; False at the timeout (``open`` says which)."""
        deadline = self._clock() + self.timeout
        while True:
            for code in list(self.open):
                try:
                    data = self.client.get(code)
                except ApiError as error:
                    if error.status >= 500:  # temporarily unavailable: ask again next round
                        continue
                    if error.status not in (400, 404):  # 401 and the like: no code would fare better
                        raise
                    self.open.remove(code)
                    self.unknown[code] = error.format_message()
                    click.echo(_redact(f"{_clock()}  {code.ljust(self._width)}  unknown to the hub ({error})"))
                    continue
                previous = self.status(code)
                self.latest[code] = data
                if data.get("status") != previous:
                    self._report(code, previous, data)
                if data.get("status") in FINAL_STATUSES:
                    self.open.remove(code)
                    if on_final is not None:
                        on_final(code, data)
            if not self.open:
                return True
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            self._sleep(min(self.interval, remaining))

    def still_open(self) -> str:
        return ", ".join(f"{code} ({self.status(code) or 'unknown'})" for code in self.open)

    def unknown_codes(self) -> str:
        return ", ".join(f"{code} ({answer})" for code, answer in self.unknown.items())


# ---------------------------------------------------------------------------- the command
class _Cli(click.Group):
    """Runs commands in click's non-standalone mode, so every error is one line and the exit
    codes are this command's (click's own usage errors would exit 2)."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name or "fapiao-hub", complete_var, standalone_mode=False, **extra)
        except click.UsageError as error:
            if type(error).__name__ == "NoArgsIsHelpError":  # click >= 8.2: no command given
                error.show()
                sys.exit(EXIT_USAGE)
            hint = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
            _exit(f"{error.format_message()}{hint}", EXIT_USAGE)
        except click.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        except (click.Abort, KeyboardInterrupt):
            _exit("interrupted", 130)
        except Exception as error:
            if os.environ.get("FAPIAO_HUB_DEBUG"):
                raise
            _exit(f"unexpected {type(error).__name__}: {error} (FAPIAO_HUB_DEBUG=1 shows the traceback)", EXIT_USAGE)
        sys.exit(result if isinstance(result, int) else EXIT_OK)


def _exit(message: str, code: int) -> NoReturn:
    _say_error(message)
    sys.exit(code)


@click.group("fapiao-hub", cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@shared_options
def main() -> None:
    """fapiao-hub: submit invoice orders to the hub and follow them.

    URL and token: --api-url/--token (FAPIAO_HUB_API_URL, FAPIAO_HUB_TOKEN), else the local
    run's <state-dir>/local.json; these options go before or after the command. Exit codes:
    0 done, 1 usage/configuration, 2 refused by the API (watch: an unknown code), 3 API
    unreachable, 4 timed out, 5 demo sample not in its expected state.
    """


@main.command("local")
@shared_options
@click.pass_context
def local_command(ctx: click.Context) -> int:
    """Run the hub on this machine (the same as `make run`)."""
    settings = _settings(ctx)
    if _state_dir_given(ctx):
        os.environ["FAPIAO_HUB_STATE_DIR"] = str(settings.state_dir.resolve())
    run = _import_local_run()
    return int(run.main() or 0)


def _checkouts() -> list[Path]:
    """Where a repository checkout may be: this file's (an editable install), the working directory."""
    return samples.repository_checkouts()


def _import_local_run() -> Any:
    """local.run from the repository checkout (the `local` package sits at its root)."""
    try:
        from local import run
    except ImportError:
        root = next((c for c in _checkouts() if (c / "local" / "run.py").is_file()), None)
        if root is None:
            raise CliError(
                "`fapiao-hub local` needs the fapiao-hub repository (its `local` package is not importable "
                "here); run it from the repository root, or use `make run` there"
            ) from None
        sys.path.insert(0, str(root))
        try:
            from local import run
        except ImportError as error:
            # The local run's own packages (PyYAML, moto, ...) are the dev extra's, not the command's.
            hint = "; install them with `pip install -e '.[dev]'` there (or use `make run`)" if error.name else ""
            raise CliError(f"the local run could not be imported from {root}: {error}{hint}") from None
    return run


@main.command()
@click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path), metavar="FILE_OR_DIR..."
)
@shared_options
@pass_settings
def submit(settings: Settings, paths: tuple[Path, ...]) -> int:
    """Post seed 004 orders (JSON files; directories: every *.json inside, sorted).

    Exit 0 if every order was accepted (or already received), 2 if the API refused any,
    1 if only local files could not be read.
    """
    files = _order_files(paths)
    client = settings.client()
    orders = [(str(path), _read_order(path)) for path in files]
    results = submit_orders(client, orders)
    echo_submitted(results)
    if any(r.http_status is not None and not r.accepted for r in results):
        return EXIT_REFUSED
    if any(not r.accepted for r in results):
        return EXIT_USAGE
    return EXIT_OK


@main.command()
@click.argument("code")
@shared_options
@pass_settings
def status(settings: Settings, code: str) -> int:
    """Show an application: status, reason, history, invoices and their files."""
    data = settings.client().get(code)
    echo_status(data)
    return EXIT_OK


def echo_status(data: dict[str, Any]) -> None:
    fields = [
        ("openApplyCode", data.get("openApplyCode")),
        ("status", data.get("status")),
        ("reason", data.get("reason")),
        ("channel", data.get("channel")),
        ("created", data.get("createdAt")),
        ("updated", data.get("updatedAt")),
    ]
    for warning in data.get("warnings") or []:
        fields.append(("warning", warning))
    for name, value in fields:
        click.echo(_redact(f"{name:<14}{_cell(value)}"))
    click.echo("\nhistory")
    history = data.get("history") or []
    if history:
        _echo_table(["time", "status", "note"], [(h.get("at"), h.get("status"), h.get("note")) for h in history], "  ")
    else:
        click.echo("  none")
    if data.get("historyNextCursor"):  # the history is paged, never cut: say there is more
        click.echo(_redact(f"  ... more: read again with historyCursor={data['historyNextCursor']}"))
    invoices = data.get("invoices") or []
    click.echo("\ninvoices")
    if not invoices:
        click.echo("  none")
        return
    _echo_table(
        ["number", "code", "date", "amount", "tax", "status"],
        [
            (
                i.get("invoiceNumber"),
                i.get("invoiceCode"),
                i.get("invoiceDate"),
                i.get("amount"),
                i.get("tax"),
                i.get("status"),
            )
            for i in invoices
        ],
        "  ",
    )
    files = [(i.get("invoiceNumber"), f) for i in invoices for f in i.get("files") or []]
    click.echo("\nfiles")
    if not files:
        click.echo("  none")
        return
    rows = []
    for number, f in files:
        if "error" in f and not f.get("url"):
            rows.append((number, f.get("format"), None, None, f"error: {f.get('error') or 'not stored'}"))
        else:
            rows.append((number, f.get("format"), f.get("size"), f.get("sha256"), f.get("url")))
    _echo_table(["invoice", "format", "size", "sha256", "url"], rows, "  ")


_interval_option = click.option(
    "--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True, help="Seconds between polls."
)


@main.command()
@click.argument("codes", nargs=-1, required=True, metavar="CODE...")
@_interval_option
@click.option("--timeout", type=click.FloatRange(min=0), default=120.0, show_default=True, help="Give up after (s).")
@shared_options
@pass_settings
def watch(settings: Settings, codes: tuple[str, ...], interval: float, timeout: float) -> int:
    """Follow applications until every one is final (ISSUED, REJECTED, VOIDED, MANUAL_REVIEW,
    STUCK, MISMATCH): a line whenever a status changes.

    A code the hub does not know is said so at once and the others are still followed. Exit 0
    when every one is final, 2 when any code was unknown (the others final), 4 at the timeout.
    """
    watcher = Watcher(settings.client(), interval=interval, timeout=timeout)
    for code in codes:
        watcher.add(code)
    finished = watcher.run()
    if watcher.unknown:
        _say_error(f"unknown to the hub: {watcher.unknown_codes()}")
    if not finished:
        raise CliError(f"timed out after {timeout:g} s; still open: {watcher.still_open()}", EXIT_TIMEOUT)
    return EXIT_REFUSED if watcher.unknown else EXIT_OK


# ---------------------------------------------------------------------------- demo
REFUSED_400 = "refused (400)"


@dataclass
class Sample:
    name: str
    code: str
    expected: str
    order: Any = None
    actual: str | None = None
    note: str = ""
    channel: str | None = None  # the sandbox channel it goes to (its invoice is checked)
    invoice: str | None = None  # how its invoice compares with its order
    mismatch: bool = False

    @property
    def ok(self) -> bool:
        return self.actual == self.expected and not self.mismatch


def _demo_void(
    client: Client,
    channels: dict[str, Any],
    plan: list[Sample],
    watcher: Watcher,
    suffix: str,
    interval: float,
    timeout: float,
) -> Sample | None:
    """Void the partner sample's invoice: the void request to the hub, the partner's side to its
    sandbox, then the blue application followed to VOIDED."""
    blue = next((s for s in plan if s.channel and channels[s.channel].get("type") == "partner"), None)
    if blue is None:
        return None
    sample = Sample(f"void of the {blue.channel} invoice", f"demo-void-{suffix}", "VOIDED", note=f"voids {blue.code}")
    data = watcher.latest.get(blue.code) or {}
    invoices = [i for i in data.get("invoices") or [] if i.get("invoiceNumber")]
    if data.get("status") != "ISSUED" or not invoices:
        sample.actual = f"not submitted (blue {data.get('status')})"
        return sample
    company = str(blue.order["invoiceOrder"]["bukrs"])
    sample.order = samples.void_order(sample.code, company, invoices[0])
    click.echo(f"{_clock()}  submitting {sample.code}: void of invoice {invoices[0]['invoiceNumber']} ({blue.code})")
    answer = client.submit(sample.order)
    if answer.status != 200:
        sample.actual, sample.note = f"refused ({answer.status})", _reason(answer)
        return sample
    if not samples.partner_takes_void(channels[blue.channel], samples.request_number(data) or ""):
        sample.actual = "the partner sandbox could not be asked"
        return sample
    follow = Watcher(client, interval=interval, timeout=timeout)
    follow.add(blue.code)
    follow.run()
    sample.actual = follow.status(blue.code)
    return sample


@main.command()
@_interval_option
@click.option("--timeout", type=click.FloatRange(min=1), default=120.0, show_default=True, help="Give up after (s).")
@shared_options
@pass_settings
def demo(settings: Settings, interval: float, timeout: float) -> int:
    """Sample orders through every sandbox channel of the local run, live to their final states.

    Nine samples with the local run's four channels: one order per channel (seed 004's example with
    its discount pairs), a 数电 (0112) order for the Xunlian company (VB5), which Xunlian cannot issue
    and its second, 数电-capable channel does, an order Xunlian refuses (its sandbox's reject switch,
    ending REJECTED), an order for an unknown company (refused at intake, 400), once the Xunlian order
    is ISSUED a red reversal of part of its invoice, and once the partner order is ISSUED a void of its
    invoice. Ends with a table of sample / expected / actual; exit 0 only if every sample ended as
    expected.
    """
    info = settings.local_info("the demo needs the local run's channels")
    channels = {n: c for n, c in (info.get("channels") or {}).items() if isinstance(c, dict) and c.get("company_code")}
    if not channels:
        raise CliError(f"{settings.local_json} lists no sandbox channels with a company code")
    client = settings.client()
    suffix = samples.run_suffix()
    plan: list[Sample] = []
    red_channel = next((n for n, c in channels.items() if c.get("type") == "xunlian"), None)
    blue_for_red: Sample | None = None
    for name, channel in channels.items():
        code = f"demo-{name}-{suffix}"
        order, source = samples.blue_order(name, channel["company_code"], code)
        pairs = samples.discount_pairs(order)
        invoice_type = order["invoiceOrder"].get("invoiceType")
        described = f"{name} ({channel['company_code']}, {invoice_type}" + (
            f", {pairs} discount pairs)" if pairs else ")"
        )
        sample = Sample(f"blue {described}", code, "ISSUED", order, note=source, channel=name)
        plan.append(sample)
        if name == red_channel:
            blue_for_red = sample
    if red_channel is not None:
        code = f"demo-digital-{suffix}"
        company = channels[red_channel]["company_code"]
        plan.append(
            Sample(f"数电 0112 for {company} (not {red_channel}: its 数电 channel)", code, "ISSUED",
                   samples.digital_order(company, code))
        )  # fmt: skip
    rejected: Sample | None = None
    if red_channel is not None:
        code = f"demo-rejected-{suffix}"
        company = channels[red_channel]["company_code"]
        order, _ = samples.blue_order(red_channel, company, code)
        order["invoiceOrder"]["remark"] = samples.rejection_remark(code)
        rejected = Sample(f"refused by {red_channel} (its sandbox's reject switch)", code, "REJECTED", order)
        plan.append(rejected)
    code = f"demo-unknown-company-{suffix}"
    known = {c["company_code"] for c in channels.values()}
    plan.append(Sample("unknown company code", code, REFUSED_400, samples.unknown_company_order(code, known)))
    red: Sample | None = None
    if blue_for_red is not None:
        red = Sample(f"red reversal of the {red_channel} invoice", f"demo-red-{suffix}", "ISSUED", channel=red_channel)
        red.actual = "not submitted"
    by_code = {s.code: s for s in plan}

    if rejected is not None and red_channel is not None:
        if not samples.switch_rejection_on(channels[red_channel], samples.rejection_remark(rejected.code)):
            rejected.note = f"could not switch the {red_channel} sandbox's reject on"
    partner = any(c.get("type") == "partner" for c in channels.values())
    count = len(plan) + (red is not None) + partner  # the void of the partner's invoice comes last
    click.echo(f"fapiao-hub demo against {client.api_url}: {count} samples (run {suffix})\n")
    results = submit_orders(client, [(s.name, s.order) for s in plan])
    echo_submitted(results, first="sample")
    watcher = Watcher(client, interval=interval, timeout=timeout)
    for sample, result in zip(plan, results, strict=True):
        if result.accepted:
            watcher.add(sample.code)
        else:
            sample.actual = REFUSED_400 if result.http_status == 400 else f"{result.result} ({result.http_status})"
            sample.note = result.reason

    sellers = samples.company_sellers(info.get("hub_config_file"))

    def check_invoice(sample: Sample, data: dict[str, Any]) -> None:
        """An issued sample's invoice against its order: seller, type, totals."""
        if sample.channel is None or data.get("status") != "ISSUED":
            return
        company = str((sample.order or {}).get("invoiceOrder", {}).get("bukrs"))
        from_sandbox = samples.sandbox_sellers(channels[sample.channel], samples.request_number(data))
        differences, unreported = samples.invoice_check(data, sellers.get(company), from_sandbox)
        sample.mismatch = bool(differences)
        sample.invoice = samples.describe_check(differences, unreported)
        click.echo(f"{_clock()}  {sample.code}  invoice {sample.invoice}")

    def on_final(code: str, data: dict[str, Any]) -> None:
        sample = by_code.get(code)
        if sample is not None:
            sample.actual = data.get("status")
            numbers = [
                f"{i.get('invoiceCode') or '-'}/{i['invoiceNumber']}"
                for i in data.get("invoices") or []
                if i.get("invoiceNumber")
            ]
            if data.get("reason"):
                sample.note = str(data["reason"])
            elif numbers:
                sample.note = "invoice " + ", ".join(numbers)
            check_invoice(sample, data)
        if red is None or blue_for_red is None or code != blue_for_red.code:
            return
        invoices = [i for i in data.get("invoices") or [] if i.get("invoiceNumber")]
        if data.get("status") != "ISSUED" or not invoices:
            red.actual = f"not submitted (blue {data.get('status')})"
            return
        invoice = invoices[0]
        red.order = samples.red_order(blue_for_red.order, invoice, red.code)
        amount = red.order["invoiceOrder"]["invoiceAmtInclTax"]
        click.echo(
            f"{_clock()}  submitting {red.code}: red {amount:.2f} against invoice "
            f"{invoice.get('invoiceCode') or '-'}/{invoice['invoiceNumber']} (blue {invoice.get('amount')} + tax "
            f"{invoice.get('tax')})"
        )
        [submitted] = submit_orders(client, [(red.name, red.order)], progress=False)
        by_code[red.code] = red
        if submitted.accepted:
            red.actual = submitted.status or "RECEIVED"
            watcher.add(red.code)
        else:
            red.actual = (
                REFUSED_400 if submitted.http_status == 400 else f"{submitted.result} ({submitted.http_status})"
            )
            red.note = submitted.reason
            click.echo(_redact(f"{_clock()}  {red.code}  {submitted.result}: {submitted.reason}"))

    click.echo(f"\nfollowing {len(watcher.open)} applications until final (timeout {timeout:g} s)")
    finished = watcher.run(on_final)
    for code in watcher.open:
        sample = by_code.get(code)
        if sample is not None:
            sample.actual = f"{watcher.status(code) or 'unknown'} (still open)"
    for code, answer in watcher.unknown.items():
        sample = by_code.get(code)
        if sample is not None:
            sample.actual, sample.note = "unknown to the hub", answer
    if red is not None and red.actual == "not submitted" and blue_for_red is not None:
        red.actual = f"not submitted (blue {watcher.status(blue_for_red.code) or 'unknown'})"
    void = _demo_void(client, channels, plan, watcher, suffix, interval, timeout) if finished else None

    everything = [*plan, *([red] if red is not None else []), *([void] if void is not None else [])]
    click.echo("")
    _echo_table(
        ["sample", "openApplyCode", "expected", "actual", "invoice vs order", "ok", "note"],
        [
            (
                s.name,
                s.code,
                s.expected,
                s.actual,
                _shorten(s.invoice, 60) if s.invoice else None,
                "yes" if s.ok else "NO",
                _shorten(s.note, 60) if s.note else None,
            )
            for s in everything
        ],
    )
    for s in everything:
        if s.mismatch:
            _say_error(f"{s.code}: {s.actual} but its invoice {s.invoice}")
    echo_console_counts(settings)
    failed = [s for s in everything if not s.ok]
    if not finished:
        _say_error(f"timed out after {timeout:g} s; still open: {watcher.still_open()}")
        return EXIT_TIMEOUT
    if failed:
        _say_error(
            f"{len(failed)} of {len(everything)} samples did not end as expected: {', '.join(s.code for s in failed)}"
        )
        return EXIT_MISMATCH
    click.echo(f"\nall {len(everything)} samples ended as expected")
    return EXIT_OK


# ---------------------------------------------------------------------------- ops (the operations desk)
# `fapiao-hub ops summary|list|show|act`: the ops API (/v1/ops/...) with an operator token, never a
# business system's: --token given on the command line, else FAPIAO_HUB_OPERATOR_TOKEN, else
# local.json's operator_token (the local run writes one with the "operator" role).
OPS_PATH = "/v1/ops"
OPERATOR_TOKEN_VARIABLE = "FAPIAO_HUB_OPERATOR_TOKEN"  # noqa: S105 (a variable's name, not a secret)
OPS_PAGE_LIMIT = 100
OPS_ACTIONS = ("query", "resolve-issued", "resolve-not-issued", "requeue", "cancel", "attach-result",
               "acknowledge-finding", "resolve-voided", "resolve-not-voided")  # fmt: skip


class OpsClient(Client):
    """The ops API: JSON answers in the intake envelope, and list pages as CSV."""

    def data(self, method: str, path: str, body: Any = None) -> Any:
        """The answer's data on a 2xx; ApiError otherwise (naming the field, or the current status on a 409)."""
        answer = self.request(method, OPS_PATH + path, body)
        if 200 <= answer.status < 300 and answer.success:
            return answer.data
        detail = answer.message or "refused"
        data = answer.data if isinstance(answer.data, dict) else {}
        if answer.errors:
            detail = _reason(answer)
        elif isinstance(data.get("field"), str) and not detail.startswith(data["field"]):
            detail += f" (field {data['field']})"
        if answer.status == 409 and data.get("status"):
            detail += f" (current status {data['status']})"
        raise ApiError(answer.status, detail)

    def csv_page(self, query: dict[str, str]) -> tuple[str, str | None]:
        """One page of the list as CSV (``Accept: text/csv``) and the next cursor (``X-Next-Cursor``)."""
        url = f"{self.api_url}{OPS_PATH}/applications"
        try:
            response = self._session.get(url, params=query, headers={"Accept": "text/csv"}, timeout=self.timeout)
        except requests.RequestException:
            hint = " (is `make run` running?)" if _is_loopback(self.api_url) else ""
            raise CliError(f"cannot reach {self.api_url}{hint}", EXIT_UNREACHABLE) from None
        if response.status_code != 200:
            try:
                message = str(response.json().get("message") or response.reason)
            except (ValueError, AttributeError):
                message = response.reason or "refused"
            raise ApiError(response.status_code, message)
        response.encoding = "utf-8"
        return response.text, response.headers.get("X-Next-Cursor") or None


def _path_part(value: str) -> str:
    return requests.utils.quote(value, safe="")


def operator_token(settings: Settings, ctx: click.Context) -> str:
    """--token as given on the command line, else FAPIAO_HUB_OPERATOR_TOKEN, else local.json's operator_token.

    FAPIAO_HUB_TOKEN (a business system's token) is never used here: the ops routes refuse it."""
    token, given = ctx.meta.get(_CHOSEN, {}).get("token", (None, False))
    if given and token:
        return str(token)
    token = os.environ.get(OPERATOR_TOKEN_VARIABLE, "").strip()
    if token:
        _SECRETS.add(token)
        return token
    info = settings.local_info() if settings.local_json.is_file() or not settings.api_url else {}
    token = info.get("operator_token") if isinstance(info, dict) else None
    if not isinstance(token, str) or not token:
        raise CliError(
            f"no operator token: give --token, set {OPERATOR_TOKEN_VARIABLE}, or start a local run that writes "
            f"operator_token to {settings.local_json}"
        )
    _SECRETS.add(token)
    return token


def ops_client(settings: Settings, ctx: click.Context) -> OpsClient:
    token = operator_token(settings, ctx)
    api_url = settings.api_url or settings.local_info().get("api_url")
    if not api_url:
        raise CliError(f"{settings.local_json} has no api_url; give --api-url")
    return OpsClient(str(api_url), token)


def pass_ops_client[F: Callable[..., Any]](function: F) -> F:
    """Calls the command with an OpsClient as its first argument (after the shared options)."""

    @click.pass_context
    def with_client(ctx: click.Context, /, *args: Any, **kwargs: Any) -> Any:
        return ctx.invoke(function, ops_client(_settings(ctx), ctx), *args, **kwargs)

    return functools.update_wrapper(with_client, function)  # type: ignore[return-value]


def echo_summary(data: dict[str, Any]) -> None:
    statuses = data.get("statuses") or {}
    needs = data.get("needsPerson") or {}
    click.echo("applications by status (open, needing a person, and final in the last 24 h)")
    rows = [(name, count, "yes" if name in needs else None) for name, count in statuses.items()]
    rows += [(name, count, "yes") for name, count in needs.items() if name not in statuses]
    _echo_table(["status", "count", "needs a person"], rows or [("none", 0, None)], "  ")
    click.echo(f"\nopen findings  {_cell(data.get('openFindings'))}")
    queues = data.get("deadLetterQueues") or {}
    if queues:
        click.echo("dead-letter queues")
        _echo_table(["queue", "depth"], sorted(queues.items()), "  ")


def echo_console_counts(settings: Settings) -> None:
    """The demo's last words: the console's counts (GET /v1/ops/summary with the operator token) and its URL."""
    info = settings.local_info() if settings.local_json.is_file() else {}
    api_url = settings.api_url or info.get("api_url")
    console = info.get("console_url") or (f"{str(api_url).rstrip('/')}/ops/" if api_url else None)
    token = os.environ.get(OPERATOR_TOKEN_VARIABLE, "").strip() or info.get("operator_token")
    click.echo("")
    if not api_url or not isinstance(token, str) or not token:
        click.echo(f"console: {console or '-'} (no operator token in {settings.local_json}: counts not shown)")
        return
    _SECRETS.add(token)
    try:
        summary = OpsClient(str(api_url), token).data("GET", "/summary")
    except CliError as error:  # the demo's own outcome stands; the counts are a courtesy
        click.echo(_redact(f"console: {console} (counts not available: {error.format_message()})"))
        return
    echo_summary(summary if isinstance(summary, dict) else {})
    click.echo(f"\nthe console: {console}")


@main.group("ops")
@shared_options
def ops() -> None:
    """The operations desk: counts, lists, one application, actions, reconciliation now (operator token).

    The token: --token, else FAPIAO_HUB_OPERATOR_TOKEN, else the local run's operator_token
    (local.json). Exit 2 when the API refuses (401/403, 400 naming the field, 404, 409 with the
    current status).
    """


@ops.command("summary")
@shared_options
@pass_ops_client
def ops_summary(client: OpsClient) -> int:
    """Counts per status, those needing a person, open findings, dead-letter queue depths."""
    echo_summary(client.data("GET", "/summary") or {})
    return EXIT_OK


LOCAL_RECONCILE_PATH = "/ops/local-reconcile"  # local.run.LocalReconcile: the local run only


@ops.command("reconcile")
@shared_options
@pass_ops_client
def ops_reconcile(client: OpsClient) -> int:
    """Run the reconciliation now (the local run; it also runs every LOCAL_RECONCILIATION_SECONDS).

    Re-asks the channels about the day's applications and records what differs as findings; prints
    how many were checked and found. In AWS, invoke the ReconciliationFunction instead."""
    answer = client.request("POST", LOCAL_RECONCILE_PATH, {})
    if answer.status == 404:
        raise ApiError(404, "no on-demand reconciliation here (the local run has it): invoke ReconciliationFunction")
    if answer.status != 200 or not isinstance(answer.data, dict):
        raise ApiError(answer.status, answer.message or "refused")
    data = answer.data
    for name, value in (
        ("day", data.get("day")),
        ("checked", data.get("checked")),
        ("new findings", data.get("new_findings")),
        ("not verifiable", data.get("not_verifiable")),
    ):
        click.echo(f"{name:<16}{_cell(value)}")
    for key in data.get("report") or []:
        click.echo(f"report          {key}")
    if data.get("new_findings"):
        click.echo("\nsee them: fapiao-hub ops list (the findings column), fapiao-hub ops show SYSTEM CODE")
    return EXIT_OK


_FILTERS = (
    ("status", "--status", "status"),
    ("business_system", "--business-system", "businessSystem"),
    ("seller", "--seller", "seller"),
    ("channel", "--channel", "channel"),
    ("received_from", "--received-from", "receivedFrom"),
    ("received_to", "--received-to", "receivedTo"),
)


def _filter_options[F: Callable[..., Any]](function: F) -> F:
    # What each takes, as the ops API reads it (ops_api: receivedFrom / receivedTo are China days).
    helps = {
        "status": ("STATUS", "An application status: RECEIVED, SUBMITTED, ISSUED, MANUAL_REVIEW, MISMATCH, ..."),
        "business_system": ("NAME", "A business system's name, as in the hub configuration (e.g. sample-erp)."),
        "seller": ("TAX_NUMBER", "The seller's tax number (统一社会信用代码)."),
        "channel": ("NAME", "A channel's name, as in the hub configuration (e.g. xunlian)."),
        "received_from": ("YYYY-MM-DD", "Received on or after this day: a date in China time (UTC+8), included."),
        "received_to": ("YYYY-MM-DD", "Received on or before this day: a date in China time (UTC+8), included."),
    }
    for name, flag, _ in reversed(_FILTERS):
        metavar, text = helps[name]
        function = click.option(flag, name, metavar=metavar, help=text)(function)
    return function


@ops.command("list")
@_filter_options
@click.option(
    "--limit", type=click.IntRange(1, 500), default=OPS_PAGE_LIMIT, show_default=True, help="Page size: 1 to 500."
)
@click.option("--cursor", metavar="CURSOR", help="The page after the one that printed this cursor.")
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    metavar="FILE",
    help="Every page of the query as CSV into FILE ('-': standard output), with a progress display.",
)
@shared_options
@pass_ops_client
def ops_list(client: OpsClient, limit: int, cursor: str | None, csv_file: Path | None, **filters: str | None) -> int:
    """Applications, newest first, filtered; one page (or with --csv, all of them)."""
    query = {param: str(filters[name]) for name, _, param in _FILTERS if filters.get(name)}
    query["limit"] = str(limit)
    if csv_file is not None:
        rows = export_csv(client, query, csv_file, cursor)
        click.echo(f"{rows} applications written to {csv_file}", err=True)
        return EXIT_OK
    if cursor:
        query["cursor"] = cursor
    data = client.data("GET", f"/applications?{requests.compat.urlencode(query)}") or {}
    items = data.get("items") or []
    _echo_table(
        ["received", "businessSystem", "openApplyCode", "status", "seller", "buyer", "channel", "amount", "findings",
         "reason"],
        [(i.get("receivedAt"), i.get("businessSystem"), i.get("openApplyCode"), i.get("status"),
          i.get("sellerTaxNumber"), i.get("buyerName"), i.get("channel"), i.get("amount"), i.get("openFindings"),
          _shorten(str(i["reason"]), 60) if i.get("reason") else None) for i in items],
    )  # fmt: skip
    if data.get("nextCursor"):
        click.echo(f"\nmore: fapiao-hub ops list ... --cursor {data['nextCursor']}")
    return EXIT_OK


def export_csv(client: OpsClient, query: dict[str, str], target: Path, cursor: str | None = None) -> int:
    """Every page of ``query`` as one CSV (one header row) into ``target``; the number of rows written.

    Pages come by cursor until the API gives none; a progress display on stderr counts them. The
    file is written to a temporary name and renamed at the end: an export cut short leaves no
    partial file that looks whole."""

    def pages() -> Iterable[tuple[str, int]]:
        nonlocal cursor
        first = True
        while True:
            text, following = client.csv_page({**query, **({"cursor": cursor} if cursor else {})})
            lines = text.splitlines(keepends=True)
            header, body = (lines[0], lines[1:]) if lines else ("", [])
            if not header.endswith(("\n", "\r")) and header:
                header += "\r\n"
            yield (header if first else "") + "".join(body), len(body)
            first = False
            if not following or following == cursor:
                return
            cursor = following

    rows = 0
    to_stdout = str(target) == "-"
    partial = target if to_stdout else target.with_name(target.name + ".partial")
    out = click.get_text_stream("stdout") if to_stdout else partial.open("w", encoding="utf-8", newline="")
    try:
        with click.progressbar(
            pages(),
            label="exporting",
            item_show_func=lambda page: f"{rows + (page[1] if page else 0)} applications" if page else None,
            file=click.get_text_stream("stderr"),
        ) as bar:
            for chunk, count in bar:
                out.write(chunk)
                rows += count
    finally:
        if not to_stdout:
            out.close()
    if not to_stdout:
        os.replace(partial, target)
    return rows


@ops.command("show")
@click.argument("business_system")
@click.argument("code")
@click.option("--json", "as_json", is_flag=True, help="The API's data as JSON.")
@shared_options
@pass_ops_client
def ops_show(client: OpsClient, business_system: str, code: str, as_json: bool) -> int:
    """One application: status, channel, attempts, findings, history, invoices, actions that apply."""
    data = client.data("GET", f"/applications/{_path_part(business_system)}/{_path_part(code)}") or {}
    if as_json:
        click.echo(_redact(json.dumps(data, ensure_ascii=False, indent=2)))
        return EXIT_OK
    echo_ops_application(data)
    return EXIT_OK


def echo_ops_application(data: dict[str, Any]) -> None:
    for name, value in (
        ("requestNumber", data.get("requestNumber")),
        ("attempts", data.get("attempts")),
        ("leaseUntil", china_time(data.get("leaseUntil"))),
        ("nextPollAt", china_time(data.get("nextPollAt"))),
        ("actions", ", ".join(str(a) for a in data.get("actions") or []) or None),
    ):
        click.echo(_redact(f"{name:<14}{_cell(value)}"))
    echo_status(data)
    findings = data.get("findings") or []
    click.echo("\nfindings")
    if findings:
        _echo_table(
            ["id", "kind", "open", "summary"],
            [(f.get("id"), f.get("kind"), "yes" if f.get("open", True) else "no", f.get("summary")) for f in findings],
            "  ",
        )
    else:
        click.echo("  none")
    raw = data.get("rawKeys") or []
    click.echo("\narchived requests and answers")
    for key in raw:
        click.echo(_redact(f"  {key}"))
    if not raw:
        click.echo("  none")


@ops.command("act")
@click.argument("business_system")
@click.argument("code")
@click.argument("action", type=click.Choice(OPS_ACTIONS))
@click.option("--reason", required=True, help="Why (recorded in the application's history, with your name).")
@click.option("--invoice-number", metavar="NUMBER", help="resolve-issued: the invoice's number.")
@click.option("--invoice-code", metavar="CODE", help="resolve-issued: the invoice's code (legacy invoices).")
@click.option("--invoice-date", metavar="YYYY-MM-DD", help="resolve-issued: the invoice's date.")
@click.option(
    "--invoice-amount",
    metavar="AMOUNT",
    help="resolve-issued: amount excl. tax on the invoice (required where the channel cannot be asked).",
)
@click.option("--invoice-tax", metavar="TAX", help="resolve-issued: tax on the invoice (as --invoice-amount).")
@click.option(
    "--seller-tax-number",
    metavar="TAXNO",
    help="resolve-issued: the seller's tax number on the invoice (as --invoice-amount).",
)
@click.option("--result-id", metavar="ID", help="attach-result: the unmatched result's id.")
@click.option(
    "--finding-id", "finding_ids", metavar="ID", multiple=True,
    help="acknowledge-finding: the finding's id; repeat it to acknowledge several with one reason (all or none).",
)  # fmt: skip
@shared_options
@pass_ops_client
def ops_act(
    client: OpsClient,
    business_system: str,
    code: str,
    action: str,
    reason: str,
    invoice_number: str | None,
    invoice_code: str | None,
    invoice_date: str | None,
    invoice_amount: str | None,
    invoice_tax: str | None,
    seller_tax_number: str | None,
    result_id: str | None,
    finding_ids: tuple[str, ...],
) -> int:
    """Apply ACTION to an application, with a reason; prints its status after.

    The API checks everything (a missing parameter is its 400, naming the field; a state the action
    does not apply to, its 409 with the current status): this command sends what it is given."""
    body: dict[str, Any] = {"action": action, "reason": reason}
    if action == "resolve-issued" or invoice_number or invoice_code or invoice_date:
        invoice = {"number": invoice_number, "code": invoice_code, "date": invoice_date, "amount": invoice_amount,
                   "tax": invoice_tax, "sellerTaxNumber": seller_tax_number}  # fmt: skip
        body["invoice"] = {k: v for k, v in invoice.items() if v}
    if result_id:
        body["resultId"] = result_id
    if len(finding_ids) == 1:
        body["findingId"] = finding_ids[0]
    elif finding_ids:
        body["findingIds"] = list(finding_ids)
    path = f"/applications/{_path_part(business_system)}/{_path_part(code)}/actions"
    data = client.data("POST", path, body) or {}
    click.echo(_redact(f"{action}: done; {business_system}/{code} is now {_cell(data.get('status'))}"))
    if data.get("reason"):
        click.echo(_redact(f"reason        {_cell(data.get('reason'))}"))
    return EXIT_OK


# ---------------------------------------------------------------------------- the hub configuration
def _json_path(loc: Sequence[Any]) -> str:
    """pydantic's error location as a JSON path: business_systems.sample-erp.companies.1000.seller, routes[0]."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(the document)"


def _checked_config(path: Path) -> tuple[Any, dict[str, Any]]:
    """The file's HubConfig and document, or every problem by JSON path on stderr and exit 2."""
    from pydantic import ValidationError

    from fapiao_hub.domain.config import HubConfig

    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        _exit(f"{path}: not readable ({type(error).__name__})", EXIT_USAGE)
    except ValueError as error:
        _exit(f"{path}: not JSON ({error})", EXIT_REFUSED)
    if not isinstance(document, dict):
        _exit(f"{path}: expected a JSON object", EXIT_REFUSED)
    try:
        return HubConfig.model_validate(document), document
    except ValidationError as invalid:
        for problem in invalid.errors(include_url=False, include_input=False):
            if not problem["loc"] and problem["type"] == "value_error":
                # The document's own checks (a token digest twice) name their JSON paths themselves.
                for line in problem["msg"].removeprefix("Value error, ").splitlines():
                    _say_error(line)
                continue
            _say_error(f"{_json_path(problem['loc'])}: {problem['msg']}")
        _exit(f"{path}: {invalid.error_count()} problem(s); nothing deployed", EXIT_REFUSED)


@main.group("config")
@shared_options
def config_group() -> None:
    """Check a hub configuration file, and store it as the hub reads it in AWS (docs/configuration.md)."""


@config_group.command("check")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@shared_options
@pass_settings
def config_check(settings: Settings, path: Path) -> int:
    """Every error of FILE by JSON path (exit 2), or a summary of what it configures."""
    del settings  # nothing to reach: the file alone is checked
    config, _ = _checked_config(path)
    sellers = sum(len(s.companies) for s in config.business_systems.values())
    click.echo(
        f"{path}: valid: {len(config.business_systems)} business systems, {sellers} companies, "
        f"{len(config.channels)} channels, {len(config.operators)} operators"
    )
    return EXIT_OK


@config_group.command("push")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--table", envvar="HUB_CONFIG_TABLE", required=True, help="The configuration table (HubConfigTable).")
@shared_options
@pass_settings
def config_push(settings: Settings, path: Path, table: str) -> int:
    """Check FILE, then write it to the configuration table: one item per business system and operator.

    Channel credentials and webhook secrets must not be in it (name a Secrets Manager secret with
    credentials_secret).
    Items no longer in FILE are deleted, after the new ones are written.
    """
    del settings
    import boto3
    from boto3.dynamodb.conditions import Key
    from botocore.exceptions import BotoCoreError, ClientError

    from fapiao_hub.domain.config import CONFIG_PARTITION, config_items, inline_secrets

    config, document = _checked_config(path)
    secrets = inline_secrets(config)
    if secrets:
        for where in secrets:
            _say_error(f"{where}: a secret in the configuration; put it in Secrets Manager (credentials_secret)")
        _exit(f"{path}: secrets inline; nothing pushed", EXIT_REFUSED)
    items = config_items(document)
    store = boto3.resource("dynamodb").Table(table)
    try:
        old = {i["sk"] for i in store.query(KeyConditionExpression=Key("id").eq(CONFIG_PARTITION))["Items"]}
        with store.batch_writer() as batch:
            for key, value in items.items():
                batch.put_item(Item={"id": CONFIG_PARTITION, "sk": key, "value": value})
        with store.batch_writer() as batch:
            for key in sorted(old - set(items)):
                batch.delete_item(Key={"id": CONFIG_PARTITION, "sk": key})
    except (BotoCoreError, ClientError) as error:
        _exit(f"{table}: {type(error).__name__}: {error}", EXIT_UNREACHABLE)
    click.echo(f"pushed {len(items)} items to {table} ({len(old - set(items))} removed)")
    return EXIT_OK


if __name__ == "__main__":
    main(prog_name="fapiao-hub")
