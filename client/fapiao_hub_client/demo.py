"""Sample orders for ``fapiao-hub demo`` (seed 004 shape), built fresh for every run.

The blue orders are docs/examples/order-<channel>.json when the repository is at hand, else the
same order built here: seed 004's own example (five lines: two discount pairs and a car) as a
增值税电子专用发票 (``028``) with a valid buyer tax number. Every order gets a code unique to the run.

It also checks an outcome against its order (:func:`invoice_check`): the seller, type and totals of
the invoices the hub reports (the seller, which the hub's answer does not show, from the channel's
sandbox record). Not used by any Lambda handler (the CLI is a client of the API, nothing more).
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = "invoiceOrder"
LINES = "invoiceOrderSub"


def repository_checkouts() -> list[Path]:
    """Where a repository checkout may be: around this file (an editable install: the file is
    client/fapiao_hub_client/demo.py), and the working directory."""
    here = Path(__file__).resolve().parents
    return [*([here[2]] if len(here) > 2 else []), Path.cwd()]


VALID_BUYER_TAX_NUMBER = "91220101MA0Y5K3N4H"
LEGACY_SPECIAL = "028"  # 增值税电子专用发票: every sandbox channel issues it
DIGITAL_SPECIAL = "0112"  # 数电专票 (seed 004's own example): Xunlian cannot, VB5's second channel does
UNKNOWN_COMPANY = "ZZ-DEMO"  # routed nowhere: refused at intake


def _line(row: int, nature: str, amount: float, *, model: str, material: str, goods: str, vehicle: str) -> dict:
    line: dict[str, Any] = {
        "MaterialCode": material,
        "amtInclTax": amount,
        "businessScope": "H5-2",
        "factoryPlateModel": "H5-2",
        "goodsName": goods,
        "invoiceLineNature": nature,
        "materialGroup": "HQ",
        "originRowNo": str(row),
        "taxLevel2Code": "1090305",
        "taxonomyCode": "1090305010300000000",
        "taxrate": 0.13,
        "vehicleNo": model,
        "vehicleType": vehicle,
    }
    if nature != "1":  # discount lines (nature 1) carry no price, quantity, unit or model
        line.update(model=model, price=abs(amount), quantity=1, unit="辆")
    return line


_H5 = {
    "material": "HFC1BLCC1Q1QDY0000",
    "goods": "CA7151HA6T智联旗悦版(2023款)",
    "vehicle": "CA7151HA6T智联旗悦版(2023款)红旗H5-2 1.5T",
}
_HQ = {
    "material": "HFCECMCC2J2JDY0001",
    "goods": "CA7201HA6TA智联旗畅版(2024款)",
    "vehicle": "CA7201HA6TA智联旗畅版(2024款)20TD-GPF",
}

# Seed 004's example, as docs/examples/order-*.json carry it (028, a valid buyer tax number).
SEED_EXAMPLE: dict[str, Any] = {
    ROOT: {
        "amtInclTaxSign": "1",
        "applyDate": "2024-08-20 17:40:48",
        "billDate": "2024-08-20 17:40:48",
        "bukrs": "VB5",
        "businessTypeCode": "098",
        "businessTypeName": "整车销售",
        "createUser": "sunzhimin3",
        "invoiceAmt": 5327.44,
        "invoiceAmtInclTax": 6020.0,
        "invoiceSource": "7",
        "invoiceTax": 692.56,
        "invoiceType": LEGACY_SPECIAL,
        "openApplyCode": "demo-0001",
        "openInvoiceType": "0",
        "purchaserTaxpayerCode": "DJL606",
        "purchaserTaxpayerName": "吉林省神州红旗汽车销售服务有限公司",
        "purchaserTaxpayerNo": VALID_BUYER_TAX_NUMBER,
        "receivePurchaserInfo": "1",
        LINES: [
            _line(0, "2", 48.0, model="THFC1BLCC1Q1QD160", **_H5),
            _line(1, "1", -38.0, model="THFC1BLCC1Q1QD160", **_H5),
            _line(2, "2", 48.0, model="THFC1BLCC1Q1QD009", **_H5),
            _line(3, "1", -38.0, model="THFC1BLCC1Q1QD009", **_H5),
            _line(4, "0", 6000.0, model="THFCECMCC2J2J1270", **_HQ),
        ],
    }
}


def run_suffix() -> str:
    """Unique per run: a timestamp and a little randomness (two runs in one second differ)."""
    return f"{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(2)}"


def example_path(channel: str) -> Path | None:
    for root in repository_checkouts():
        path = root / "docs" / "examples" / f"order-{channel}.json"
        if path.is_file():
            return path
    return None


def with_code(order: dict[str, Any], code: str, company_code: str | None = None) -> dict[str, Any]:
    """A copy of ``order`` under another openApplyCode (lines too), optionally for another company."""
    order = copy.deepcopy(order)
    header = order[ROOT]
    header["openApplyCode"] = code
    if company_code is not None:
        header["bukrs"] = company_code
    for line in header.get(LINES) or []:
        if "openApplyCode" in line:
            line["openApplyCode"] = code
    return order


def blue_order(channel: str, company_code: str, code: str) -> tuple[dict[str, Any], str]:
    """The channel's example order (or the seed's), for ``company_code`` under ``code``; and where
    it came from."""
    path = example_path(channel)
    if path is not None:
        try:
            base = json.loads(path.read_text(encoding="utf-8"))
            source = f"docs/examples/{path.name}"
        except (OSError, ValueError):
            base, source = SEED_EXAMPLE, "seed 004 example"
    else:
        base, source = SEED_EXAMPLE, "seed 004 example"
    return with_code(base, code, company_code), source


def digital_order(company_code: str, code: str) -> dict[str, Any]:
    """Seed 004's example as published (a 数电专票, 0112, with a valid buyer): routed to the first of
    the company's channels that can issue 数电 (VB5: not Xunlian, its second channel)."""
    order = with_code(SEED_EXAMPLE, code, company_code)
    order[ROOT]["invoiceType"] = DIGITAL_SPECIAL
    return order


