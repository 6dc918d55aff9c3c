"""Reconciliation: re-ask the channels, compare with the hub, report (docs/rules.md section 6).

What the hub believes issued must match what the channel reports; a difference is an alarm. Once a
day (template.yaml ReconciliationFunction) every application that reached a final state in the
window (default: the last two days) and every application waiting for a person is asked about
again, by its request number, at its channel. The answer is compared with the hub's state (status,
invoice numbers, counts and totals, voids) by :func:`compare`; each difference is a
:class:`~fapiao_hub.domain.models.Finding` recorded on the application (idempotent by its stable id, so a
second run over the same window records nothing new) and one ``FindingsRecorded`` metric (alarms.finding_recorded)
(alarmed). A channel that cannot be queried (Xunlian, Ekuaibao) is counted "not verifiable", never
as matching. The run ends with a report in S3 (docs/reconciliation.md).

Reads go through two sparse indexes (store.settled_between, store.needing_person): the cost grows
with the applications in the window, never with the table.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from fapiao_hub.channels.base import Channel
from fapiao_hub.domain import logkeys, verification
from fapiao_hub.domain.china_time import china_day
from fapiao_hub.domain.models import Difference, Direction, Finding, FindingKind, Status, invoice_key
from fapiao_hub.domain.results import Accepted, InvoiceState, Issued, NotFound, NotSent, Rejected, Unknown
from fapiao_hub.domain.spreadsheet import csv_safe_row
from fapiao_hub.infra import alarms
from fapiao_hub.infra.store.base import iso
from fapiao_hub.infra.store.records import IndexedApplication, StoredApplication

logger = Logger(child=True)
metrics = alarms.metrics  # flushed by the reconciliation function's handler
FINDING_METRIC = alarms.FINDINGS_RECORDED  # FindingsAlarm, as for findings of the results' checks
SOURCE = "reconciliation"
REPORT_SCHEMA_VERSION = "1"
WINDOW_DAYS = 2  # the default of config.Settings.reconciliation_window_days


# ---------------------------------------------------------------------------------------- ports
class ReconciliationReads(Protocol):
    """What the reconciliation reads (store.ApplicationStore)."""

    def settled_between(self, start: datetime, end: datetime) -> list[IndexedApplication]: ...

    def needing_person(self) -> list[IndexedApplication]: ...

    def get(self, source_system: str, open_apply_code: str) -> StoredApplication | None: ...

    def invoices(self, stored: StoredApplication) -> list[dict[str, Any]]: ...


class FindingRecorder(Protocol):
    """Keeps a finding on its application; False when it was there already (same id)."""

    def record_finding(self, stored: StoredApplication, finding: Finding) -> bool: ...


class ChannelLookup(Protocol):
    def channel(self, name: str) -> Channel | None: ...


class ReportSink(Protocol):
    """Where the daily report goes (files.FileStore)."""

    def put_reconciliation_report(self, day: date, files: dict[str, tuple[bytes, str]]) -> list[str]: ...


class StoreFindings:
    """The production FindingRecorder: ApplicationStore.add_finding (idempotent by finding id)."""

    def __init__(self, store: Any):
        self._store = store

    def record_finding(self, stored: StoredApplication, finding: Finding) -> bool:
        return bool(self._store.add_finding(stored, finding, note=f"reconciliation: {finding.summary}"))


# ---------------------------------------------------------------------------------------- verdicts
class Verdict(StrEnum):
    MATCHING = "matching"  # the channel's answer agrees with the hub
    # It agrees, but the hub's amount or tax of an invoice is the application's: nobody at the channel
    # stated it (verification.provenance), so agreeing proves nothing about the money.
    FIGURES_UNVERIFIED = "figures_unverified"
    FINDING = "finding"  # it differs: one finding or more
    NOT_VERIFIABLE = "not_verifiable"  # the channel has no query: nothing can be compared
    NO_ANSWER = "no_answer"  # the channel did not answer this time (or is still working on it)
    NOT_SENT = "not_sent"  # the application never had a channel (refused before dispatch)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @classmethod
    def ending(cls, end: datetime, days: float = WINDOW_DAYS) -> Window:
        return cls(end - timedelta(days=days), end)

    @property
    def day(self) -> date:
        """The report's day: the window's end in China time."""
        return china_day(self.end)


@dataclass(frozen=True)
class Checked:
    """One application as this run saw it."""

    stored: StoredApplication
    recorded: tuple[dict[str, Any], ...]
    verdict: Verdict
    in_window: bool
    findings: tuple[Finding, ...] = ()
    new_findings: tuple[Finding, ...] = ()
    channel_answer: str = ""


@dataclass
class ReconciliationReport:
    window: Window
    generated_at: datetime
    checked: list[Checked] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # S3 keys of the report files

    @property
    def new_findings(self) -> list[Finding]:
        return [f for c in self.checked for f in c.new_findings]

    def count(self, verdict: Verdict) -> int:
        return sum(1 for c in self.checked if c.verdict is verdict)


# ---------------------------------------------------------------------------------------- comparison
def compare(stored: StoredApplication, recorded: Iterable[dict[str, Any]], answer: object, *, at: str) -> list[Finding]:
    """What differs between the hub's record of an application and its channel's answer now.

    ``recorded``: the application's invoice items (store.invoices). Pure: no I/O. An answer that
    says nothing definite (Unknown, NotSent, Accepted) yields no finding.
    """
    recorded = list(recorded)
    hub = {item["pk"]: item for item in recorded}
    if isinstance(answer, Issued):
        # A void reported under its own number, naming the invoice it voided, is about that invoice
        # (as dispatch records it): never "an invoice the hub lacks".
        held = tuple(hub)
        answer = replace(answer, invoices=tuple(verification.as_voided_original(i, held) for i in answer.invoices))
        reported = {invoice_key(i.code, i.number): i for i in answer.invoices}
        numbers = tuple(i.number for i in answer.invoices)
        if stored.status is Status.REJECTED:
            differences = [Difference(field="status", expected=Status.REJECTED.value, reported=Status.ISSUED.value)]
            differences += [Difference(field=f"invoices[{n}]", expected=None, reported=n) for n in numbers]
            summary = f"the hub has it REJECTED; {stored.channel} issued {', '.join(numbers)}"
            return [_finding(stored, FindingKind.ISSUED_BUT_REJECTED, differences, numbers, at, summary)]
        findings = []
        missing = tuple(reported[k].number for k in reported if k not in hub)
        if missing:
            summary = f"{stored.channel} reports {', '.join(missing)}, which the hub has not recorded"
            differences = [Difference(field=f"invoices[{n}]", expected=None, reported=n) for n in missing]
            findings.append(_finding(stored, FindingKind.INVOICE_MISSING, differences, missing, at, summary))
        else:
            differences = _totals_differences(recorded, answer)
            if differences:
                summary = f"{stored.channel}'s invoices differ from the hub's record: " + ", ".join(
                    d.field for d in differences
                )
                findings.append(_finding(stored, FindingKind.TOTALS_DIFFER, differences, numbers, at, summary))
        voided = tuple(
            i.number
            for k, i in reported.items()
            if i.state is InvoiceState.VOIDED and k in hub and hub[k].get("status") != InvoiceState.VOIDED.value
        )
        if voided and stored.status is not Status.VOIDED:
            summary = f"{stored.channel} has voided {', '.join(voided)}; the hub has it {stored.status.value}"
            differences = [
                Difference(field=f"invoices[{n}].state", expected=_hub_state(hub, reported, n), reported="VOIDED")
                for n in voided
            ]
            findings.append(_finding(stored, FindingKind.VOIDED_AT_CHANNEL, differences, voided, at, summary))
        return findings
    if isinstance(answer, Rejected | NotFound) and recorded:
        said = "REJECTED" if isinstance(answer, Rejected) else "NOT_FOUND"
        numbers = tuple(str(item.get("number", item["pk"])) for item in recorded)
        differences = [
            Difference(field="status", expected=stored.status.value, reported=said),
            Difference(field="invoice_count", expected=str(len(recorded)), reported="0"),
        ]
        summary = f"the hub recorded {', '.join(numbers)}; {stored.channel} reports no invoice ({said})"
        return [_finding(stored, FindingKind.TOTALS_DIFFER, differences, numbers, at, summary)]
    return []


def _hub_state(hub: dict[str, dict[str, Any]], reported: dict[str, Any], number: str) -> str:
    key = next(k for k, i in reported.items() if i.number == number)
    return str(hub[key].get("status", Status.ISSUED.value))


def _totals_differences(recorded: list[dict[str, Any]], answer: Issued) -> list[Difference]:
    differences = []
    if len(recorded) != len(answer.invoices):
        differences.append(
            Difference(field="invoice_count", expected=str(len(recorded)), reported=str(len(answer.invoices)))
        )
    for name in ("amount", "tax"):
        figures = [getattr(i, name) for i in answer.invoices]
        if any(f is None for f in figures):
            continue  # the channel left a figure out: nothing to compare it with
        ours = _recorded_total(recorded, name)
        if ours is None:
            continue
        # Exact, no tolerance: both sides are totals of the same invoices (the bureau's tolerances are between lines).
        difference = verification.figure_difference(name, ours, sum(figures, Decimal("0")), Decimal("0"))
        if difference is not None:
            differences.append(difference)
    return differences


def _recorded_total(items: Iterable[dict[str, Any]], name: str) -> Decimal | None:
    figures = [item.get(name) for item in items]
    if any(f is None for f in figures):
        return None
    return sum((Decimal(str(f)) for f in figures), Decimal("0"))


def _finding(
    stored: StoredApplication,
    kind: FindingKind,
    differences: list[Difference],
    numbers: tuple[str, ...],
    at: str,
    summary: str,
) -> Finding:
    # The one identity of a discrepancy (verification.finding_for): a later run that sees it again
    # updates that finding (count, last seen, the value now reported), never adds another.
    return verification.finding_for(
        kind, stored.key, source=SOURCE, summary=summary, at=at, differences=differences, invoice_numbers=numbers
    )


def _describe(answer: object) -> str:
    if isinstance(answer, Issued):
        return "ISSUED " + ", ".join(f"{i.number} ({i.state.value})" for i in answer.invoices)
    if isinstance(answer, Rejected):
        return "REJECTED"
    if isinstance(answer, NotFound):
        return "NOT_FOUND"
    if isinstance(answer, Accepted):
        return "IN_PROGRESS"
    if isinstance(answer, Unknown | NotSent):
        return "NO_ANSWER"
    return type(answer).__name__


# ---------------------------------------------------------------------------------------- the run
class Reconciler:
    def __init__(
        self,
        store: ReconciliationReads,
        channels: ChannelLookup,
        findings: FindingRecorder,
        reports: ReportSink,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        window_days: float = WINDOW_DAYS,
    ):
        self._store = store
        self._channels = channels
        self._findings = findings
        self._reports = reports
        self._clock = clock
        self._window_days = window_days

    def run(
        self, window: Window | None = None, *, time_left_ms: Callable[[], int] | None = None
    ) -> ReconciliationReport:
        now = self._clock()
        window = window or Window.ending(now, self._window_days)
        report = ReconciliationReport(window=window, generated_at=now)
        settled = self._store.settled_between(window.start, window.end)
        in_window = {entry.key for entry in settled}
        seen: set[str] = set()
        for entry in [*settled, *self._store.needing_person()]:
            if entry.key in seen:
                continue
            seen.add(entry.key)
            if time_left_ms is not None and time_left_ms() < 10_000:
                logger.warning("reconciliation stopped early: out of time", extra={"checked": len(report.checked)})
                break  # the report says how many were checked; the next run covers the window again
            with logkeys.application(entry.source_system, entry.open_apply_code):  # its lines name it
                checked = self._check(entry, in_window=entry.key in in_window, at=iso(now))
            if checked is not None:
                report.checked.append(checked)
        report.keys = self._reports.put_reconciliation_report(window.day, render(report))
        return report

    def _check(self, entry: IndexedApplication, *, in_window: bool, at: str) -> Checked | None:
        stored = self._store.get(entry.source_system, entry.open_apply_code)
        if stored is None:
            return None
        recorded = tuple(self._store.invoices(stored))
        channel = self._channels.channel(stored.channel) if stored.channel else None
        if stored.channel is None:
            return Checked(stored, recorded, Verdict.NOT_SENT, in_window)
        if channel is None or not channel.can_query:
            return Checked(stored, recorded, Verdict.NOT_VERIFIABLE, in_window)
        request_number = stored.sent_request_number
        try:
            answer = channel.query(stored.application, request_number)
        except Exception:  # one channel's trouble never ends the run
            logger.exception("reconciliation query failed")
            return Checked(stored, recorded, Verdict.NO_ANSWER, in_window, channel_answer="ERROR")
        said = _describe(answer)
        if isinstance(answer, Unknown | NotSent | Accepted):
            return Checked(stored, recorded, Verdict.NO_ANSWER, in_window, channel_answer=said)
        findings = compare(stored, recorded, answer, at=at)
        new = tuple(f for f in findings if self._findings.record_finding(stored, f))
        for finding in new:
            alarms.finding_recorded(finding)
            logger.warning(
                "reconciliation finding",
                extra={"kind": finding.kind.value, "finding": finding.id},
            )
        verdict = Verdict.FINDING if findings else Verdict.MATCHING
        if verdict is Verdict.MATCHING and any(_money_from_application(item) for item in recorded):
            verdict = Verdict.FIGURES_UNVERIFIED
        return Checked(stored, recorded, verdict, in_window, tuple(findings), new, said)


def _money_from_application(item: dict[str, Any]) -> bool:
    """The invoice's amount or tax is held only from the application (an invoice recorded before the
    hub said what it compared has no list, and is not judged)."""
    return bool({"amount", "tax"} & set(item.get("from_application") or ()))


# ---------------------------------------------------------------------------------------- the report
GROUP_COLUMNS = (
    "source_system", "seller_tax_number", "channel", "verifiable", "applications", "in_window", "needing_person",
    "matching", "figures_unverified", "with_findings", "not_verifiable", "no_answer", "not_sent",
    "issued_count", "issued_amount", "issued_tax", "reversed_count", "reversed_amount", "reversed_tax",
    "voided_count", "rejected_count",
)  # fmt: skip
FINDING_COLUMNS = (
    "source_system", "open_apply_code", "seller_tax_number", "channel", "status", "finding_id", "kind", "new",
    "summary", "invoice_numbers", "differences",
)  # fmt: skip


def _group_key(checked: Checked) -> tuple[str, str, str]:
    application = checked.stored.application
    return application.source_system, application.seller.tax_number or "", checked.stored.channel or ""


def _totals(items: Iterable[dict[str, Any]]) -> tuple[int, Decimal, Decimal]:
    items = list(items)
    amount = sum((Decimal(str(i.get("amount", 0))) for i in items), Decimal("0"))
    tax = sum((Decimal(str(i.get("tax", 0))) for i in items), Decimal("0"))
    return len(items), amount, tax


def report_document(report: ReconciliationReport) -> dict[str, Any]:
    """The report as JSON-able data. Totals are the hub's record of invoices of the applications
    settled in the window; counts cover every application checked (the window and those waiting
    for a person)."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    not_verifiable: dict[str, int] = {}
    for checked in report.checked:
        key = _group_key(checked)
        group = groups.setdefault(
            key,
            {
                "source_system": key[0], "seller_tax_number": key[1], "channel": key[2], "verifiable": True,
                **{v.value: 0 for v in Verdict}, "applications": 0, "in_window": 0, "needing_person": 0,
                "issued": [], "reversed": [], "voided_count": 0, "rejected_count": 0,
            },
        )  # fmt: skip
        group["applications"] += 1
        group[checked.verdict.value] += 1
        group["in_window"] += checked.in_window
        group["needing_person"] += checked.stored.status.needs_person or any(f.open for f in checked.findings)
        if checked.verdict is Verdict.NOT_VERIFIABLE:
            group["verifiable"] = False
            not_verifiable[key[2]] = not_verifiable.get(key[2], 0) + 1
        if not checked.in_window:
            continue
        status = checked.stored.status
        if status is Status.ISSUED:
            red = checked.stored.application.direction is Direction.RED
            group["reversed" if red else "issued"] += list(checked.recorded)
        elif status is Status.VOIDED:
            group["voided_count"] += 1
        elif status is Status.REJECTED:
            group["rejected_count"] += 1
    rows = []
    for key in sorted(groups):
        group = groups[key]
        issued, reversed_ = _totals(group.pop("issued")), _totals(group.pop("reversed"))
        group["with_findings"] = group.pop(Verdict.FINDING.value)
        rows.append(
            {
                **group,
                "issued": {"count": issued[0], "amount": f"{issued[1]:.2f}", "tax": f"{issued[2]:.2f}"},
                "reversed": {"count": reversed_[0], "amount": f"{reversed_[1]:.2f}", "tax": f"{reversed_[2]:.2f}"},
            }
        )
    findings = [
        {
            "source_system": c.stored.application.source_system,
            "open_apply_code": c.stored.application.open_apply_code,
            "seller_tax_number": c.stored.application.seller.tax_number,
            "channel": c.stored.channel,
            "status": c.stored.status.value,
            "new": f in c.new_findings,
            **f.model_dump(mode="json"),
        }
        for c in report.checked
        for f in c.findings
    ]
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "day": report.window.day.isoformat(),
        "window": {"from": iso(report.window.start), "to": iso(report.window.end)},
        "generated_at": iso(report.generated_at),
        "checked": len(report.checked),
        "matching": report.count(Verdict.MATCHING),
        "figures_unverified": report.count(Verdict.FIGURES_UNVERIFIED),
        "with_findings": report.count(Verdict.FINDING),
        "new_findings": len(report.new_findings),
        "no_answer": report.count(Verdict.NO_ANSWER),
        "not_verifiable": dict(sorted(not_verifiable.items())),
        "groups": rows,
        "findings": findings,
    }


