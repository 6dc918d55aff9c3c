"""The figures an invoice file states, read from its structured form (数电 XML, OFD): pure, no I/O.

Some channels report only a number (the partner, seed 003); the invoice's own file says what was
issued. :func:`read_figures` reads seller and buyer tax numbers, type, colour, date, totals and lines
from the file's bytes, so that verification.py compares *them* with the application instead of
taking the application's figures as the invoice's.

Formats:

- **XML** (the 数电 invoice's data file). Two spellings of the same facts are read:

  - the partner's documented file (sandbox/partner.py, ``GET /partner/files/<number>.xml``)::

      <EInvoice><InvoiceNumber/><InvoiceCode/><IssueTime/><InvoiceTypeCode>026</InvoiceTypeCode>
        <Red>0|1</Red><SellerTaxNo/><BuyerTaxNo/><TotalAmount/><TotalTax/><IssueDate>yyyy-mm-dd</IssueDate>
        <OriginalInvoiceNumber/><OriginalInvoiceCode/>
        <Line><GoodsName/><Amount/><Tax/><TaxRate/></Line>...</EInvoice>

  - the tax bureau's 数电 XML tag names, where they differ (``SellerIdNum``, ``BuyerIdNum``,
    ``TotalAmWithoutTax``, ``TotalTaxAm``, ``RequestTime``; lines ``IssuItemInformation`` with
    ``ItemName``, ``Amount``, ``ComTaxAm``, ``TaxRate``), found at any depth.

  Type codes are seed 000's (``004``, ``007``, ``026``, ``028``, ``01``, ``02``), the national codes
  the partner's file uses.
- **OFD** (GB/T 33190: a zip). A 数电 OFD invoice carries its XML data file as an attachment
  (``Doc_0/Attachs/...xml``); the first member ending ``.xml`` whose root is ``EInvoice`` is read as
  above. The OFD's page layer (its custom tags) is not read: an OFD without the XML attachment gives
  no figures.
- **PDF**: no figures (the text layer is not a contract).

Hostile files: a DOCTYPE (and so any entity declaration) is refused before parsing, since the
stdlib's parser would expand internal entities (billion laughs) and ``defusedxml`` is not a
dependency of the layer; the XML read is capped (:data:`MAX_XML_BYTES`), and so is every OFD member
(declared and read size), so a zip bomb is not inflated.

A file that cannot be read gives :class:`FileUnreadable` with the reason; one that is read but states
no figure gives figures with every field None.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ElementTree
import zipfile
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from fapiao_hub.domain.models import NATIONAL_INVOICE_TYPES, Direction, InvoiceType
from fapiao_hub.domain.results import InvoiceLine

MAX_XML_BYTES = 2 * 1024 * 1024  # an invoice's data file is a few KiB; anything near this is not one
_DOCTYPE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class FileUnreadable(ValueError):
    """The file is XML or OFD but its figures cannot be read (the reason says why)."""


@dataclass(frozen=True)
class FileFigures:
    """What an invoice file states (None: the file does not say)."""

    number: str | None = None
    code: str | None = None
    seller_tax_number: str | None = None
    buyer_tax_number: str | None = None
    invoice_type: InvoiceType | None = None
    direction: Direction | None = None
    issued_on: date | None = None
    amount: Decimal | None = None
    tax: Decimal | None = None
    lines: tuple[InvoiceLine, ...] = ()
    original_number: str | None = None
    original_code: str | None = None


def read_figures(data: bytes) -> FileFigures | None:
    """The figures ``data`` states; None for a format without figures (PDF, anything not XML/OFD).

    Raises :class:`FileUnreadable` for an XML or OFD file that cannot be read as an invoice."""
    if data.startswith(b"PK\x03\x04"):
        return _read_ofd(data)
    text = data.removeprefix(b"\xef\xbb\xbf").lstrip()
    if text.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16: the DOCTYPE check cannot see into it
        raise FileUnreadable("XML not in UTF-8 (a UTF-16 file is refused: its DOCTYPE could not be seen)")
    if text.startswith(b"<"):
        return read_xml(text)
    return None


def read_xml(data: bytes) -> FileFigures:
    if len(data) > MAX_XML_BYTES:
        raise FileUnreadable(f"XML larger than {MAX_XML_BYTES} bytes")
    if b"\x00" in data:
        raise FileUnreadable("XML not in UTF-8 (a UTF-16 file is refused: its DOCTYPE could not be seen)")
    if _DOCTYPE.search(data):
        raise FileUnreadable("XML with a DOCTYPE or entity declaration (refused: entity expansion)")
    try:
        # Read as UTF-8 whatever the declaration says, so the byte check above saw what the parser sees;
        # with no DOCTYPE there is no entity to expand (the reason defusedxml exists).
        parser = ElementTree.XMLParser(encoding="utf-8")  # noqa: S314 - DOCTYPE and entities refused above
        parser.feed(data)
        root = parser.close()
    except ElementTree.ParseError as error:
        raise FileUnreadable(f"not well-formed XML: {error}") from None
    if _local(root.tag) != "EInvoice":
        raise FileUnreadable(f"XML root is {_local(root.tag)!r}, not an EInvoice")
    return _figures(root)


# ---------------------------------------------------------------------------- XML
def _figures(root: ElementTree.Element) -> FileFigures:
    def text(*names: str) -> str | None:
        for name in names:
            for element in root.iter():
                if _local(element.tag) == name and element.text and element.text.strip():
                    return element.text.strip()
        return None

    type_code = text("InvoiceTypeCode")
    invoice_type = None
    if type_code is not None:
        invoice_type = NATIONAL_INVOICE_TYPES.get(type_code)
        if invoice_type is None:
            raise FileUnreadable(f"InvoiceTypeCode {type_code[:20]!r} is not a known type code")
    red = text("Red")
    if red not in (None, "0", "1"):
        raise FileUnreadable(f"Red {red[:20]!r} is not 0 or 1")
    number = text("InvoiceNumber", "EInvoiceNumber")
    code = text("InvoiceCode")
    original_code = text("OriginalInvoiceCode")
    return FileFigures(
        number=number,
        code=None if code == number else code,  # 数电: the number repeated as the code
        seller_tax_number=text("SellerTaxNo", "SellerIdNum"),
        buyer_tax_number=text("BuyerTaxNo", "BuyerIdNum"),
        invoice_type=invoice_type,
        direction=None if red is None else (Direction.RED if red == "1" else Direction.BLUE),
        issued_on=_date(text("IssueDate", "RequestTime", "IssueTime"), "IssueDate"),
        amount=_money(text("TotalAmount", "TotalAmWithoutTax"), "TotalAmount"),
        tax=_money(text("TotalTax", "TotalTaxAm"), "TotalTax"),
        lines=tuple(_lines(root)),
        original_number=text("OriginalInvoiceNumber"),
        original_code=original_code if original_code != text("OriginalInvoiceNumber") else None,
    )


def _lines(root: ElementTree.Element) -> list[InvoiceLine]:
    lines = []
    for position, element in enumerate(e for e in root.iter() if _local(e.tag) in ("Line", "IssuItemInformation")):
        cells = {_local(child.tag): (child.text or "").strip() for child in element}
        at = f"Line[{position}]"
        amount = _money(cells.get("Amount"), f"{at}.Amount")
        tax = _money(cells.get("Tax") or cells.get("ComTaxAm"), f"{at}.Tax")
        if amount is None or tax is None:
            raise FileUnreadable(f"{at} has no Amount or Tax")
        lines.append(
            InvoiceLine(
                goods_name=cells.get("GoodsName") or cells.get("ItemName") or "",
                amount=amount,
                tax=tax,
                tax_rate=_money(cells.get("TaxRate"), f"{at}.TaxRate"),
            )
        )
    return lines


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]  # without a namespace


def _money(value: str | None, name: str) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise FileUnreadable(f"{name} {value[:20]!r} is not a number") from None
    if not number.is_finite():
        raise FileUnreadable(f"{name} {value[:20]!r} is not a number")
    return number


def _date(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value[:10])  # "2026-12-07" or "2026-12-07 10:00:00"
    except ValueError:
        raise FileUnreadable(f"{name} {value[:20]!r} is not a date") from None


# ---------------------------------------------------------------------------- OFD
MAX_OFD_MEMBERS = 200


def _read_ofd(data: bytes) -> FileFigures | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            if len(members) > MAX_OFD_MEMBERS:
                raise FileUnreadable(f"zip with more than {MAX_OFD_MEMBERS} members")
            if "OFD.xml" not in {m.filename for m in members}:
                return None  # not an OFD: no figures of ours
            for member in members:
                if not member.filename.lower().endswith(".xml") or member.filename == "OFD.xml":
                    continue
                if member.file_size > MAX_XML_BYTES:
                    continue  # declared too large: never inflated
                with archive.open(member) as handle:
                    content = handle.read(MAX_XML_BYTES + 1)
                if len(content) > MAX_XML_BYTES or b"EInvoice" not in content[:4096]:
                    continue
                return read_xml(content.removeprefix(b"\xef\xbb\xbf").lstrip())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as error:
        if isinstance(error, FileUnreadable):
            raise
        raise FileUnreadable(f"OFD that is not a readable zip: {error}") from None
    return None  # an OFD without its XML data file: the page layer is not read