def unknown_company_order(code: str, known: set[str]) -> dict[str, Any]:
    company = UNKNOWN_COMPANY
    while company in known:
        company += "X"
    return with_code(SEED_EXAMPLE, code, company)


def discount_pairs(order: dict[str, Any]) -> int:
    return sum(1 for line in order[ROOT].get(LINES) or [] if str(line.get("invoiceLineNature")) == "1")


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def red_order(blue: dict[str, Any], invoice: dict[str, Any], code: str) -> dict[str, Any]:
    """A red order (goods returned, reason 02) against the issued ``invoice`` of ``blue``: its
    largest normal line, quantity -1 (smaller than the blue total, which also has discount pairs),
    like events/intake-post-red.json but pointing at the issued invoice."""
    header = blue[ROOT]
    normal = [line for line in header[LINES] if str(line.get("invoiceLineNature", "0")) == "0"]
    line = max(normal or header[LINES], key=lambda item: Decimal(str(item.get("amtInclTax", 0))))
    gross = _cents(Decimal(str(line["amtInclTax"])) / Decimal(str(line.get("quantity") or 1)))
    rate = Decimal(str(line["taxrate"]))
    net = _cents(gross / (1 + rate))
    tax = gross - net
    number, invoice_code = invoice["invoiceNumber"], invoice.get("invoiceCode")
    reversed_line = {
        key: line[key]
        for key in ("goodsName", "taxonomyCode", "taxrate", "unit", "model", "MaterialCode")
        if key in line
    }
    reversed_line.update(invoiceLineNature="0", amtInclTax=float(-gross), price=float(gross), quantity=-1)
    red_log: dict[str, Any] = {"applyRedReasons": "02", "blueInvoiceNumber": number, "reason": "vehicle returned"}
    order: dict[str, Any] = {
        "openApplyCode": code,
        "bukrs": header["bukrs"],
        "openInvoiceType": "1",
        "invoiceType": header["invoiceType"],
        "amtInclTaxSign": "1",
        "businessTypeCode": header.get("businessTypeCode"),
        "businessTypeName": header.get("businessTypeName"),
        "purchaserTaxpayerName": header["purchaserTaxpayerName"],
        "purchaserTaxpayerNo": header.get("purchaserTaxpayerNo"),
        "blueInvoiceNumber": number,
        "invoiceAmtInclTax": float(-gross),
        "invoiceAmt": float(-net),
        "invoiceTax": float(-tax),
        "redVatInvoiceInfoLog": red_log,
        LINES: [reversed_line],
    }
    if invoice_code:
        order["blueInvoiceCode"] = invoice_code
        red_log["blueInvoiceCode"] = invoice_code
    if invoice.get("invoiceDate"):
        order["originInvoiceDate"] = str(invoice["invoiceDate"])[:10]
    return {ROOT: {k: v for k, v in order.items() if v is not None}}


