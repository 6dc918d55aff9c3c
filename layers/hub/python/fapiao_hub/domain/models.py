"""The hub's canonical model: what an invoice application *is*, independent of any wire format.

Intake shapes (seed 004) and channels (seeds 000-003) map to and from these models; the core
(rules, workflow, store) only ever sees these. Money is ``Decimal`` end to end.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import unicodedata
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

CENT = Decimal("0.01")


def round_money(value: Decimal) -> Decimal:
    """Round to 2 decimals, half up (docs/rules.md section 1)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


class InvoiceType(StrEnum):
    """docs/rules.md section 3: one canonical enum; every intake shape and channel maps to it."""

    DIGITAL_SPECIAL = "DIGITAL_SPECIAL"  # 数电专票
    DIGITAL_NORMAL = "DIGITAL_NORMAL"  # 数电普票
    VAT_SPECIAL_PAPER = "VAT_SPECIAL_PAPER"  # 增值税专用发票
    VAT_NORMAL_PAPER = "VAT_NORMAL_PAPER"  # 增值税普通发票
    VAT_NORMAL_ELECTRONIC = "VAT_NORMAL_ELECTRONIC"  # 增值税电子普通发票
    VAT_SPECIAL_ELECTRONIC = "VAT_SPECIAL_ELECTRONIC"  # 增值税电子专用发票

    @property
    def is_special(self) -> bool:
        """专票: buyer tax number required; reversed only by a special invoice."""
        return self in {
            InvoiceType.DIGITAL_SPECIAL,
            InvoiceType.VAT_SPECIAL_PAPER,
            InvoiceType.VAT_SPECIAL_ELECTRONIC,
        }

    @property
    def is_digital(self) -> bool:
        """数电: 20-digit number, no invoice code, cannot be voided (only reversed)."""
        return self in {InvoiceType.DIGITAL_SPECIAL, InvoiceType.DIGITAL_NORMAL}

    @property
    def is_paper(self) -> bool:
        return self in {InvoiceType.VAT_SPECIAL_PAPER, InvoiceType.VAT_NORMAL_PAPER}


#: The national invoice type codes (the tax bureau's; seed 000 and the invoice files carry them) ->
#: canonical type (docs/rules.md section 3, legacy column).
NATIONAL_INVOICE_TYPES: dict[str, InvoiceType] = {
    "004": InvoiceType.VAT_SPECIAL_PAPER,
    "007": InvoiceType.VAT_NORMAL_PAPER,
    "026": InvoiceType.VAT_NORMAL_ELECTRONIC,
    "028": InvoiceType.VAT_SPECIAL_ELECTRONIC,
    "01": InvoiceType.DIGITAL_SPECIAL,
    "02": InvoiceType.DIGITAL_NORMAL,
}


class Direction(StrEnum):
    BLUE = "BLUE"  # 蓝字发票: an ordinary invoice
    RED = "RED"  # 红字发票: reverses (part of) an issued blue invoice


class LineNature(StrEnum):
    """发票行性质 (docs/rules.md section 2). Values are the codes every seed uses."""

    NORMAL = "0"
    DISCOUNT = "1"  # 折扣行: negative, immediately follows the line it discounts
    DISCOUNTED = "2"  # 被折扣行


class RedReason(StrEnum):
    """Why a red invoice is issued (docs/rules.md section 4); values are the national codes."""

    ISSUING_ERROR = "01"  # full reversal only, same lines
    GOODS_RETURNED = "02"  # quantity may shrink
    SERVICE_STOPPED = "03"  # amount and quantity may shrink, not price
    SALES_ALLOWANCE = "04"  # price and quantity empty


class Status(StrEnum):
    """Application lifecycle (ARCHITECTURE.md, State). Moves forward only."""

    RECEIVED = "RECEIVED"
    DISPATCHING = "DISPATCHING"
    SUBMITTED = "SUBMITTED"
    UNKNOWN = "UNKNOWN"
    RETRY_WAIT = "RETRY_WAIT"
    ISSUED = "ISSUED"
    REJECTED = "REJECTED"
    VOIDING = "VOIDING"
    VOIDED = "VOIDED"
    STUCK = "STUCK"
    MANUAL_REVIEW = "MANUAL_REVIEW"
    # A channel reported a result that differs from the application (verification.py): the result is
    # recorded in full, the business system is told it needs review, a person decides.
    MISMATCH = "MISMATCH"
    # An operator ended an application that never reached a channel (operations.py: cancel).
    CANCELLED = "CANCELLED"

    @property
    def needs_person(self) -> bool:
        """Listed, alarmed while it lasts, resolved by an operator action (docs/operations.md)."""
        return self in NEEDS_PERSON_STATUSES

    @property
    def is_open(self) -> bool:
        """Open applications are watched by the poller until they reach an outcome."""
        return self in OPEN_STATUSES


