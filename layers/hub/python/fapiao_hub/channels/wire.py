"""Wire helpers shared by the channel modules: decimal text as vendors want it, lenient reading of
vendor numbers, text and comma-separated options, secret scrubbing for reasons, the HTTP session
policy (retry only what never left the machine), what a transport failure or an HTTP status means
before a vendor's own envelope is read, and reading an answer with personal data scrubbed; plus
:class:`NotExpressible` and the shared codes of what is refused before sending (each vendor module
keeps only its field names and codes)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError, ReadTimeoutError
from urllib3.util.retry import Retry

from fapiao_hub.domain import jsonutil
from fapiao_hub.domain.config import ChannelSettings
from fapiao_hub.domain.models import Application
from fapiao_hub.domain.number_range import RANGE_TEXT, dynamo_number
from fapiao_hub.domain.results import NotSent, Rejected, Unknown

CENT = Decimal("0.01")
EIGHT_PLACES = Decimal("1E-8")
MAX_REASON = 500  # characters of a vendor message kept in a reason
#: Statuses by which a server says it did not process the request: the same may be sent again.
NOT_PROCESSED_STATUSES = frozenset({408, 425, 429, 503})
#: Statuses by which a server refuses the request itself: sending it again would be refused again.
REFUSED_STATUSES = frozenset({400, 413, 414, 422})


# Codes of the Rejected outcomes vendor modules answer before sending anything (NotExpressible.code).
UNSUPPORTED_INVOICE_TYPE = "UNSUPPORTED_INVOICE_TYPE"
INVALID_DISCOUNT_LINES = "INVALID_DISCOUNT_LINES"
MISSING_BLUE_INVOICE = "MISSING_BLUE_INVOICE"
FIELD_TOO_LONG = "FIELD_TOO_LONG"


class NotExpressible(ValueError):
    """An application a vendor's request cannot express: the channel answers ``Rejected(reason, code)``
    without sending anything."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def quantize(value: Decimal, exponent: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 100
        return value.quantize(exponent, rounding=ROUND_HALF_UP)


def money_text(value: Decimal) -> str:
    return f"{quantize(value, CENT):f}"


def eight_places(value: Decimal) -> str:
    return f"{quantize(value, EIGHT_PLACES):f}"


def rate_text(value: Decimal) -> str:
    """A rate as written, trailing zeros dropped (0.130 -> 0.13, 0 -> 0)."""
    if value == 0:
        return "0"
    return f"{value.normalize():f}"


def text_or_none(value: Any) -> str | None:
    """A text field: None for absent or blank; numbers (the seed's integer ``otherId``) as digits."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value) if isinstance(value, int | str) else None
    if text is None or not text.strip():
        return None
    return text


def blank(value: Any) -> bool:
    """Absent: None, or text of nothing but whitespace."""
    return value is None or (isinstance(value, str) and not value.strip())


def raw_text(value: Any) -> str:
    """A vendor value as it came, for ``IssuedInvoice.unreadable``: None -> "", text as is, else JSON."""
    if value is None:
        return ""
    return value if isinstance(value, str) else jsonutil.dumps(value)


def comma_list(text: str | None) -> tuple[str, ...]:
    """The entries of a comma-separated option (``"a, b,,c"`` -> ``("a", "b", "c")``), in order."""
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def join_text(first: str | None, second: str | None) -> str | None:
    parts = [p for p in (first, second) if p is not None and p.strip()]
    return " ".join(parts) if parts else None


def parse_decimal(value: Any, field: str) -> Decimal | None:
    """A vendor's number: a JSON number, a numeric string, or empty / null (None). ValueError when it
    is not a number, or not one DynamoDB can keep (number_range)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal | int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        if not value.strip():
            return None
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{field}: not a number") from None
    else:
        raise ValueError(f"{field}: not a number")
    if not number.is_finite():
        raise ValueError(f"{field}: not a finite number")
    storable = dynamo_number(number)
    if storable is None:  # it could not be stored: the caller records the field as unreadable
        raise ValueError(f"{field}: outside {RANGE_TEXT}")
    return storable


def scrubber(values: Iterable[str | None]) -> Callable[[str], str]:
    secrets = sorted({v.strip() for v in values if v and len(v.strip()) >= 3}, key=len, reverse=True)

    def scrub(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "***")
        if len(text) > MAX_REASON:
            text = text[:MAX_REASON] + "..."
        return text

    return scrub


def no_scrub(text: str) -> str:
    return text[:MAX_REASON] + "..." if len(text) > MAX_REASON else text


def build_post_session(settings: ChannelSettings) -> requests.Session:
    """A session that retries only connecting (nothing sent yet), never a read, status or redirect."""
    retries = settings.connect_retries
    retry = Retry(
        total=retries,
        connect=retries,
        read=False,  # a read error is raised at once, never retried (and stays a ReadTimeout)
        status=0,
        other=0,
        redirect=False,
        status_forcelist=(),
        allowed_methods=Retry.DEFAULT_ALLOWED_METHODS,  # POST excluded; None would allow it
        respect_retry_after_header=False,
        raise_on_status=False,
        backoff_factor=0.1,
    )
    return mounted_session(retry)


