"""Seed 004 (FAW tax platform ``receiveInvoiceOrder``) <-> the canonical application.

Business systems send ``{"invoiceOrder": {...}}``. This module validates that shape, builds the
canonical :class:`Application` and reports every problem by the caller's own JSON path
(``invoiceOrder.invoiceOrderSub[3].amtInclTax``). Fields the hub does not interpret are carried
through (``extras``) so the way back reproduces what was sent. Assumptions where the seed is
silent are written down in docs/intake.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from fapiao_hub.domain import money, rules
from fapiao_hub.domain.config import DEFAULT_INTAKE_INVOICE_TYPES, BusinessSystem, HubConfig
from fapiao_hub.domain.models import (
    Application,
    Direction,
    Line,
    LineNature,
    Party,
    Problem,
    RedReason,
    RedReference,
    SpecialBusiness,
    key_part_problem,
)
from fapiao_hub.domain.number_range import RANGE_TEXT, dynamo_number

ROOT = "invoiceOrder"
LINES = "invoiceOrderSub"
# Beyond any invoice (Xunlian caps totals at 14 characters); keeps every amount exact in JSON.
MAX_MONEY = Decimal(10) ** 12


# ---------------------------------------------------------------------------- value types
def _money(value: Any) -> Decimal | None:
    """Numbers, numeric strings and empty strings (docs/rules.md section 1); never through float."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise PydanticCustomError("money", "must be a number, not a boolean")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise PydanticCustomError("money", "must be a number, got {value!r}", {"value": value[:40]}) from None
    elif isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, float):  # only from callers that bypass the Decimal JSON parser
        number = Decimal(repr(value))
    else:
        raise PydanticCustomError("money", "must be a number or a numeric string")
    if not number.is_finite():
        raise PydanticCustomError("money", "must be a finite number")
    if number.copy_abs() >= MAX_MONEY:
        raise PydanticCustomError("money", "is out of range (at most 12 integer digits)")
    if dynamo_number(number) is None:
        raise PydanticCustomError("money", f"is outside {RANGE_TEXT}")
    return number


Money = Annotated[Decimal | None, BeforeValidator(_money)]
Code = Annotated[str, Field(min_length=1, max_length=100)]


def _key_part(value: str) -> str:
    """An openApplyCode is part of the application's key: no '#', no control characters."""
    problem = key_part_problem(value)
    if problem is not None:
        raise PydanticCustomError("key_part", problem)
    return value


ApplyCode = Annotated[Code, AfterValidator(_key_part)]


class _Shape(BaseModel):
    # Callers send codes as strings or numbers ("0" or 0): both are accepted as strings.
    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True, str_strip_whitespace=False)


# Field descriptions below are the OpenAPI document's (docs/openapi.json): what an integrator reads.
_MONEY_NOTE = "a number or a numeric string; empty means absent"
_INVOICE_TYPE_CODES = "; ".join(f"{code} {kind.value}" for code, kind in DEFAULT_INTAKE_INVOICE_TYPES.items())