OPEN_STATUSES = frozenset(
    {
        Status.RECEIVED,
        Status.DISPATCHING,
        Status.SUBMITTED,
        Status.UNKNOWN,
        Status.RETRY_WAIT,
        Status.VOIDING,
    }
)
NEEDS_PERSON_STATUSES = frozenset({Status.MANUAL_REVIEW, Status.STUCK, Status.MISMATCH})


def _plain_json(value: Any) -> Any:
    """Opaque pass-through data keeps its JSON types: a number stays a number when stored."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else float(value)
    if isinstance(value, dict):
        return {k: _plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_json(v) for v in value]
    return value


# Fields of a caller's shape that the hub carries through untouched.
Extras = Annotated[dict[str, Any], PlainSerializer(_plain_json, when_used="json")]
Records = Annotated[list[dict[str, Any]], PlainSerializer(_plain_json, when_used="json")]


# Forward-only lifecycle: every transition the hub may make. MANUAL_REVIEW and STUCK still accept
# the facts (an invoice found issued, a rejection) because a result must never be lost.
ALLOWED_TRANSITIONS: dict[Status, frozenset[Status]] = {
    # Facts (an invoice issued, a refusal) are accepted from every open state.
    # A channel reporting "in progress" for a RECEIVED application has it already (out of band).
    Status.RECEIVED: frozenset(
        {
            Status.DISPATCHING, Status.SUBMITTED, Status.ISSUED, Status.REJECTED, Status.STUCK, Status.MISMATCH,
            Status.CANCELLED, Status.MANUAL_REVIEW,
        }
    ),
    Status.DISPATCHING: frozenset(
        {
            Status.ISSUED, Status.SUBMITTED, Status.UNKNOWN, Status.REJECTED, Status.RETRY_WAIT,
            Status.MANUAL_REVIEW, Status.STUCK, Status.MISMATCH,
        }
    ),
    Status.RETRY_WAIT: frozenset(
        {
            Status.DISPATCHING, Status.ISSUED, Status.SUBMITTED, Status.REJECTED, Status.STUCK, Status.MISMATCH,
            Status.CANCELLED, Status.MANUAL_REVIEW,
        }
    ),
    # MANUAL_REVIEW from the waiting states: a result that cannot be recorded (an invoice clash).
    Status.SUBMITTED: frozenset(
        {
            Status.ISSUED, Status.REJECTED, Status.UNKNOWN, Status.STUCK, Status.VOIDING, Status.VOIDED,
            Status.MISMATCH, Status.MANUAL_REVIEW,
        }
    ),
    Status.UNKNOWN: frozenset(
        {
            Status.DISPATCHING, Status.ISSUED, Status.SUBMITTED, Status.REJECTED, Status.MANUAL_REVIEW, Status.STUCK,
            Status.MISMATCH, Status.RETRY_WAIT,
        }
    ),
    # RETRY_WAIT: an operator confirmed nothing was issued and the channel de-duplicates (operations.py).
    Status.MANUAL_REVIEW: frozenset(
        {Status.ISSUED, Status.REJECTED, Status.VOIDING, Status.VOIDED, Status.MISMATCH, Status.RETRY_WAIT}
    ),
    # The open states: an operator requeued it (back to the state it was stuck in) or confirmed
    # nothing was issued; CANCELLED: it never reached a channel.
    Status.STUCK: frozenset(
        {
            Status.ISSUED, Status.REJECTED, Status.MANUAL_REVIEW, Status.VOIDING, Status.VOIDED, Status.MISMATCH,
            Status.RECEIVED, Status.RETRY_WAIT, Status.SUBMITTED, Status.UNKNOWN, Status.CANCELLED,
        }
    ),
    Status.ISSUED: frozenset({Status.VOIDING, Status.VOIDED}),
    Status.VOIDING: frozenset({Status.VOIDED, Status.ISSUED, Status.STUCK}),
    # A person accepted the reported invoice (operator action), or the channel voided it.
    Status.MISMATCH: frozenset({Status.ISSUED, Status.VOIDING, Status.VOIDED}),
    Status.REJECTED: frozenset(),
    Status.VOIDED: frozenset(),
    Status.CANCELLED: frozenset(),
}  # fmt: skip


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)


class Party(_Model):
    """Seller (销方) or buyer (购方)."""

    name: str
    tax_number: str | None = None
    address: str | None = None
    phone: str | None = None
    bank_name: str | None = None
    bank_account: str | None = None
    # Personal data: never logged, never put in error messages.
    email: str | None = None
    mobile: str | None = None
    # The caller's own code for this party (seed 004 purchaserTaxpayerCode).
    code: str | None = None


class Line(_Model):
    """One invoice line in canonical form.

    A discount always travels as its own line (nature DISCOUNT, negative amount) right after the
    line it discounts (nature DISCOUNTED); shapes that carry the discount on the discounted line
    are unfolded on the way in (discounts.unfold_inline_discount).
    """

    index: int = Field(description="position in the caller's line list (for error paths)")
    nature: LineNature = LineNature.NORMAL
    goods_name: str
    tax_code: str | None = None  # 税收分类编码, 19 digits
    specification: str | None = None  # 规格型号
    unit: str | None = None
    quantity: Decimal | None = None
    unit_price: Decimal | None = None  # in the basis given by Application.prices_include_tax
    amount: Decimal  # tax-exclusive, 2 decimals
    tax: Decimal  # 2 decimals
    tax_rate: Decimal
    zero_rate_flag: str | None = None  # 零税率标识: 1 exempt, 2 not taxable, 3 ordinary zero rate
    preferential_policy: str | None = None  # 优惠政策名称; set means the policy is used
    material_code: str | None = None
    extras: Extras = Field(default_factory=dict)

    @property
    def amount_incl_tax(self) -> Decimal:
        return self.amount + self.tax


class RedReference(_Model):
    """What a red application reverses (docs/rules.md section 4)."""

    blue_invoice_number: str
    blue_invoice_code: str | None = None  # legacy invoices only
    blue_invoice_date: str | None = None
    reason: RedReason | None = None
    confirmation_uuid: str | None = None  # 红字确认单 UUID (数电)
    confirmation_number: str | None = None  # 红字确认单/信息表编号


class SpecialBusiness(_Model):
    """Special business sub-tables (特定业务): carried through and stored, not interpreted."""

    building: Records = Field(default_factory=list)  # 不动产 / 建筑服务
    freight: Records = Field(default_factory=list)  # 货物运输
    passenger_transport: Records = Field(default_factory=list)  # 旅客运输

    def is_empty(self) -> bool:
        return not (self.building or self.freight or self.passenger_transport)


class Application(_Model):
    """An invoice application (开票申请单) as the hub keeps it."""

    source_system: str  # the business system that submitted it (from its token)
    open_apply_code: str  # the caller's application number, unique per source system
    direction: Direction
    invoice_type: InvoiceType
    company_code: str  # the seller's company code in the source system (seed 004 bukrs)
    seller: Party
    buyer: Party
    lines: tuple[Line, ...]
    prices_include_tax: bool = True
    # Totals derived from the lines (the header totals a caller sent are checked, not stored).
    amount: Decimal
    tax: Decimal
    remark: str | None = None
    red: RedReference | None = None
    special: SpecialBusiness = Field(default_factory=SpecialBusiness)
    business_type_code: str | None = None
    business_type_name: str | None = None
    extras: Extras = Field(default_factory=dict)

    @property
    def amount_incl_tax(self) -> Decimal:
        return self.amount + self.tax

    @property
    def key(self) -> str:
        return application_key(self.source_system, self.open_apply_code)


KEY_SEPARATOR = "#"


def key_part_problem(value: str) -> str | None:
    """Why ``value`` cannot be a part of an application's key (a business system's name, an
    openApplyCode), or None. ``#`` joins the parts: allowed inside one, ``a`` + ``b#c`` and ``a#b`` +
    ``c`` would be the same key, one tenant's application reachable by another."""
    if KEY_SEPARATOR in value:
        return f"must not contain {KEY_SEPARATOR!r} (it separates the parts of the hub's keys)"
    if any(unicodedata.category(character) == "Cc" for character in value):
        return "must not contain control characters"
    return None


