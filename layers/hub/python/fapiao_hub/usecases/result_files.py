"""An issued result's invoice files: the figures a file states where the channel said nothing, and
the files kept in S3 (inline base64 decoded, linked URLs fetched through the LinkedFiles port).

Downloads are not done while a pushing channel waits on its callback: the application is marked
"files pending" and the dispatch queue brings it back (ResultFiles.fetch_pending).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date

from fapiao_hub.domain import invoice_files
from fapiao_hub.domain.results import InvoiceFile, IssuedInvoice
from fapiao_hub.infra.files import FileStore, InvalidFile, LinkedFiles, decode_base64_strict
from fapiao_hub.infra.store import ApplicationStore
from fapiao_hub.infra.store.records import StoredApplication


class ResultFiles:
    """Reads and keeps the files of the invoices a channel reported."""

    def __init__(
        self,
        store: ApplicationStore,
        files: FileStore,
        linked: LinkedFiles,
        come_back: Callable[[StoredApplication, int], object],
    ):
        self._store = store
        self._files = files
        self._linked = linked
        # Brings the application back after a delay (the dispatcher's queue message).
        self._come_back = come_back

    def store(
        self,
        stored: StoredApplication,
        issued: tuple[IssuedInvoice, ...],
        items: list[dict],
        *,
        fetch: bool,
        fetched: dict[str, bytes | Exception] | None = None,
    ) -> None:
        """Each invoice's files to S3 (base64 decoded strictly; URLs fetched where allowed, once:
        ``fetched`` holds what reading the figures fetched already, bytes or the refusal)."""
        pending = False
        fetched = fetched or {}

        def fetch_once(url: str) -> bytes:
            if url in fetched:
                got = fetched[url]
                if isinstance(got, Exception):
                    raise got
                return got
            return self._linked.fetch(url, stored.channel)

        for invoice, item in zip(issued, items, strict=True):
            if not invoice.files:
                continue
            records = []
            for file in invoice.files:
                record = self._files.store_invoice_file(
                    seller_tax_number=stored.application.seller.tax_number or stored.application.company_code,
                    issued_on=invoice.issued_on,
                    invoice_number=invoice.number,
                    file=file,
                    fetch=fetch_once if fetch else None,
                )
                pending = pending or (record.source == "url" and not record.ok and not fetch)
                records.append(record.to_item())
                if record.error and "FetchRefused" in record.error:
                    # A URL outside the channel's file hosts, a redirect, a file over the cap: a person
                    # sees it on the history (the URL without its query), not only on the file entry.
                    self._store.note(stored.key, f"invoice {invoice.number}: file not fetched ({record.error})")
            self._store.update_invoice(str(item["pk"]), {"files": records})
        if pending:
            # Downloads are not done while a channel waits on its callback: the dispatch queue
            # brings the application back to fetch them (fetch_pending).
            self._store.mark_files_pending(stored.key, True)
            self._come_back(stored, 0)

    def fetch_pending(self, stored: StoredApplication) -> str:
        """The linked files a pushed result left unfetched, fetched and stored now."""
        for item in self._store.invoices(stored):
            files = item.get("files") or []
            if not any(f.get("url") and not f.get("key") for f in files):
                continue
            refreshed = []
            for f in files:
                if f.get("url") and not f.get("key"):
                    record = self._files.store_invoice_file(
                        seller_tax_number=stored.application.seller.tax_number or stored.application.company_code,
                        issued_on=_date_or_none(item.get("issued_on")),
                        invoice_number=str(item["number"]),
                        file=InvoiceFile(url=f["url"], format_hint=f.get("format")),
                        fetch=lambda url: self._linked.fetch(url, stored.channel),
                    )
                    f = record.to_item()
                refreshed.append(f)
            self._store.update_invoice(str(item["pk"]), {"files": refreshed})
        self._store.mark_files_pending(stored.key, False)
        return "files fetched"

    def read_figures(
        self, stored: StoredApplication, issued: tuple[IssuedInvoice, ...], *, fetch: bool
    ) -> tuple[tuple[IssuedInvoice, ...], dict[str, bytes | Exception]]:
        """The figures a channel did not report, read from the invoice's own structured file (数电 XML,
        OFD: invoice_files.py) so that they are compared with the application rather than taken from
        it. Only where the channel left a figure out;
        URLs only where fetching is allowed now (not while a pushing channel waits). Returns the
        invoices with what their files state (``from_file`` names it) and what was fetched, for
        store() to keep without fetching again. The caller asks only for a result still to be verified."""
        fetched: dict[str, bytes | Exception] = {}
        read = []
        for invoice in issued:
            if not _lacks_figures(invoice):
                read.append(invoice)
                continue
            figures, problem = None, None
            for file in invoice.files:
                data = None
                if file.content_base64 is not None:
                    try:
                        data = decode_base64_strict(file.content_base64)
                    except InvalidFile:
                        continue  # the file store records why
                elif file.url and fetch:
                    if file.url not in fetched:
                        try:
                            fetched[file.url] = self._linked.fetch(file.url, stored.channel)
                        except Exception as error:  # refused or failed: recorded with the file
                            fetched[file.url] = error
                    got = fetched[file.url]
                    data = got if isinstance(got, bytes) else None
                if data is None:
                    continue
                try:
                    figures = invoice_files.read_figures(data)
                except invoice_files.FileUnreadable as error:
                    problem = str(error)
                    continue
                if figures is not None:
                    break
            read.append(_with_file_figures(invoice, figures, problem))
        return tuple(read), fetched


def _date_or_none(value: object) -> date | None:
    return date.fromisoformat(str(value)) if value else None


def _lacks_figures(invoice: IssuedInvoice) -> bool:
    """The channel left out a figure its invoice's file could state."""
    return None in (invoice.amount, invoice.tax, invoice.seller_tax_number, invoice.invoice_type, invoice.issued_on)


def _with_file_figures(
    invoice: IssuedInvoice, figures: invoice_files.FileFigures | None, problem: str | None
) -> IssuedInvoice:
    """The invoice with the figures its file states where the channel said nothing (``from_file``).

    A file naming another invoice number is kept aside (``details["file_invoice_number"]``, a
    difference for verification); a structured file that cannot be read, when nothing else states
    the figures, is an unreadable field (``unreadable["file"]``): a person looks."""
    if figures is None:
        if problem is None:
            return invoice
        return replace(invoice, unreadable={**invoice.unreadable, "file": problem[:300]})
    number = (invoice.number or "").strip()
    if figures.number and number and figures.number != number:
        return replace(invoice, details={**invoice.details, "file_invoice_number": figures.number})
    filled: dict[str, object] = {}
    named: list[str] = []
    for figure, attribute in (
        ("seller", "seller_tax_number"),
        ("buyer", "buyer_tax_number"),
        ("invoice_type", "invoice_type"),
        ("issued_on", "issued_on"),
        ("amount", "amount"),
        ("tax", "tax"),
        ("blue_invoice", "original_number"),
    ):
        value = getattr(figures, attribute)
        if getattr(invoice, attribute) is None and value is not None:
            filled[attribute] = value
            named.append(figure)
    if "blue_invoice" in named and invoice.original_code is None and figures.original_code:
        filled["original_code"] = figures.original_code
    if not invoice.lines and figures.lines:
        filled["lines"] = figures.lines
        named.append("lines")
    details = dict(invoice.details)
    if figures.direction is not None and not details.get("direction"):
        details["direction"] = figures.direction.value  # the file's explicit colour (verification reads it)
        named.append("direction")
    return replace(invoice, **filled, details=details, from_file=(*invoice.from_file, *named))  # type: ignore[arg-type]