class Seed004Line(_Shape):
    """One line of the invoice (开票明细, invoiceOrderSub). Fields not listed are carried through."""

    goods_name: str = Field(
        alias="goodsName",
        min_length=1,
        description="goods or service name (商品名称)",
        examples=["CA7201HA6TA(2024款)"],
    )
    nature: Literal["0", "1", "2"] = Field(
        "0",
        alias="invoiceLineNature",
        description="line nature (发票行性质): 0 normal, 1 discount line (折扣行: negative amount, directly after "
        "the line it discounts, same goods name, tax code and rate, no model/unit/quantity/price), "
        "2 discounted line (被折扣行)",
    )
    tax_code: str | None = Field(
        None,
        alias="taxonomyCode",
        pattern=r"^\d{19}$",
        description="tax classification code (税收分类编码), 19 digits",
        examples=["1090305010300000000"],
    )
    specification: str | None = Field(None, alias="model", description="specification / model (规格型号)")
    unit: str | None = Field(None, description="unit of measure (单位)", examples=["辆"])
    quantity: Money = Field(None, description=f"quantity, up to 8 decimals; with price or not at all; {_MONEY_NOTE}")
    price: Money = Field(
        None,
        description="unit price, tax-inclusive when amtInclTaxSign is 1 (else exclusive), up to 8 decimals; "
        f"|price x quantity - amount| <= 0.01; {_MONEY_NOTE}",
    )
    amount_incl_tax: Money = Field(
        None,
        alias="amtInclTax",
        description="line amount including tax, 2 decimals; required when amtInclTaxSign is 1 or absent; the hub "
        f"derives amount = round(amtInclTax / (1 + taxrate), 2) and tax = amtInclTax - amount; {_MONEY_NOTE}",
    )
    # Tax-exclusive mode (amtInclTaxSign "2"): not in the seed's example; the hub accepts
    # amt (and optionally tax) as documented in docs/intake.md.
    amount: Money = Field(
        None, alias="amt", description=f"line amount excluding tax; required when amtInclTaxSign is 2; {_MONEY_NOTE}"
    )
    tax: Money = Field(
        None,
        description="line tax when amtInclTaxSign is 2 (default round(amt x taxrate, 2)); "
        f"|amt x taxrate - tax| <= 0.06; {_MONEY_NOTE}",
    )
    tax_rate: Annotated[Decimal, BeforeValidator(_money)] = Field(
        alias="taxrate",
        description="tax rate as a fraction: 0, 0.01, 0.015, 0.03, 0.05, 0.06, 0.09 or 0.13 (the hub "
        "configuration may change the list); red reversals also 0.04, 0.10, 0.11, 0.16, 0.17; "
        "0 needs zeroTaxRateFlag",
        examples=["0.13"],
    )
    material_code: str | None = Field(None, alias="MaterialCode", description="the business system's material code")
    zero_rate_flag: Literal["1", "2", "3"] | None = Field(
        None,
        alias="zeroTaxRateFlag",
        description="zero-rate flag (零税率标识), required with taxrate 0: 1 exempt, 2 not taxable, "
        "3 ordinary zero rate",
    )
    preferential_policy: str | None = Field(
        None, alias="favouredPolicyName", description="preferential tax policy (优惠政策名称), e.g. 免税"
    )


class Seed004RedLog(_Shape):
    """redVatInvoiceInfoLog (销项红字增值税专用发票信息表): the seed's fields, all optional."""

    apply_red_reasons: str | None = Field(
        None,
        alias="applyRedReasons",
        description="red reason (红冲原因), national code: 01 issuing error (full reversal), 02 goods returned, "
        "03 service stopped, 04 sales allowance",
        json_schema_extra={"enum": [r.value for r in RedReason] + [None]},
    )
    blue_invoice_code: str | None = Field(
        None, alias="blueInvoiceCode", description="the reversed blue invoice's code (legacy invoices)"
    )
    blue_invoice_number: str | None = Field(
        None, alias="blueInvoiceNumber", description="the reversed blue invoice's number"
    )
    total_amt: Money = Field(None, alias="totalAmt", description=f"carried through; {_MONEY_NOTE}")
    total_amt_incl_tax: Money = Field(None, alias="totalAmtInclTax", description=f"carried through; {_MONEY_NOTE}")
    total_tax: Money = Field(None, alias="totalTax", description=f"carried through; {_MONEY_NOTE}")
    sub: list[dict[str, Any]] | None = Field(
        None, alias="redVatInvoiceInfoLogSub", description="the red form's lines; carried through"
    )


