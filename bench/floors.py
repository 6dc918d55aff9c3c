"""The floor of each flow: the fewest AWS requests it needs, and why each is needed.

How a floor is derived (the same rules for every flow):

1. Every durable state change the design requires is one write: storing the application, the
   dispatch claim before a channel is called (exactly once), each status the application must be
   seen in, each invoice, each outcome. No transactions (a two-item TransactWriteItems is one
   request but bills both items twice: fewer requests, not less cost), except where the design
   requires two items to change together: an application's change and its history record (the
   audit trail, template.yaml HistoryTable) are one TransactWriteItems, one request as before.
2. Reads only where state must be read: a dispatch step reads the application once (consistent
   GetItem); the callback finds it through the by-request-number index (KEYS_ONLY) and reads it.
3. Creation is idempotent by the conditional put itself: a put that fails its
   ``attribute_not_exists(pk)`` condition returns the stored item
   (``ReturnValuesOnConditionCheckFailure``), so no read before it. A red application is the
   exception: it reserves from its blue invoice before it is stored, so a repeat must be detected
   first (one GetItem), else it would reserve twice.
4. Files are stored before the invoice item is written, so the item carries their records (no
   second write); a file is put conditionally (``If-None-Match: *``), a HEAD only when that fails.
5. The outcome event is published once (PutEvents). The outbox flag on the application is cleared
   by the next write that happens anyway (the notifier's history note), not by a write of its own.
6. The notifier's webhook body can be built from the event (its detail carries the invoices; the
   file records can travel with them): no reads. Its history note is documented behaviour: one write.
7. Polled channels: one poller run per poll (one Query of the due-work index, one
   SendMessageBatch); alone in a run, the application pays both, plus its claim (one conditional
   UpdateItem moving its ``next_poll_at`` on, so that a dispatch backlog gets one message per
   application per claim, not one per run). A poll that finds nothing yet reschedules the
   application: one GetItem and one UpdateItem in the dispatcher.
8. The event source mappings' SQS receives and deletes and EventBridge's delivery to the notify
   queue are not the hub's requests (they are priced in bench.cost), so they are in no floor.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Need:
    function: str
    operation: str  # service:Operation
    label: str  # as bench.hooks labels the call that does it
    count: int
    why: str


IN, D, C, P, N = "IntakeFunction", "DispatchFunction", "CallbackFunction", "PollerFunction", "NotifierFunction"
DDB, SQS, S3, EB = "dynamodb", "sqs", "s3", "events"


def _need(function: str, operation: str, label: str, why: str, count: int = 1) -> Need:
    return Need(function, operation, label, count, why)


def _intake_blue() -> list[Need]:
    return [
        _need(IN, f"{DDB}:PutItem", "put application", "store it, conditional on its key (idempotent without a read)"),
        _need(IN, f"{SQS}:SendMessage", "dispatch request", "ask for its dispatch"),
    ]


def _read(function: str) -> Need:
    return _need(function, f"{DDB}:GetItem", "get application", "read the application (status, version, document)")


def _claim() -> Need:
    return _need(D, f"{DDB}:UpdateItem", "transition to DISPATCHING", "claim with a lease before calling the channel")


def _outcome(function: str, files: int) -> list[Need]:
    needs = []
    if files:
        needs.append(_need(function, f"{S3}:PutObject", "invoice file", "each file, conditional PUT", files))
    return [
        *needs,
        _need(function, f"{DDB}:PutItem", "put invoice", "record the invoice (with its file records)"),
        _need(function, f"{DDB}:UpdateItem", "transition to ISSUED", "the outcome, conditional on status and version"),
        _need(function, f"{EB}:PutEvents", "event InvoiceIssued", "the outcome event"),
    ]


def _notifier() -> list[Need]:
    return [_need(N, f"{DDB}:UpdateItem", "history note", "note the delivery (and clear the outbox flag in it)")]


def _polls(polls: int) -> list[Need]:
    needs: list[Need] = []
    for n in range(polls):
        needs += [
            _need(P, f"{DDB}:Query", "due-work query", "the poller's run reads the due-work index"),
            _need(P, f"{DDB}:UpdateItem", "claim due", "claimed before it is queued (a backlog does not multiply it)"),
            _need(P, f"{SQS}:SendMessageBatch", "dispatch requests (batch)", "the poller's run hands it to dispatch"),
            _read(D),
        ]
        if n < polls - 1:  # this poll finds nothing yet: ask again later
            needs.append(_need(D, f"{DDB}:UpdateItem", "reschedule", "nothing yet: when to ask again"))
    return needs


def floor(flow: str, *, files: int, polls: int) -> list[Need]:
    """The floor of ``flow`` given what happened in it (files stored, polls made)."""
    return [_with_history(need) for need in _floor(flow, files=files, polls=polls)]


def _with_history(need: Need) -> Need:
    """A write that changes an application carries its history record in the same transaction."""
    recorded = need.label in ("put application", "history note") or need.label.startswith("transition")
    if need.operation in (f"{DDB}:PutItem", f"{DDB}:UpdateItem") and recorded:
        return Need(need.function, f"{DDB}:TransactWriteItems", need.label + " + history record", need.count,
                    need.why + " (with its history record)")  # fmt: skip
    return need


def _floor(flow: str, *, files: int, polls: int) -> list[Need]:
    if flow in ("xunlian", "red"):
        if flow == "red":
            intake = [
                _need(IN, f"{DDB}:GetItem", "get application", "a repeat must not reserve twice: look first"),
                _need(IN, f"{DDB}:UpdateItem", "reserve red (blue invoice)",
                      "reserve from the blue invoice (conditional: its failure says why)"),
                _need(IN, f"{DDB}:PutItem", "put application", "store the red application"),
                _need(IN, f"{SQS}:SendMessage", "dispatch request", "ask for its dispatch"),
            ]  # fmt: skip
        else:
            intake = _intake_blue()
        return [*intake, _read(D), _claim(), *_outcome(D, files), *_notifier()]
    if flow in ("kingdee", "partner"):
        submitted = _need(D, f"{DDB}:UpdateItem", "transition to SUBMITTED", "the channel took it")
        return [*_intake_blue(), _read(D), _claim(), submitted, *_polls(max(polls, 1)), *_outcome(D, files),
                *_notifier()]  # fmt: skip
    if flow == "ekuaibao":
        dispatch = [
            _read(D),
            _need(D, f"{DDB}:UpdateItem", "transition to SUBMITTED", "nothing is sent to Ekuaibao: no claim needed"),
        ]
        callback = [
            _need(C, f"{DDB}:PutItem", "put replay guard", "replay guard of the signed push (conditional)"),
            _need(C, f"{S3}:PutObject", "archive push", "archive the raw push before reading it"),
            _need(C, f"{DDB}:Query", "find by request number", "find the application by request number"),
            _read(C),
            _need(C, f"{DDB}:PutItem", "put invoice", "record the invoice (its file URL not yet fetched)"),
            _need(C, f"{DDB}:UpdateItem", "transition to ISSUED", "the outcome"),
            _need(C, f"{EB}:PutEvents", "event InvoiceIssued", "the outcome event"),
        ]
        fetch: list[Need] = []
        if files:
            callback.append(
                _need(C, f"{SQS}:SendMessage", "dispatch request", "defer the file download (the channel waits)")
            )
            fetch = [
                _need(D, f"{S3}:PutObject", "invoice file", "each file (the message names invoice and URL)", files),
                _need(D, f"{DDB}:UpdateItem", "invoice file records", "the invoice's file records"),
            ]
        return [*_intake_blue(), *dispatch, *callback, *fetch, *_notifier()]
    raise ValueError(f"no floor for flow {flow!r}")


def total(needs: list[Need]) -> int:
    return sum(n.count for n in needs)


def by_key(needs: list[Need]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for need in needs:
        out[(need.function, need.operation)] = out.get((need.function, need.operation), 0) + need.count
    return out


def excess(needs: list[Need], calls: list[dict]) -> dict[tuple[str, str], dict[str, int]]:
    """Measured calls beyond the floor: (function, operation) -> {label: how many more}."""
    allowed: dict[tuple[str, str, str], int] = {}
    for need in needs:
        key = (need.function, need.operation, need.label)
        allowed[key] = allowed.get(key, 0) + need.count
    out: dict[tuple[str, str], dict[str, int]] = {}
    for call in calls:
        key = (call["function"], f"{call['service']}:{call['operation']}", call.get("label", ""))
        if allowed.get(key, 0) > 0:
            allowed[key] -= 1
            continue
        labels = out.setdefault(key[:2], {})
        labels[key[2]] = labels.get(key[2], 0) + 1
    return out


def reason(function: str, label: str) -> str:
    label = label.removesuffix(" + history record")  # the same write, with its audit record
    return EXCESS_REASONS.get((function, label)) or EXCESS_REASONS.get(("", label)) or "not in the floor"


# Why a call is above the floor: by (function, label), else by label alone. The texts name the code.
EXCESS_REASONS: dict[tuple[str, str], str] = {
    (D, "channel circuit read"): "`ChannelHealth.admit` reads the channel's circuit (shared by every "
    "instance) before each call: one GetItem per attempt; a transaction with the claim could carry it",
    (P, "backlog count"): "the backlog metric's query of the attention index, once per poller run (a fixed "
    "cost per minute, not per invoice: a flow that spans one run pays all of it)",
    ("", "clear_pending_event"): "`store.clear_pending_event`: the outbox flag cleared by a write of its own "
    "after PutEvents",
    (D, "transition to DISPATCHING"): "the claim, for a channel that is sent nothing (Ekuaibao's `issue` "
    "answers Accepted at once)",
    (D, "get application"): "the deferred file download reads the application again (a dispatch request "
    "names only the application)",
    (D, "get invoices"): "the deferred file download reads the invoices back (`store.invoices`)",
    ("", "HEAD invoice file"): "`FileStore.put_invoice_file`: the conditional PUT found the key taken (a repeat)",
    ("", "invoice file records"): "`store.update_invoice` writes the file records after the invoice item "
    "(the files are stored after it is recorded; in a callback: 'not fetched' records)",
    ("", "files_pending set"): "`store.mark_files_pending(True)`: the deferred download flagged on the application",
    ("", "files_pending cleared"): "`store.mark_files_pending(False)` after the download",
    (N, "get application"): "`Notifier.deliver_record` reads the application to build the body",
    (N, "get invoices"): "`Notifier.deliver_record` reads the invoices (for their file records)",
}
