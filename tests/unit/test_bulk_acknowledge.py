"""Bulk acknowledge (issue 19): acknowledge-finding with ``findingIds`` and one reason, all or none."""

from __future__ import annotations

import copy

import pytest

from fapiao_hub import runtime
from fapiao_hub.domain.models import Difference, FindingKind, Status
from fapiao_hub.domain.verification import finding_for
from fapiao_hub.infra.store import ApplicationStore
from fapiao_hub.infra.store.base import iso, utc_now
from fapiao_hub.usecases.action_checks import ActionInvalid, ActionNotApplicable
from tests.unit import test_dispatch_workflow as dispatch_tests
from tests.unit.test_dispatch_workflow import CODE
from tests.unit.test_operations import SYSTEM, force, item, operations

world = dispatch_tests.world


def _finding(n: int):
    return finding_for(FindingKind.POSSIBLE_DUPLICATE_ISSUANCE, f"{SYSTEM}#{CODE}", source="callback",
                       summary=f"another invoice {n}", at=iso(utc_now()), invoice_numbers=[f"9{n}"],
                       differences=[Difference(field="invoices", expected="a", reported=f"b{n}")])  # fmt: skip


def _with_findings(hub, count: int, status: Status = Status.ISSUED) -> list[str]:
    force(hub, CODE, status)
    store = runtime.application_store()
    ids = []
    for n in range(count):
        finding = _finding(n)
        assert store.add_finding(store.get(SYSTEM, CODE), finding, note=finding.summary)
        ids.append(finding.id)
    return ids


def test_several_findings_are_acknowledged_with_one_reason_each_with_its_history_entry(world, hub):
    ids = _with_findings(hub, 3)
    world.events()
    after = operations(world).act(SYSTEM, CODE, "acknowledge-finding", "rest of a split", "alice",
                                  {"findingIds": ids[:2]})  # fmt: skip
    closed = {f.id: f for f in after.findings}
    for finding_id in ids[:2]:
        assert (closed[finding_id].open, closed[finding_id].acknowledged_by) == (False, "alice")
        assert closed[finding_id].acknowledged_reason == "rest of a split"
    assert closed[ids[2]].open is True
    notes = [t.note for t in after.history if t.note and t.note.startswith("acknowledge-finding by operator alice")]
    assert notes == [
        f"acknowledge-finding by operator alice: rest of a split; finding {i} (POSSIBLE_DUPLICATE_ISSUANCE)"
        for i in ids[:2]
    ]
    assert item(hub)["attention"] == "PERSON"  # one finding is still open
    [(_, audit)] = [e for e in world.events() if e[0] == "OperatorAction"]
    assert audit["findingIds"] == ids[:2] and audit["kinds"] == ["POSSIBLE_DUPLICATE_ISSUANCE"] * 2
    # The last one alone (findingId still works): nothing needs a person any more.
    after = operations(world).act(SYSTEM, CODE, "acknowledge-finding", "seen", "alice", {"findingId": ids[2]})
    assert not after.open_findings and "attention" not in item(hub)


def test_acknowledging_all_open_findings_at_once_clears_attention(world, hub):
    ids = _with_findings(hub, 3)
    after = operations(world).act(SYSTEM, CODE, "acknowledge-finding", "all checked", "alice", {"findingIds": ids})
    assert not after.open_findings and after.status is Status.ISSUED
    assert "attention" not in item(hub)


def test_a_needs_person_state_keeps_attention_after_its_findings_are_acknowledged(world, hub):
    ids = _with_findings(hub, 2, Status.MANUAL_REVIEW)
    operations(world).act(SYSTEM, CODE, "acknowledge-finding", "checked", "alice", {"findingIds": ids})
    assert item(hub)["attention"] == "PERSON"


@pytest.mark.parametrize(
    ("finding_ids", "field", "says"),
    [
        ("f-1", "findingIds", "a list of 1 to 100"),
        ([], "findingIds", "a list of 1 to 100"),
        ([f"f-{n}" for n in range(101)], "findingIds", "a list of 1 to 100"),
        (["OPEN0", ""], "findingIds[1]", "a non-empty string"),
        (["OPEN0", 7], "findingIds[1]", "a non-empty string"),
        (["OPEN0", "OPEN1", "OPEN0"], "findingIds[2]", "given twice"),
        (["OPEN0", "nope", "OPEN1"], "findingIds[1]", "has no finding 'nope'"),
        (["OPEN1", "CLOSED"], "findingIds[1]", "acknowledged already by bob"),
    ],
    ids=["not-a-list", "empty", "101", "blank", "not-text", "twice", "unknown", "acknowledged"],
)
def test_a_bad_finding_id_is_a_400_naming_its_index_and_nothing_is_acknowledged(world, hub, finding_ids, field, says):
    ids = _with_findings(hub, 3)
    ops = operations(world)
    ops.act(SYSTEM, CODE, "acknowledge-finding", "earlier", "bob", {"findingId": ids[2]})
    names = {"OPEN0": ids[0], "OPEN1": ids[1], "CLOSED": ids[2]}
    if isinstance(finding_ids, list):
        finding_ids = [names.get(i, i) if isinstance(i, str) else i for i in finding_ids]
    before = item(hub)
    with pytest.raises(ActionInvalid) as invalid:
        ops.act(SYSTEM, CODE, "acknowledge-finding", "checked", "alice", {"findingIds": finding_ids})
    assert invalid.value.field == field and says in invalid.value.message
    assert item(hub) == before


def test_findingId_and_findingIds_together_is_a_400(world, hub):
    ids = _with_findings(hub, 2)
    before = item(hub)
    with pytest.raises(ActionInvalid) as invalid:
        operations(world).act(SYSTEM, CODE, "acknowledge-finding", "x", "alice",
                              {"findingId": ids[0], "findingIds": ids})  # fmt: skip
    assert invalid.value.field == "findingIds" and "not both" in invalid.value.message
    assert item(hub) == before


class _FindingMeanwhile(ApplicationStore):
    """A finding lands between the action's read and its write."""

    def acknowledge_findings(self, stored, notes, **kwargs):
        plain = runtime.application_store()
        assert plain.add_finding(plain.get(SYSTEM, CODE), _finding(99), note="meanwhile")
        return super().acknowledge_findings(stored, notes, **kwargs)


def test_a_finding_added_meanwhile_makes_it_a_409_and_none_is_acknowledged(world, hub):
    ids = _with_findings(hub, 2)
    racing = copy.copy(runtime.application_store())
    racing.__class__ = _FindingMeanwhile
    with pytest.raises(ActionNotApplicable, match="moved meanwhile"):
        operations(world, racing).act(SYSTEM, CODE, "acknowledge-finding", "x", "alice", {"findingIds": ids})
    stored = runtime.application_store().get(SYSTEM, CODE)
    assert len(stored.findings) == 3 and all(f.open for f in stored.findings)
    assert not any("acknowledge-finding" in (t.note or "") for t in stored.history)