class Seed004Order(_Shape):
    """The invoice application (开票申请单). Fields not listed are carried through and returned."""

    open_apply_code: ApplyCode = Field(
        alias="openApplyCode",
        description="your application number (开票申请单号), 1-100 characters, no '#' or control characters, "
        "unique per business system: "
        "the same body again is answered the same, other content under it is a 409",
        examples=["swagger-example-0001"],
    )
    company_code: Code = Field(
        alias="bukrs",
        description="your company code (公司代码): selects the seller (tax number, name, address, bank) and its "
        "channel from the hub configuration; an unknown code is a 400 listing yours",
        examples=["VB5"],
    )
    open_invoice_type: str = Field(
        "0",
        alias="openInvoiceType",
        description="direction (开票类型): 0 blue (a normal invoice, the default), 1 red (a reversal of an issued "
        "blue invoice: blueInvoiceNumber required; a 数电 red also redConfirmUuid or redInvoiceInfoNo), 2 void "
        "(作废 an invoice the hub issued: blueInvoiceNumber, blueInvoiceCode where it has one, and "
        "applyCancelReason; lines are not needed; a 数电 invoice cannot be voided)",
        json_schema_extra={"enum": ["0", "1", "2"]},
    )
    invoice_type: str = Field(
        alias="invoiceType",
        min_length=1,
        description=f"invoice type code (发票种类): {_INVOICE_TYPE_CODES}. 数电 (01, 02, 0112, 0212) and legacy "
        "(004 paper special, 007 paper normal, 026 electronic normal, 028 electronic special); a deployment may "
        "add codes; any other is a 400 listing the accepted ones",
        examples=["028"],
    )
    business_type_code: str | None = Field(
        None,
        alias="businessTypeCode",
        description="your business type (业务类型编码); routing may pick the channel by it",
        examples=["098"],
    )
    business_type_name: str | None = Field(
        None, alias="businessTypeName", description="business type name", examples=["整车销售"]
    )
    buyer_tax_number: str | None = Field(
        None,
        alias="purchaserTaxpayerNo",
        description="buyer tax number (购方税号): 18-character unified social credit code (0-9, A-Y without I O Z S "
        "V) or a legacy 15/17/20-character number; required on special (专用) invoices; a wrong check "
        "character is a warning (a 400 in strict mode)",
        examples=["91220101MA0Y5K3N4H"],
    )
    buyer_name: str = Field(
        alias="purchaserTaxpayerName",
        min_length=1,
        description="buyer name (购方名称)",
        examples=["吉林省神州红旗汽车销售服务有限公司"],
    )
    buyer_code: str | None = Field(None, alias="purchaserTaxpayerCode", description="your customer code")
    buyer_address: str | None = Field(None, alias="purchaserAddress", description="buyer address (购方地址)")
    buyer_phone: str | None = Field(None, alias="purchaserPhone", description="buyer telephone (购方电话)")
    buyer_bank: str | None = Field(None, alias="purchaserBank", description="buyer bank name (购方开户行)")
    buyer_bank_account: str | None = Field(None, alias="purchaserBankNo", description="buyer bank account (购方账号)")
    buyer_email: str | None = Field(
        None,
        alias="purchaserEmail",
        max_length=254,
        description="where the buyer receives the invoice; personal data, never logged",
    )
    buyer_mobile: str | None = Field(
        None,
        alias="purchaserCellphone",
        max_length=32,
        description="buyer mobile number; personal data, never logged",
    )
    invoice_amount_incl_tax: Money = Field(
        None,
        alias="invoiceAmtInclTax",
        description=f"total including tax; checked against the lines, the line-derived total is stored; {_MONEY_NOTE}",
    )
    invoice_amount: Money = Field(
        None,
        alias="invoiceAmt",
        description=f"total excluding tax; |sum of line amounts - invoiceAmt| <= 0.01; {_MONEY_NOTE}",
    )
    invoice_tax: Money = Field(
        None,
        alias="invoiceTax",
        description=f"total tax; |sum(amount x rate) - invoiceTax| <= 1.27; {_MONEY_NOTE}",
    )
    remark: str | None = Field(None, description="remark printed on the invoice (备注)")
    amounts_include_tax: Literal["1", "2"] | None = Field(
        None,
        alias="amtInclTaxSign",
        description="1 or absent: line amounts (amtInclTax) and prices include tax; 2: they exclude it (amt, tax)",
    )
    red_confirm_uuid: str | None = Field(
        None, alias="redConfirmUuid", description="red: the red-confirmation form's UUID (红字确认单, 数电)"
    )
    red_info_no: str | None = Field(
        None, alias="redInvoiceInfoNo", description="red: the red-confirmation form's number (红字信息表编号)"
    )
    blue_invoice_code: str | None = Field(
        None, alias="blueInvoiceCode", description="red: the reversed blue invoice's code (legacy invoices only)"
    )
    blue_invoice_number: str | None = Field(
        None,
        alias="blueInvoiceNumber",
        description="red: the reversed blue invoice's number; the red amounts may not exceed what it has left",
    )
    blue_invoice_date: str | None = Field(
        None, alias="originInvoiceDate", description="red: the blue invoice's date (yyyy-mm-dd)"
    )
    lines: list[Seed004Line] = Field(
        alias=LINES, min_length=1, description="the lines (at most 5000; over 2000 is a warning)"
    )
    building: list[dict[str, Any]] | None = Field(
        None, alias="invoiceOrderBuildingSub", description="construction services (建筑服务); carried through"
    )
    freight: list[dict[str, Any]] | None = Field(
        None, alias="invoiceOrderTransportSub", description="freight transport (货物运输); carried through"
    )
    passenger_transport: list[dict[str, Any]] | None = Field(
        None,
        alias="invoiceOrderPassengerTransportSub",
        description="passenger transport (旅客运输); carried through",
    )
    red_log: Seed004RedLog | None = Field(
        None, alias="redVatInvoiceInfoLog", description="red: the red-information form; applyRedReasons is read"
    )

    @field_validator("amounts_include_tax", mode="before")
    @classmethod
    def _blank_sign_is_absent(cls, value: Any) -> Any:
        """An empty amtInclTaxSign means tax-inclusive, as an absent one does (docs/intake.md)."""
        return None if isinstance(value, str) and not value.strip() else value