# ---------------------------------------------------------------------------- does the invoice match?

#: Where each sandbox tells which seller an invoice is of (the hub's GET answer does not show it):
#: channel type -> (path of its record by request number, invoice number key, seller key).
SANDBOX_RECORDS: dict[str, tuple[str, str, str]] = {
    "xunlian": ("/_sandbox/issued/{}", "invoiceNumber", "sellerTaxId"),
    "kingdee": ("/_sandbox/bills/{}", "invoiceNumber", "sellerTaxpayerId"),
    "ekuaibao": ("/_sandbox/issued/{}", "invoiceNumber", "sellerTaxNo"),
    "partner": ("/_sandbox/applications/{}", "invoiceNumber", "facts.sellerTaxNo"),
}
_SENT_AS = re.compile(r"sending to \S+ as (\S+)")


def request_number(data: dict[str, Any]) -> str | None:
    """The request number the channel knows the application by: the GET answer's, else the history
    note that recorded the dispatch."""
    if data.get("requestNumber"):
        return str(data["requestNumber"])
    for entry in data.get("history") or []:
        found = _SENT_AS.search(str(entry.get("note") or ""))
        if found:
            return found.group(1)
    return None


def _dig(item: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        item = item.get(key) if isinstance(item, dict) else None
    return item


def sandbox_sellers(channel: dict[str, Any], number: str | None, *, timeout: float = 5.0) -> dict[str, str]:
    """Invoice number -> seller tax number, as the channel's sandbox recorded them ({} when unknown)."""
    known = SANDBOX_RECORDS.get(str(channel.get("type")))
    if known is None or not number or not channel.get("base_url"):
        return {}
    path, number_key, seller_key = known
    try:
        import requests  # the CLI's dependency; demo.py itself stays importable without it

        answer = requests.get(channel["base_url"] + path.format(quote(number, safe="")), timeout=timeout)
        record = answer.json() if answer.status_code == 200 else {}
    except (OSError, ValueError):  # requests' errors are OSErrors: no record, nothing to compare
        return {}
    invoices = record.get("invoices") if isinstance(record, dict) else None
    return {
        str(i[number_key]): str(_dig(i, seller_key))
        for i in invoices or []
        if isinstance(i, dict) and i.get(number_key) and _dig(i, seller_key)
    }


def company_sellers(hub_config_file: str | None) -> dict[str, str]:
    """Company code -> seller tax number, from the local run's hub configuration."""
    if not hub_config_file:
        return {}
    try:
        document = json.loads(Path(hub_config_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {
        code: str(company["seller"]["tax_number"])
        for system in (document.get("business_systems") or {}).values()
        for code, company in (system.get("companies") or {}).items()
        if isinstance(company, dict) and (company.get("seller") or {}).get("tax_number")
    }


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value not in (None, "") else None
    except ArithmeticError:
        return None


def invoice_check(
    data: dict[str, Any], expected_seller: str | None, sellers: dict[str, str]
) -> tuple[list[str], list[str]]:
    """(differences, fields not reported) between the invoices of an application's GET answer and its
    order: seller, type, totals (sums over all invoices: a channel may split one application)."""
    from fapiao_hub.domain.config import DEFAULT_INTAKE_INVOICE_TYPES
    from fapiao_hub.domain.limits import INVOICE_TAX, LINES_VS_TOTAL

    order = data.get(ROOT) or {}
    invoices = [i for i in data.get("invoices") or [] if i.get("invoiceNumber") is not None]
    differences: list[str] = []
    unreported: list[str] = []
    if not invoices:
        return ["no invoice"], []
    # seller
    reported = [i.get("sellerTaxNumber") or sellers.get(str(i["invoiceNumber"])) for i in invoices]
    if expected_seller is None or not all(reported):
        unreported.append("seller")
    else:
        wrong = sorted({s for s in reported if s != expected_seller})
        if wrong:
            differences.append(f"seller {', '.join(str(w) for w in wrong)} != {expected_seller}")
    # type
    expected_type = DEFAULT_INTAKE_INVOICE_TYPES.get(str(order.get("invoiceType")))
    types = [i.get("invoiceType") for i in invoices]
    if expected_type is None or not all(types):
        unreported.append("type")
    else:
        wrong = sorted({str(t) for t in types if t != expected_type.value})
        if wrong:
            differences.append(f"type {', '.join(wrong)} != {expected_type.value}")
    # totals
    amounts = [_decimal(i.get("amount")) for i in invoices]
    taxes = [_decimal(i.get("tax")) for i in invoices]
    expected_amount, expected_tax = _decimal(order.get("invoiceAmt")), _decimal(order.get("invoiceTax"))
    if expected_amount is None or any(a is None for a in amounts):
        unreported.append("totals")
    else:
        amount = sum((a for a in amounts if a is not None), Decimal(0))
        tax = sum((t for t in taxes if t is not None), Decimal(0))
        if abs(amount - expected_amount) > LINES_VS_TOTAL:
            differences.append(f"amount {amount} != {expected_amount}")
        if expected_tax is not None and all(t is not None for t in taxes) and abs(tax - expected_tax) > INVOICE_TAX:
            differences.append(f"tax {tax} != {expected_tax}")
    return differences, unreported


def describe_check(differences: list[str], unreported: list[str]) -> str:
    """One short line for the demo's table."""
    if differences:
        return "DOES NOT MATCH its order: " + "; ".join(differences)
    checked = [name for name in ("seller", "type", "totals") if name not in unreported]
    text = f"matches its order ({', '.join(checked)})" if checked else "nothing to compare"
    if unreported:
        text += f"; not reported: {', '.join(unreported)}"
    return text


def void_order(code: str, company_code: str, invoice: dict[str, Any]) -> dict[str, Any]:
    """A void request (openInvoiceType 2, 作废) for an issued ``invoice`` (as GET shows it)."""
    order: dict[str, Any] = {
        "openApplyCode": code,
        "bukrs": company_code,
        "openInvoiceType": "2",
        "applyCancelReason": "demo: issued to the wrong buyer",
        "blueInvoiceNumber": invoice["invoiceNumber"],
    }
    if invoice.get("invoiceCode"):
        order["blueInvoiceCode"] = invoice["invoiceCode"]
    return {ROOT: order}


def rejection_remark(code: str) -> str:
    """The remark of the demo's order that the channel's sandbox is told to refuse."""
    return f"demo {code}: to be refused"


def switch_rejection_on(channel: dict[str, Any], remark: str, *, timeout: float = 5.0) -> bool:
    """The channel's sandbox refuses the order carrying ``remark`` (its ``reject`` fault, scripted for
    that order only: the hub draws request numbers at random, so the sandbox knows the order by its
    remark). False when the sandbox could not be asked."""
    if not channel.get("base_url"):
        return False
    try:
        import requests  # the CLI's dependency; demo.py itself stays importable without it

        answer = requests.post(
            f"{channel['base_url']}/_sandbox/faults", json={f"note:{remark}": ["reject"]}, timeout=timeout
        )
    except OSError:
        return False
    return answer.status_code == 200


def partner_takes_void(channel: dict[str, Any], number: str, *, timeout: float = 5.0) -> bool:
    """The partner's own side of a void (out of band, like its issues; seed 003 has no void call):
    its sandbox voids what it issued under ``number``. False when it could not be asked."""
    if channel.get("type") != "partner" or not channel.get("base_url"):
        return False
    try:
        import requests  # the CLI's dependency; demo.py itself stays importable without it

        answer = requests.post(
            channel["base_url"] + "/_sandbox/voids", json={"requestId": number, "after_ms": 500}, timeout=timeout
        )
    except OSError:
        return False
    return answer.status_code == 200
