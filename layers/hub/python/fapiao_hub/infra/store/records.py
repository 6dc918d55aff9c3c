"""What the store hands back of an application: the stored application, its history entries, the
reconciliation indexes' projection, and how a finding is kept on the item.

Plain values, no DynamoDB: the use cases read these; base.StoreBase builds them from items.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from fapiao_hub.domain.models import Application, Finding, Status, application_key, request_number_for


def finding_item(finding: Finding) -> dict[str, Any]:
    """A finding as stored on its application (JSON types; absent values left out)."""
    return finding.model_dump(mode="json", exclude_none=True)


@dataclass(frozen=True)
class Transition:
    """A history entry: a status change, or (``is_note``) something that happened without one."""

    at: str
    status: str
    previous: str | None = None
    note: str | None = None
    is_note: bool = False

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {"at": self.at, "status": self.status}
        if self.previous:
            item["previous"] = self.previous
        if self.note:
            item["note"] = self.note
        if self.is_note:
            item["kind"] = "note"
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Transition:
        return cls(
            at=item["at"],
            status=item["status"],
            previous=item.get("previous"),
            note=item.get("note"),
            is_note=item.get("kind") == "note",
        )


@dataclass(frozen=True)
class VoidState:
    """A void (作废) asked of an issued application: by which request, why, since when, whether it was
    sent to the channel, and whether the channel has no void call so a person does it there."""

    request: str
    reason: str
    requested_epoch: int | None
    sent: bool
    by_person: bool


@dataclass(frozen=True)
class StoredApplication:
    """An application as stored: the canonical document plus its lifecycle."""

    application: Application
    status: Status
    version: int
    payload_sha256: str
    created_at: str
    updated_at: str
    channel: str | None = None
    warnings: tuple[str, ...] = ()
    history: tuple[Transition, ...] = ()
    attempts: int = 0
    request_number: str | None = None
    lease_until: int | None = None  # epoch seconds; guards DISPATCHING
    next_poll_at: int | None = None  # epoch seconds; when the application is due again
    reason: str | None = None  # why it is in its status (rejection, unknown outcome, ...)
    pending_event: dict[str, Any] | None = None  # an outcome event not yet known to be published
    invoice_keys: tuple[str, ...] = ()
    # An earlier attempt's outcome was unknown: an invoice may exist whatever a later attempt hears.
    uncertain: bool = False
    created_epoch: int | None = None
    polls: int = 0  # queries made while waiting for a result (for growing intervals)
    extra: dict[str, Any] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()  # what a person must look at (verification, reconciliation)
    # Not stored: the poller's claim (its next_poll_at) a dispatch step acts under (Dispatcher.dispatch).
    claim: int | None = None

    @property
    def key(self) -> str:
        return self.application.key

    @property
    def sent_request_number(self) -> str:
        """The number its current submission is sent under: the stored one (drawn at intake); items
        stored before numbers were drawn at random carry none and keep the derived one they were sent under."""
        return self.request_number or request_number_for(self.key)

    @property
    def open_findings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.open)

    # Typed views of the attributes a step writes beside the lifecycle (kept in ``extra`` as stored,
    # so a history record's "before" and the item stay as they are): read them here, never by name.
    @property
    def void(self) -> VoidState | None:
        """The void asked of it, if one was (intake.request_void writes it, voids.py sends it)."""
        request = self.extra.get("void_request")
        if not request:
            return None
        epoch = self.extra.get("void_requested_epoch")
        return VoidState(
            request=str(request),
            reason=str(self.extra.get("void_reason") or ""),
            requested_epoch=int(epoch) if epoch is not None else None,
            sent=bool(self.extra.get("void_sent")),
            by_person=bool(self.extra.get("void_by_person")),
        )

    @property
    def void_by_person(self) -> bool:
        """A void the channel has no call for, waiting to be done at the channel by a person."""
        return self.status is Status.VOIDING and bool(self.extra.get("void_by_person"))

    @property
    def submission(self) -> int:
        """Which submission of its open-apply code this is (1, then one more per resubmission)."""
        return int(self.extra.get("submission", 1))

    @property
    def earlier_submissions(self) -> list[dict[str, Any]]:
        """What each earlier (rejected) submission was, as resubmission kept it."""
        return list(self.extra.get("submissions", []))

    @property
    def failed_over_from(self) -> str | None:
        """The channel it was moved away from (health.py's failover), if it was."""
        return self.extra.get("failed_over_from")

    @property
    def unsent_attempts(self) -> int:
        """Attempts that provably never reached the channel (NotSent), counted for failover."""
        return int(self.extra.get("unsent_attempts", 0))

    @property
    def requeued_epoch(self) -> int | None:
        """When an operator last put it back to work (its deadlines count from then)."""
        value = self.extra.get("requeued_epoch")
        return int(value) if value else None

    @property
    def red_reserved_on(self) -> str | None:
        """The blue invoice whose red ledger this red application reserved an amount on."""
        return self.extra.get("red_reserved_on")

    @property
    def files_pending(self) -> bool:
        """Issued, but some of its invoice files are still to be fetched."""
        return bool(self.extra.get("files_pending"))

    @property
    def raw_answer(self) -> str | None:
        """Where the channel's last raw answer is kept (s3://...)."""
        return self.extra.get("raw_answer")

    @property
    def stuck_from(self) -> Status | None:
        """The status it was in when it went STUCK."""
        value = self.extra.get("stuck_from")
        return Status(value) if value else None

    def failing_over_from(self, channel: str) -> StoredApplication:
        """This application, known (in memory) to be moving away from ``channel``."""
        return replace(self, extra={**self.extra, "failed_over_from": channel})

    @property
    def needs_person(self) -> bool:
        return self.status.needs_person or bool(self.open_findings) or self.void_by_person


# The attributes a StoredApplication has a field for; any other stored attribute is in its ``extra``.
STORED_FIELDS = {f.name for f in fields(StoredApplication)}


def stored_value(stored: StoredApplication, name: str) -> Any:
    """A field's value as ``stored`` holds it (for a history record's "before")."""
    if name in STORED_FIELDS:
        return getattr(stored, name)
    return stored.extra.get(name)


@dataclass(frozen=True)
class IndexedApplication:
    """What the reconciliation's indexes hold of an application (their projection)."""

    source_system: str
    open_apply_code: str
    status: Status
    channel: str | None = None

    @property
    def key(self) -> str:
        return application_key(self.source_system, self.open_apply_code)