class Seed004Request(BaseModel):
    """An invoice application in the FAW (一汽) tax platform's receiveInvoiceOrder shape."""

    model_config = ConfigDict(extra="ignore")
    invoice_order: Seed004Order = Field(alias=ROOT, description="the application")


# ---------------------------------------------------------------------------- results
@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass
class IntakeResult:
    application: Application | None = None
    channel: str | None = None
    errors: list[FieldError] = field(default_factory=list)
    warnings: list[FieldError] = field(default_factory=list)


DIRECTIONS = {"0": Direction.BLUE, "1": Direction.RED}

# Canonical field -> seed 004 field, for translating rule problems into the caller's paths.
_BUYER_FIELDS = {
    "name": "purchaserTaxpayerName",
    "tax_number": "purchaserTaxpayerNo",
    "address": "purchaserAddress",
    "phone": "purchaserPhone",
    "bank_name": "purchaserBank",
    "bank_account": "purchaserBankNo",
    "email": "purchaserEmail",
    "mobile": "purchaserCellphone",
    "code": "purchaserTaxpayerCode",
}
_RED_FIELDS = {
    "blue_invoice_number": "blueInvoiceNumber",
    "blue_invoice_code": "blueInvoiceCode",
    "blue_invoice_date": "originInvoiceDate",
    "reason": "redVatInvoiceInfoLog.applyRedReasons",
    "confirmation_uuid": "redConfirmUuid",
    "confirmation_number": "redInvoiceInfoNo",
}
_HEADER_FIELDS = {
    "open_apply_code": "openApplyCode",
    "company_code": "bukrs",
    "invoice_type": "invoiceType",
    "direction": "openInvoiceType",
    "remark": "remark",
    "lines": LINES,
    "amount": "invoiceAmt",
    "tax": "invoiceTax",
    "amount_incl_tax": "invoiceAmtInclTax",
    "business_type_code": "businessTypeCode",
    "business_type_name": "businessTypeName",
    "prices_include_tax": "amtInclTaxSign",
}
_SPECIAL_FIELDS = {
    "building": "invoiceOrderBuildingSub",
    "freight": "invoiceOrderTransportSub",
    "passenger_transport": "invoiceOrderPassengerTransportSub",
}