def mounted_session(retry: Retry) -> requests.Session:
    """A session whose http and https adapters follow ``retry`` (a small pool: one vendor host)."""
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=4)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def nothing_sent(error: requests.ConnectionError) -> bool:
    """Connection refused / DNS / connect timeout: urllib3 gave up while connecting."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    cause = error.args[0] if error.args else None
    return isinstance(cause, MaxRetryError) and isinstance(cause.reason, NewConnectionError | ConnectTimeoutError)


def exchange(
    session: requests.Session, method: str, url: str, *, vendor: str, timeout: tuple[float, float], **kwargs: Any
) -> requests.Response | NotSent | Unknown:
    """One HTTP exchange with a vendor; a transport failure becomes the outcome it means.

    Nothing left the machine (refused, DNS, connect timeout, a request that could not be built):
    NotSent. The request may have arrived (a read timeout, a reset after sending, an answer cut
    short): Unknown. Redirects are never followed.
    """
    try:
        return session.request(method, url, timeout=timeout, allow_redirects=False, **kwargs)
    except requests.ConnectionError as error:
        # ConnectTimeout is a ConnectionError; so is a read timeout once a GET's read retries are spent.
        if nothing_sent(error):
            return NotSent(f"could not connect to {vendor} ({type(error).__name__}); nothing was sent")
        cause = error.args[0] if error.args else None
        if isinstance(cause, MaxRetryError) and isinstance(cause.reason, ReadTimeoutError):
            return Unknown(
                f"no answer within the read timeout of {timeout[1]} s, retries included", channel_failed=True
            )
        return Unknown(
            f"the connection failed after the request was sent ({type(error).__name__})", channel_failed=True
        )
    except requests.ReadTimeout:
        return Unknown(f"no answer within the read timeout of {timeout[1]} s", channel_failed=True)
    except (
        requests.exceptions.InvalidURL,
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidSchema,
        requests.exceptions.InvalidHeader,
    ) as error:
        return NotSent(f"the request could not be built ({type(error).__name__}); check the base_url")
    except Exception as error:  # ChunkedEncodingError, and anything else once sending began
        return Unknown(f"the answer could not be read ({type(error).__name__})")


def status_outcome(
    status_code: int,
    content: bytes,
    *,
    not_processed: str = "the server did not process the request",
    failed: str = "the request may have been processed",
) -> NotSent | Unknown | None:
    """What an HTTP status decides before any body is read; None: the body must be read.

    A redirect (never followed) and :data:`NOT_PROCESSED_STATUSES` are NotSent; any other 5xx is
    Unknown with the answer kept. ``not_processed`` / ``failed`` are the vendor's words in the reason.
    """
    if 300 <= status_code < 400:
        return NotSent(f"HTTP {status_code}: redirects are not followed (check the channel's base_url)")
    if status_code in NOT_PROCESSED_STATUSES:
        return NotSent(f"HTTP {status_code}: {not_processed}")
    if status_code >= 500:
        return Unknown(f"HTTP {status_code}: {failed}", raw=content, channel_failed=True)
    return None


def envelope_or_outcome(
    status_code: int,
    content: bytes,
    *,
    is_envelope: Callable[[dict[str, Any]], bool],
    envelope_name: str,
    issuing: bool = True,
) -> dict[str, Any] | NotSent | Rejected | Unknown:
    """The vendor's JSON envelope of an answer to a POST, or the outcome when there is none to read.

    The status first (:func:`status_outcome`). A 2xx answer that is not JSON, or not the envelope
    (``envelope_name`` says which), is Unknown. Another answer without the envelope:
    :data:`REFUSED_STATUSES` refuse the request, Rejected ``HTTP_<status>`` when ``issuing`` (nothing
    was issued) and Unknown for a query; any other status is NotSent.
    """
    decided = status_outcome(status_code, content)
    if decided is not None:
        return decided
    success = 200 <= status_code < 300
    try:
        answer = jsonutil.loads(content)
    except jsonutil.InvalidJson as error:
        if success:
            return Unknown(f"the answer is not valid JSON ({error})", raw=content)
        answer = None
    if isinstance(answer, dict) and is_envelope(answer):
        return answer
    if success:
        return Unknown(f"the answer is not {envelope_name}", raw=content)
    if status_code in REFUSED_STATUSES:
        if issuing:
            return Rejected(f"HTTP {status_code}: the server refused the request", code=f"HTTP_{status_code}")
        return Unknown(f"HTTP {status_code}: the server refused the query", raw=content)
    return NotSent(f"HTTP {status_code}: the server did not process the request")


def personal_data_scrubber(application: Application, credentials: dict[str, str]) -> Callable[[str], str]:
    """Removes the buyer's personal data and the channel's secrets from what a vendor says."""
    buyer = application.buyer
    return scrubber(
        [buyer.email, buyer.mobile, buyer.phone, buyer.tax_number, buyer.bank_account, *credentials.values()]
    )


def read_answer[T](
    sent: requests.Response | NotSent | Unknown,
    application: Application,
    credentials: dict[str, str],
    interpret: Callable[..., T],
) -> T | NotSent | Unknown:
    """What an :func:`exchange` came to: its transport failure as it is, else the vendor's reading
    ``interpret(status_code, content, scrub=...)`` with the application's personal data scrubbed."""
    if isinstance(sent, NotSent | Unknown):
        return sent
    return interpret(sent.status_code, sent.content, scrub=personal_data_scrubber(application, credentials))