def application_key(source_system: str, open_apply_code: str) -> str:
    """The applications table's key. Its parts are checked where they come in (intake refuses such an
    openApplyCode, the configuration such a name; the HTTP router never decodes a '#' into a path
    parameter): a part that would still let two keys collide is a bug, never a key."""
    for part in (source_system, open_apply_code):
        problem = key_part_problem(part)
        if problem is not None:
            raise ValueError(f"{part!r} {problem}")
    return f"{source_system}{KEY_SEPARATOR}{open_apply_code}"


class FindingKind(StrEnum):
    """What a check of a channel's result found (docs/operations.md says what a person does about each)."""

    RESULT_MISMATCH = "RESULT_MISMATCH"  # the reported invoice(s) differ from the application
    UNREADABLE_RESULT = "UNREADABLE_RESULT"  # a field of the result could not be read (kept raw)
    POSSIBLE_DUPLICATE_ISSUANCE = "POSSIBLE_DUPLICATE_ISSUANCE"  # another invoice after the outcome
    # Reconciliation: the channel's answer, asked again later, differs from the hub's state.
    ISSUED_BUT_REJECTED = "ISSUED_BUT_REJECTED"  # hub REJECTED (or not issued), the channel issued
    INVOICE_MISSING = "INVOICE_MISSING"  # the channel reports an invoice the hub lacks
    TOTALS_DIFFER = "TOTALS_DIFFER"  # counts or amounts differ from what the hub recorded
    VOIDED_AT_CHANNEL = "VOIDED_AT_CHANNEL"  # the channel says voided, the hub does not
    # The channel reports, for this application, an invoice the hub holds for another application.
    INVOICE_CLASH = "INVOICE_CLASH"
    # A report the lifecycle cannot apply in the state it found (never silent: a person looks).
    REPORT_NOT_APPLIED = "REPORT_NOT_APPLIED"
    # An invoice reported for an application an operator had CANCELLED (its business system was told
    # nothing was issued, and may send it again): a second issuance waiting to happen.
    RESULT_AFTER_CANCEL = "RESULT_AFTER_CANCEL"
    # A channel pushed a result for a request number the hub sent to another channel (or never sent):
    # not applied, kept as an unmatched result (the finding travels with it, not on the application).
    RESULT_FROM_UNASKED_CHANNEL = "RESULT_FROM_UNASKED_CHANNEL"