def _line_fields(prices_include_tax: bool) -> dict[str, str]:
    amount_field = "amtInclTax" if prices_include_tax else "amt"
    return {
        "goods_name": "goodsName",
        "nature": "invoiceLineNature",
        "tax_code": "taxonomyCode",
        "specification": "model",
        "unit": "unit",
        "quantity": "quantity",
        "unit_price": "price",
        "amount": amount_field,
        "amount_incl_tax": "amtInclTax" if prices_include_tax else amount_field,
        "tax": amount_field if prices_include_tax else "tax",
        "tax_rate": "taxrate",
        "material_code": "MaterialCode",
        "zero_rate_flag": "zeroTaxRateFlag",
        "preferential_policy": "favouredPolicyName",
    }


def json_path(loc: tuple[str | int, ...]) -> str:
    """('invoiceOrder', 'invoiceOrderSub', 3, 'amtInclTax') -> invoiceOrder.invoiceOrderSub[3].amtInclTax"""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or ROOT


def caller_path(path: tuple[str | int, ...], prices_include_tax: bool) -> str:
    """A canonical problem path in seed 004's field names."""
    if not path:
        return ROOT
    head, rest = path[0], path[1:]
    if head == "lines" and rest and isinstance(rest[0], int):
        index, sub = rest[0], rest[1:]
        base = f"{ROOT}.{LINES}[{index}]"
        if not sub:
            return base
        if sub[0] == "extras":
            return json_path((base, *sub[1:]))
        return f"{base}.{_line_fields(prices_include_tax).get(str(sub[0]), str(sub[0]))}"
    if head == "buyer":
        return f"{ROOT}.{_BUYER_FIELDS.get(str(rest[0]), str(rest[0]))}" if rest else f"{ROOT}.purchaserTaxpayerName"
    if head == "seller":
        return f"{ROOT}.bukrs"
    if head == "red":
        return f"{ROOT}.{_RED_FIELDS.get(str(rest[0]), str(rest[0]))}" if rest else f"{ROOT}.blueInvoiceNumber"
    if head == "special" and rest:
        return json_path((ROOT, _SPECIAL_FIELDS.get(str(rest[0]), str(rest[0])), *rest[1:]))
    if head == "extras":
        return json_path((ROOT, *rest))
    return f"{ROOT}.{_HEADER_FIELDS.get(str(head), str(head))}"


def red_refusal_field(body: Any, path: tuple[str | int, ...]) -> str:
    """The caller's field for a red application its blue invoice refused (intake.workflow.RedRefused).

    The blue invoice's number may have come in the header or only in redVatInvoiceInfoLog: name the
    one the caller sent.
    """
    field = caller_path(path, prices_include_tax=True)
    if path[:1] == ("red",) and len(path) > 1 and path[1] in ("blue_invoice_number", "blue_invoice_code"):
        order = body.get(ROOT) if isinstance(body, dict) else None
        header_name = _RED_FIELDS[str(path[1])]
        if (
            isinstance(order, dict)
            and order.get(header_name) in (None, "")
            and isinstance(order.get("redVatInvoiceInfoLog"), dict)
        ):
            return f"{ROOT}.redVatInvoiceInfoLog.{header_name}"
    return field


def _shape_errors(error: ValidationError) -> list[FieldError]:
    found = []
    for detail in error.errors(include_url=False):
        message = "is required" if detail["type"] == "missing" else detail["msg"]
        found.append(FieldError(json_path(tuple(detail["loc"])), message))
    return found


# ---------------------------------------------------------------------------- voids (openInvoiceType 2)
VOID = "2"


