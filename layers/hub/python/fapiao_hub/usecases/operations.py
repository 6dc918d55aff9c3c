"""Operator actions: a person resolves what the hub could not (docs/operations.md, the runbook).

Each action is one conditional write on the status and version the action read (or, for a query,
the Dispatcher's own conditional writes), with a history entry naming the operator and the reason,
and an ``OperatorAction`` event (the audit trail). An action that does not apply, or whose
application moved meanwhile, changes nothing and raises ActionNotApplicable with the status now
(the ops API answers 409); a bad request raises ActionInvalid naming the field (400). Both, and
which action applies when, are action_checks.py's.

This module runs an action (``act``) and holds those that keep the application's course: query,
requeue, acknowledge-finding; the actions that decide an outcome are resolutions.py's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger

from fapiao_hub.channels.base import Channel
from fapiao_hub.domain.models import Status
from fapiao_hub.infra import events
from fapiao_hub.infra.events import EventPublisher, PublishFailed
from fapiao_hub.infra.queues import DispatchQueue
from fapiao_hub.infra.store import ApplicationStore
from fapiao_hub.infra.store.errors import IllegalTransition, StaleWrite
from fapiao_hub.infra.store.records import StoredApplication
from fapiao_hub.usecases.action_checks import (
    ACTIONS,
    ActionInvalid,
    ActionNotApplicable,
    ApplicationMissing,
    checked_request,
    moved,
    refusal,
    stuck_from,
)
from fapiao_hub.usecases.dispatch import Dispatcher
from fapiao_hub.usecases.resolutions import Resolutions, describe_outcome
from fapiao_hub.usecases.routing import ChannelDirectory

logger = Logger(child=True)


class Operations:
    """The operator's use cases; the ops API (api/ops.py) turns HTTP into calls of ``act``."""

    def __init__(
        self,
        store: ApplicationStore,
        dispatcher: Dispatcher,
        channels: ChannelDirectory,
        events_publisher: EventPublisher,
        queue: DispatchQueue,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self._store = store
        self._dispatcher = dispatcher
        self._channels = channels
        self._events = events_publisher
        self._queue = queue
        self._clock = clock
        resolutions = Resolutions(store, dispatcher, channels, queue, clock=clock)
        self._actions: dict[str, Callable[[StoredApplication, str, str, dict], dict | None]] = {
            "query": self._query,
            "resolve-issued": resolutions.resolve_issued,
            "resolve-not-issued": resolutions.resolve_not_issued,
            "requeue": self._requeue,
            "cancel": resolutions.cancel,
            "attach-result": resolutions.attach_result,
            "acknowledge-finding": self._acknowledge_finding,
            "resolve-voided": resolutions.resolve_voided,
            "resolve-not-voided": resolutions.resolve_not_voided,
        }

    # ------------------------------------------------------------------ entry points
    def available_actions(self, stored: StoredApplication) -> list[str]:
        """The actions that apply now (parameters aside): what the console and the detail offer."""
        return [action for action in ACTIONS if self._refusal(action, stored) is None]

    def act(
        self,
        source_system: str,
        open_apply_code: str,
        action: str,
        reason: str,
        operator: str,
        params: dict[str, Any] | None = None,
    ) -> StoredApplication:
        """Run one action; returns the application as it is afterwards (read again)."""
        reason, checked = checked_request(action, reason, params)
        stored = self._store.get(source_system, open_apply_code)
        if stored is None:
            raise ApplicationMissing(f"{source_system}/{open_apply_code}")
        refused = self._refusal(action, stored)
        if refused is not None:
            raise ActionNotApplicable(stored.status, refused)
        before = stored.status
        detail = self._actions[action](stored, reason, operator, checked) or {}
        after = self._store.get(source_system, open_apply_code) or stored
        self._audit(after, action, reason, operator, before, detail, read=stored)
        logger.info(
            "operator action",
            extra={"action": action, "operator": operator, "from": before.value, "to": after.status.value},
        )
        return after

    # ------------------------------------------------------------------ checks
    def _refusal(self, action: str, stored: StoredApplication) -> str | None:
        """Why ``action`` does not apply to ``stored`` now (None: it does)."""
        refused = refusal(action, stored)
        if refused is None and action == "query":
            return self._cannot_query(stored)
        return refused

    def _cannot_query(self, stored: StoredApplication) -> str | None:
        name, channel = self._channel(stored)
        if channel is None:
            return f"channel {name or stored.channel!r} is not configured"
        if not channel.can_query:
            return f"{name} cannot be queried (it reports results by push or in its answer only)"
        return None

    def _channel(self, stored: StoredApplication) -> tuple[str | None, Channel | None]:
        return self._channels.channel_for(stored.application, stored.channel)

    # ------------------------------------------------------------------ actions
    def _query(self, stored: StoredApplication, reason: str, operator: str, _: dict) -> dict:
        name, channel = self._channel(stored)
        assert channel is not None  # _refusal checked it
        outcome, result = self._dispatcher.query_now(stored, channel)
        if result == "lost race":
            raise moved(self._store, stored, "the answer was not applied by this action (the hub asks again);")
        said = describe_outcome(outcome)
        self._store.note(stored.key, f"query by operator {operator}: {reason}; {name} answers {said} ({result})")
        return {"answer": said, "result": result}

    def _requeue(self, stored: StoredApplication, reason: str, operator: str, _: dict) -> dict:
        previous = stuck_from(stored)
        assert previous is not None  # _refusal checked it
        # DISPATCHING has no holder any more: an attempt that may have left is UNKNOWN (asked, never
        # sent blind), one that never left is sent again.
        target = {Status.DISPATCHING: Status.UNKNOWN if stored.uncertain else Status.RETRY_WAIT}.get(previous, previous)
        now = int(self._clock())
        try:
            self._store.transition(
                stored, target,
                note=f"requeue by operator {operator}: {reason}; back to {target.value} (stuck in {previous.value})",
                changes={"reason": None, "attempts": 0, "polls": 0, "requeued_epoch": now},
                next_poll_at=now,
            )  # fmt: skip
        except (StaleWrite, IllegalTransition):
            raise moved(self._store, stored, "requeue") from None
        self._queue.request_dispatch(stored.application.source_system, stored.application.open_apply_code)
        return {"result": target.value.lower()}

    def _acknowledge_finding(self, stored: StoredApplication, reason: str, operator: str, params: dict) -> dict:
        if "ids" in params:
            return self._acknowledge_findings(stored, reason, operator, params["ids"])
        finding_id = params["id"]
        finding = next((f for f in stored.findings if f.id == finding_id), None)
        if finding is None:
            raise ActionInvalid("findingId", f"the application has no finding {finding_id!r}")
        if not finding.open:
            raise ActionNotApplicable(
                stored.status, f"finding {finding_id} was acknowledged already by {finding.acknowledged_by}"
            )
        try:
            self._store.acknowledge_finding(
                stored, finding_id, by=operator, reason=reason,
                note=f"acknowledge-finding by operator {operator}: {reason}; "
                f"finding {finding_id} ({finding.kind.value})",
            )  # fmt: skip
        except StaleWrite:
            raise moved(self._store, stored, "acknowledge-finding") from None
        return {"findingId": finding_id, "kind": finding.kind.value}

    def _acknowledge_findings(self, stored: StoredApplication, reason: str, operator: str, ids: list[str]) -> dict:
        """Several findings with one reason (bulk): each must be open here; all are closed, or none."""
        findings = []
        for n, finding_id in enumerate(ids):
            finding = next((f for f in stored.findings if f.id == finding_id), None)
            if finding is None:
                raise ActionInvalid(f"findingIds[{n}]", f"the application has no finding {finding_id!r}")
            if not finding.open:
                raise ActionInvalid(
                    f"findingIds[{n}]", f"finding {finding_id} was acknowledged already by {finding.acknowledged_by}"
                )
            findings.append(finding)
        notes = [
            (f.id, f"acknowledge-finding by operator {operator}: {reason}; finding {f.id} ({f.kind.value})")
            for f in findings
        ]
        try:
            self._store.acknowledge_findings(stored, notes, by=operator, reason=reason)
        except StaleWrite:
            raise moved(self._store, stored, "acknowledge-finding") from None
        return {"findingIds": list(ids), "kinds": [f.kind.value for f in findings]}

    def _audit(
        self,
        after: StoredApplication,
        action: str,
        reason: str,
        operator: str,
        before: Status,
        detail: dict,
        read: StoredApplication | None = None,
    ) -> None:
        """The action's own record on the audit trail (who, why, before and after), and its OperatorAction
        event (archived: template.yaml AuditEventsRule). Each change the action made has its own history
        record already, written with the change; a failure here is logged, the action stands."""
        plain = {k: (str(v) if isinstance(v, date | Decimal) else v) for k, v in detail.items()}
        try:
            self._store.record_action(
                after, action=action, by=operator, reason=reason,
                before=_audit_fields(read) if read is not None else {"status": before.value},
                after={**_audit_fields(after), **plain},
            )  # fmt: skip
        except Exception as error:  # the action is done; its changes carry their own records
            logger.error("operator action record not written", extra={"action": action, "error": type(error).__name__})
        application = after.application
        event = events.outcome_event(
            events.EventType.OPERATOR_ACTION,
            source_system=application.source_system,
            open_apply_code=application.open_apply_code,
            action=action,
            operator=operator,
            reason=reason,
            status_before=before.value,
            status=after.status.value,
            at=int(self._clock()),
            **plain,
        )
        try:
            self._events.publish(event)
        except PublishFailed:
            logger.warning("OperatorAction event not published (the history holds the action)")


def _audit_fields(stored: StoredApplication) -> dict[str, Any]:
    """What an operator action may change, as it stands (its record's before and after)."""
    return {
        "status": stored.status.value,
        "version": stored.version,
        "channel": stored.channel,
        "reason": stored.reason,
        "invoice_keys": list(stored.invoice_keys),
        "open_finding_ids": [f.id for f in stored.open_findings],
    }