def render(report: ReconciliationReport) -> dict[str, tuple[bytes, str]]:
    """The report's files: name suffix -> (bytes, content type)."""
    document = report_document(report)
    groups = io.StringIO()
    writer = csv.DictWriter(groups, fieldnames=GROUP_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for g in document["groups"]:
        row = {
            **{c: g.get(c) for c in GROUP_COLUMNS if c in g},
            **{f"issued_{k}": v for k, v in g["issued"].items()},
            **{f"reversed_{k}": v for k, v in g["reversed"].items()},
            "verifiable": "yes" if g["verifiable"] else "not verifiable",
        }
        writer.writerow(csv_safe_row(row))
    found = io.StringIO()
    writer = csv.DictWriter(found, fieldnames=FINDING_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for f in document["findings"]:
        row = {
            **{c: f.get(c) for c in FINDING_COLUMNS if c in f},
            "finding_id": f["id"],
            "invoice_numbers": " ".join(f["invoice_numbers"]),
            "differences": "; ".join(
                f"{d['field']}: expected {d['expected']}, reported {d['reported']}" for d in f["differences"]
            ),
        }
        # Names, codes and summaries come from business systems and channels: never a formula.
        writer.writerow(csv_safe_row(row))
    # Excel opens a UTF-8 CSV correctly only with a byte-order mark (seller names are Chinese).
    return {
        ".json": (json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8"), "application/json"),
        ".csv": (groups.getvalue().encode("utf-8-sig"), "text/csv; charset=utf-8"),
        "-findings.csv": (found.getvalue().encode("utf-8-sig"), "text/csv; charset=utf-8"),
    }