class Seed004VoidOrder(_Shape):
    """A void request (作废, openInvoiceType 2): the invoice and why. Other fields are ignored."""

    open_apply_code: ApplyCode = Field(alias="openApplyCode")
    company_code: Code = Field(alias="bukrs")
    open_invoice_type: Literal["2"] = Field(alias="openInvoiceType")
    cancel_reason: str = Field(alias="applyCancelReason", min_length=1, max_length=500)
    blue_invoice_number: str = Field(alias="blueInvoiceNumber", min_length=1, max_length=40)
    blue_invoice_code: str | None = Field(None, alias="blueInvoiceCode", max_length=20)

    @field_validator("cancel_reason", "blue_invoice_number")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("blank", "is required")
        return value.strip()


class Seed004VoidRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    invoice_order: Seed004VoidOrder = Field(alias=ROOT)


def is_void(body: Any) -> bool:
    """Whether a body asks for a void (openInvoiceType 2, as a string or a number)."""
    order = body.get(ROOT) if isinstance(body, dict) else None
    return isinstance(order, dict) and str(order.get("openInvoiceType", "")).strip() == VOID


@dataclass(frozen=True)
class VoidOrder:
    open_apply_code: str
    company_code: str
    seller_tax_number: str | None
    blue_invoice_number: str
    blue_invoice_code: str | None
    reason: str


def to_void(body: Any, *, system: BusinessSystem) -> tuple[VoidOrder | None, list[FieldError]]:
    """A void request's fields, or every problem by the caller's path."""
    try:
        order = Seed004VoidRequest.model_validate(body).invoice_order
    except ValidationError as error:
        return None, _shape_errors(error)
    company = system.companies.get(order.company_code)
    if company is None:
        known = ", ".join(sorted(system.companies)) or "none configured"
        return None, [FieldError(f"{ROOT}.bukrs", f"unknown company code {order.company_code!r} (known: {known})")]
    code = (order.blue_invoice_code or "").strip() or None
    return (
        VoidOrder(
            open_apply_code=order.open_apply_code,
            company_code=order.company_code,
            seller_tax_number=company.seller.tax_number,
            blue_invoice_number=order.blue_invoice_number,
            blue_invoice_code=code,
            reason=order.cancel_reason,
        ),
        [],
    )