class Difference(_Model):
    """One field that differs: what the application (or the hub's record) expected, what was reported.

    ``field`` is a neutral dotted name (``seller.tax_number``, ``invoice_type``, ``amount``,
    ``invoices[1].issued_on``); values are text as a person reads them (``None``: absent)."""

    field: str
    expected: str | None = None
    reported: str | None = None


class Finding(_Model):
    """Something about an application that a person must look at; kept on the application.

    ``id`` is stable for the same discrepancy (kind, application, invoices, the fields that differ; not
    the values reported), so seeing it again (a repeated callback, every later reconciliation run)
    updates this one (``count``, ``last_seen``, the values now reported) and never adds another."""

    id: str
    kind: FindingKind
    at: str  # ISO 8601, UTC
    source: str  # dispatch | callback | poll | reconciliation
    summary: str
    differences: tuple[Difference, ...] = ()
    invoice_numbers: tuple[str, ...] = ()
    open: bool = True
    acknowledged_by: str | None = None
    acknowledged_at: str | None = None
    acknowledged_reason: str | None = None
    # Other applications it concerns (their keys; the clashing one): for the operations desk only,
    # never in a business system's answer (another tenant's application may be named).
    related: tuple[str, ...] = ()
    count: int = 1  # how many times it was seen (the first time included)
    last_seen: str | None = None  # ISO 8601, UTC: the latest sighting after the first (``at``)


class Problem(_Model):
    """One thing wrong with an application.

    ``path`` is in canonical terms, e.g. ``("lines", 3, "tax")`` or ``("buyer", "tax_number")``;
    each intake shape translates it into the caller's field names.
    """

    path: tuple[str | int, ...]
    message: str
    warning: bool = False


def new_request_number() -> str:
    """A fresh request number for one submission of an application: drawn at intake and stored with it.

    Sent on every try of that submission, for ever (it is stored before dispatch, so no retry or
    dispatcher can change it); a corrected resubmission of a REJECTED application draws a new one.
    Random (90 bits from ``secrets``), so nobody can compute another tenant's number from its
    business system and application code, as anyone could from :func:`request_number_for`'s.
    20 characters (Nuonuo's orderNo limit), "FH" and base32 letters and digits (every channel accepts them).
    """
    return "FH" + base64.b32encode(secrets.token_bytes(15)).decode("ascii")[:18]


def request_number_for(application_key: str, submission: int = 1) -> str:
    """The request number applications stored before numbers were drawn at random were sent under.

    Only for those old items (``StoredApplication.sent_request_number`` falls back to it when no number
    is stored): an unkeyed hash of public data, so new applications never use it (new_request_number).
    Derived from the application's key and its submission (1, then 2, 3, ... for each corrected
    resubmission); the first submission's is the key's alone.
    """
    seed = application_key if submission == 1 else f"{application_key}#submission-{submission}"
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    return "FH" + base64.b32encode(digest).decode("ascii")[:18]


def invoice_key(code: str | None, number: str) -> str:
    """Invoices table key: the number, with the code for legacy invoices (docs/rules.md section 3)."""
    return f"{code}-{number}" if code else number