# ---------------------------------------------------------------------------- seed 004 -> canonical
def to_application(
    body: Any,
    *,
    source_system: str,
    system: BusinessSystem,
    config: HubConfig,
    policy: rules.RulePolicy,
) -> IntakeResult:
    """Validate a seed 004 body and build the canonical application, or say everything wrong."""
    try:
        order = Seed004Request.model_validate(body).invoice_order
    except ValidationError as error:
        return IntakeResult(errors=_shape_errors(error))

    result = IntakeResult()
    errors = result.errors
    company = system.companies.get(order.company_code)
    if company is None:
        known = ", ".join(sorted(system.companies)) or "none configured"
        errors.append(FieldError(f"{ROOT}.bukrs", f"unknown company code {order.company_code!r} (known: {known})"))
    invoice_type = config.intake_invoice_types.get(order.invoice_type)
    if invoice_type is None:
        accepted = ", ".join(sorted(config.intake_invoice_types))
        errors.append(
            FieldError(
                f"{ROOT}.invoiceType",
                f"unknown invoice type code {order.invoice_type!r} (accepted: {accepted})",
            )
        )
    direction = DIRECTIONS.get(order.open_invoice_type)
    if direction is None:
        errors.append(
            FieldError(
                f"{ROOT}.openInvoiceType", f"must be 0 (blue), 1 (red) or 2 (void), got {order.open_invoice_type!r}"
            )
        )
    reason_code = order.red_log.apply_red_reasons if order.red_log else None
    reason = None
    if reason_code:
        try:
            reason = RedReason(reason_code)
        except ValueError:
            accepted = ", ".join(r.value for r in RedReason)
            errors.append(
                FieldError(
                    f"{ROOT}.redVatInvoiceInfoLog.applyRedReasons",
                    f"unknown red reason {reason_code!r} (accepted: {accepted})",
                )
            )

    prices_include_tax = order.amounts_include_tax != "2"
    lines = []
    for index, raw in enumerate(order.lines):
        line, line_errors = _to_line(index, raw, prices_include_tax)
        errors.extend(line_errors)
        if line is not None:
            lines.append(line)
    if errors:
        return result

    assert company is not None and invoice_type is not None and direction is not None
    amount, tax = money.totals(lines)
    red = None
    blue_number = order.blue_invoice_number or (order.red_log.blue_invoice_number if order.red_log else None)
    if direction is Direction.RED and blue_number:
        red = RedReference(
            blue_invoice_number=blue_number,
            blue_invoice_code=order.blue_invoice_code or (order.red_log.blue_invoice_code if order.red_log else None),
            blue_invoice_date=order.blue_invoice_date,
            reason=reason,
            confirmation_uuid=order.red_confirm_uuid,
            confirmation_number=order.red_info_no,
        )
    application = Application(
        source_system=source_system,
        open_apply_code=order.open_apply_code,
        direction=direction,
        invoice_type=invoice_type,
        company_code=order.company_code,
        seller=company.seller,
        buyer=Party(
            name=order.buyer_name,
            tax_number=order.buyer_tax_number or None,
            address=order.buyer_address or None,
            phone=order.buyer_phone or None,
            bank_name=order.buyer_bank or None,
            bank_account=order.buyer_bank_account or None,
            email=order.buyer_email or None,
            mobile=order.buyer_mobile or None,
            code=order.buyer_code or None,
        ),
        lines=tuple(lines),
        prices_include_tax=prices_include_tax,
        amount=amount,
        tax=tax,
        remark=order.remark or None,
        red=red,
        special=SpecialBusiness(
            building=order.building or [],
            freight=order.freight or [],
            passenger_transport=order.passenger_transport or [],
        ),
        business_type_code=order.business_type_code,
        business_type_name=order.business_type_name,
        extras=_header_extras(body[ROOT]),
    )
    problems: list[Problem] = rules.validate_application(application, policy)
    problems += money.check_header_totals(
        lines,
        amount=order.invoice_amount,
        tax=order.invoice_tax,
        amount_incl_tax=order.invoice_amount_incl_tax,
        prices_include_tax=prices_include_tax,
    )
    for problem in problems:
        entry = FieldError(caller_path(problem.path, prices_include_tax), problem.message)
        (result.warnings if problem.warning else errors).append(entry)
    if not errors:
        result.application = application
        # The company's first channel; intake routes by capability (ChannelRegistry.capable_channels).
        result.channel = company.channel_names[0] if company.channel_names else None
    return result


def _to_line(index: int, raw: Seed004Line, prices_include_tax: bool) -> tuple[Line | None, list[FieldError]]:
    base = f"{ROOT}.{LINES}[{index}]"
    if prices_include_tax:
        if raw.amount_incl_tax is None:
            return None, [FieldError(f"{base}.amtInclTax", "is required when amounts include tax (amtInclTaxSign 1)")]
        amount, tax = money.split_tax_inclusive(raw.amount_incl_tax, raw.tax_rate)
    else:
        if raw.amount is None:
            return None, [FieldError(f"{base}.amt", "is required when amounts exclude tax (amtInclTaxSign 2)")]
        amount = raw.amount
        tax = raw.tax if raw.tax is not None else money.tax_for(raw.amount, raw.tax_rate)
    line = Line(
        index=index,
        nature=LineNature(raw.nature),
        goods_name=raw.goods_name,
        tax_code=raw.tax_code,
        specification=raw.specification or None,
        unit=raw.unit or None,
        quantity=raw.quantity,
        unit_price=raw.price,
        amount=amount,
        tax=tax,
        tax_rate=raw.tax_rate,
        zero_rate_flag=raw.zero_rate_flag,
        preferential_policy=raw.preferential_policy or None,
        material_code=raw.material_code,
        extras=dict(raw.model_extra or {}),
    )
    return line, []


# Header fields that map to canonical fields; everything else is carried in extras (including the
# caller's own invoiceType code, which several codes may share a canonical type).
_MAPPED_HEADER = {
    "openApplyCode", "bukrs", "openInvoiceType", "businessTypeCode", "businessTypeName",
    *(_BUYER_FIELDS.values()), "invoiceAmtInclTax", "invoiceAmt", "invoiceTax", "remark", "amtInclTaxSign",
    "redConfirmUuid", "redInvoiceInfoNo", "blueInvoiceCode", "blueInvoiceNumber", "originInvoiceDate",
    LINES, *(_SPECIAL_FIELDS.values()),
}  # fmt: skip


def _header_extras(raw_order: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw_order.items() if k not in _MAPPED_HEADER}


# ---------------------------------------------------------------------------- canonical -> seed 004
def from_application(application: Application) -> dict[str, Any]:
    """The application in seed 004's shape, with the line-derived totals the hub stored."""
    order: dict[str, Any] = dict(application.extras)
    inverse_directions = {v: k for k, v in DIRECTIONS.items()}
    order.update(
        {
            "openApplyCode": application.open_apply_code,
            "bukrs": application.company_code,
            "openInvoiceType": inverse_directions[application.direction],
            "invoiceType": _intake_code(application),
            "invoiceAmt": application.amount,
            "invoiceTax": application.tax,
            "invoiceAmtInclTax": application.amount_incl_tax,
            "amtInclTaxSign": "1" if application.prices_include_tax else "2",
            "purchaserTaxpayerName": application.buyer.name,
        }
    )
    buyer = application.buyer.model_dump()
    for canonical, seed_name in _BUYER_FIELDS.items():
        if buyer.get(canonical) is not None:
            order[seed_name] = buyer[canonical]
    optional = {
        "businessTypeCode": application.business_type_code,
        "businessTypeName": application.business_type_name,
        "remark": application.remark,
    }
    if application.red is not None:
        optional.update(
            {
                "blueInvoiceNumber": application.red.blue_invoice_number,
                "blueInvoiceCode": application.red.blue_invoice_code,
                "originInvoiceDate": application.red.blue_invoice_date,
                "redConfirmUuid": application.red.confirmation_uuid,
                "redInvoiceInfoNo": application.red.confirmation_number,
            }
        )
    order.update({k: v for k, v in optional.items() if v is not None})
    for canonical, seed_name in _SPECIAL_FIELDS.items():
        records = getattr(application.special, canonical)
        if records:
            order[seed_name] = records
    order[LINES] = [_from_line(line, application.prices_include_tax) for line in application.lines]
    return {ROOT: order}


def _intake_code(application: Application) -> str:
    """The caller's own code when it sent one, else the default table's first code for the type."""
    code = application.extras.get("invoiceType")
    if code:
        return str(code)
    return next(k for k, v in DEFAULT_INTAKE_INVOICE_TYPES.items() if v == application.invoice_type)


def _from_line(line: Line, prices_include_tax: bool) -> dict[str, Any]:
    out: dict[str, Any] = dict(line.extras)
    out.update({"goodsName": line.goods_name, "invoiceLineNature": line.nature.value, "taxrate": line.tax_rate})
    if prices_include_tax:
        out["amtInclTax"] = line.amount_incl_tax
    else:
        out["amt"] = line.amount
        out["tax"] = line.tax
    optional = {
        "taxonomyCode": line.tax_code,
        "model": line.specification,
        "unit": line.unit,
        "quantity": line.quantity,
        "price": line.unit_price,
        "MaterialCode": line.material_code,
        "zeroTaxRateFlag": line.zero_rate_flag,
        "favouredPolicyName": line.preferential_policy,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    return out
