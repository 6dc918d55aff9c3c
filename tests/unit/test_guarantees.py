"""Guarantees that rested on no test (issue 12): each test here fails when its defect is put back.

- the status transition's condition without its version part (a status that leaves and returns);
- the red reservation's condition without its tax part;
- the "already issued" guard of Dispatcher._apply removed (a late rejection or not-found after ISSUED);
- a plain comparison instead of hmac.compare_digest for the callback's token and signature;
- amtInclTaxSign absent or empty read other than tax-inclusive; an explicit tax of 0 recomputed;
- a discount pair split by a normal line accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from decimal import Decimal

import pytest

from fapiao_hub import runtime
from fapiao_hub.domain.models import Status
from fapiao_hub.domain.results import Issued, NotFound, Rejected
from fapiao_hub.domain.rules import validate_application
from fapiao_hub.infra.signatures import sign
from fapiao_hub.infra.store.errors import StaleWrite
from fapiao_hub.usecases import callback_auth
from fapiao_hub.usecases.callback_auth import BAD_SIGNATURE, BAD_TOKEN, OK
from tests.unit import test_callbacks, test_dispatch_workflow, test_poller_and_red
from tests.unit.conftest import event
from tests.unit.test_callback_auth import BODY, NOW, SECRET, SIGNED, TOKEN, TOKEN_ONLY, auth, signed_headers
from tests.unit.test_callbacks import _push_for, _submitted_application
from tests.unit.test_dispatch_workflow import CODE, INVOICE
from tests.unit.test_poller_and_red import _issue_blue, red_order, remaining
from tests.unit.test_rules import DISCOUNT, DISCOUNTED, POLICY, mk_app, mk_line
from tests.unit.test_seed004 import convert, fields, valid_order

# The fixtures, reused.
callbacks = test_callbacks.callbacks
world = test_dispatch_workflow.world
dispatching = test_poller_and_red.dispatching


# ---------------------------------------------------------------------------- the transition's version
def test_a_stale_copy_is_refused_after_its_status_left_and_came_back(hub):
    """DISPATCHING -> RETRY_WAIT -> DISPATCHING: the status matches again, only the version tells."""
    assert hub.call(event("intake-post-blue.json"))[0] == 200
    store = runtime.application_store()
    received = store.get("sample-erp", CODE)
    stale = store.transition(received, Status.DISPATCHING, note="attempt 1")
    waiting = store.transition(stale, Status.RETRY_WAIT, note="not sent; retry")
    again = store.transition(waiting, Status.DISPATCHING, note="attempt 2")
    assert (again.status, again.version) == (stale.status, stale.version + 2)
    with pytest.raises(StaleWrite):
        store.transition(stale, Status.ISSUED, note="a dispatcher that slept through the round trip")
    now = store.get("sample-erp", CODE)
    assert (now.status, now.version) == (Status.DISPATCHING, again.version)
    assert [t.status for t in now.history] == ["RECEIVED", "DISPATCHING", "RETRY_WAIT", "DISPATCHING"]


# ---------------------------------------------------------------------------- the red reservation's tax
def _tax_exclusive_red(code: str, amount: str, tax: str) -> dict:
    """A red order at 13% with its tax-exclusive amount and tax given (positive figures)."""
    body = red_order(code, "0")
    order = body["invoiceOrder"]
    order["amtInclTaxSign"] = "2"
    [line] = order["invoiceOrderSub"]
    line.pop("amtInclTax")
    line.update(amt=f"-{amount}", tax=f"-{tax}", price=amount, quantity=-1)
    return body


def test_a_red_order_within_the_amount_left_but_one_cent_over_the_tax_left_is_refused(hub, dispatching):
    _issue_blue(hub, dispatching)  # 5327.43 + tax 692.57 left
    before = (hub.applications(), remaining(hub))
    # 5327.43 x 0.13 = 692.5659: a tax of 692.58 is within the line tolerance (0.06), one cent over what is left.
    status, answer, _ = hub.call(event("intake-post-red.json", body=_tax_exclusive_red("RED-TAX", "5327.43", "692.58")))
    assert status == 400, answer
    [error] = answer["data"]["errors"]
    assert error["field"] == "invoiceOrder.blueInvoiceNumber"
    assert "tax 692.58" in error["message"] and "tax 692.57 left" in error["message"]
    assert (hub.applications(), remaining(hub)) == before  # nothing stored, nothing reserved
    # The same amount with the tax that is left fits exactly.
    body = _tax_exclusive_red("RED-ALL", "5327.43", "692.57")
    assert hub.call(event("intake-post-red.json", body=body))[0] == 200
    assert remaining(hub) == (Decimal("0.00"), Decimal("0.00"))


# ---------------------------------------------------------------------------- results after ISSUED
def test_a_late_rejection_or_not_found_after_issued_is_ignored_by_the_workflow(world):
    world.channel.script = [Issued((INVOICE,))]
    assert world.dispatch() == "issued"
    world.events()
    issued = world.stored()
    dispatcher = world.dispatcher()
    # A pushed or queried answer (Dispatcher.apply_result), and the answer to the dispatch's own
    # request (queried=False, as _attempt applies it): none moves an issued application.
    dispatcher.apply_result(issued, Rejected("buyer unknown", "4001"), world.channel)
    dispatcher.apply_result(issued, NotFound(), world.channel)
    dispatcher._apply(issued, NotFound(), world.channel)
    dispatcher._apply(issued, Rejected("buyer unknown", "4001"), world.channel)
    after = world.stored()
    assert (after.status, after.version, after.reason) == (Status.ISSUED, issued.version, issued.reason)
    assert after.invoice_keys == issued.invoice_keys and len(world.invoices()) == 1
    assert world.events() == []  # no ApplicationRejected


def test_a_late_rejection_push_after_issued_is_answered_2xx_and_moves_nothing(callbacks, hub):
    number = _submitted_application(hub)
    assert callbacks.post(_push_for(number)) == (200, {"value": True})
    [settled] = hub.applications()
    invoices = callbacks.invoices()
    assert settled["status"] == "ISSUED"
    status, answer = callbacks.post(_push_for(number, result=1), timestamp=str(int(time.time()) - 5))
    assert 200 <= status < 300, answer
    [after] = hub.applications()
    assert (after["status"], after["version"]) == ("ISSUED", settled["version"])
    assert after.get("reason") == settled.get("reason") and callbacks.invoices() == invoices


# ---------------------------------------------------------------------------- constant-time compares
class CompareSpy:
    """Stands in for hmac.compare_digest: records its arguments, and ``decide`` gives its answer."""

    def __init__(self, decide) -> None:
        self.decide = decide
        self.calls: list[tuple[bytes, bytes]] = []

    def __call__(self, a, b) -> bool:
        self.calls.append((bytes(a), bytes(b)))
        return self.decide(bytes(a), bytes(b))


def _spy(monkeypatch, decide) -> CompareSpy:
    spy = CompareSpy(decide)
    monkeypatch.setattr(hmac, "compare_digest", spy)
    if hasattr(callback_auth, "compare_digest"):  # should it ever be imported by name
        monkeypatch.setattr(callback_auth, "compare_digest", spy)
    return spy


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


@pytest.mark.parametrize(("answer", "presented", "expected_reason"), [(False, TOKEN, BAD_TOKEN), (True, "wrong", OK)])
def test_the_constant_time_compare_decides_the_access_token(monkeypatch, answer, presented, expected_reason):
    """Its answer overrules equality both ways: the right token refused, a wrong one let in."""
    spy = _spy(monkeypatch, lambda a, b: answer)
    assert auth(TOKEN_ONLY, token=presented).reason == expected_reason
    assert spy.calls == [(_digest(presented), _digest(TOKEN))]


@pytest.mark.parametrize(("answer", "tampered", "expected_reason"), [(False, False, BAD_SIGNATURE), (True, True, OK)])
def test_the_constant_time_compare_decides_the_signature(monkeypatch, answer, tampered, expected_reason):
    headers = signed_headers()
    expected = sign(SECRET.encode(), str(int(NOW)), BODY)
    assert headers["x-fapiao-signature"] == expected
    if tampered:
        headers["x-fapiao-signature"] = "sha256=" + "0" * (len(expected) - len("sha256="))
    token = (_digest(TOKEN), _digest(TOKEN))
    # The token's compare stays true; the signature's answer is the spy's.
    spy = _spy(monkeypatch, lambda a, b: True if (a, b) == token else answer)
    assert auth(SIGNED, headers=headers).reason == expected_reason
    assert [c for c in spy.calls if c != token] == [(headers["x-fapiao-signature"].encode(), expected.encode())]


# ---------------------------------------------------------------------------- intake: tax basis
@pytest.mark.parametrize("sign_value", [None, "", " "], ids=["absent", "empty", "blank"])
def test_an_order_without_amtinclTaxSign_is_tax_inclusive(sign_value):
    body = valid_order()
    if sign_value is None:
        body["invoiceOrder"].pop("amtInclTaxSign")
    else:
        body["invoiceOrder"]["amtInclTaxSign"] = sign_value
    result = convert(body)
    assert result.errors == []
    app = result.application
    assert app.prices_include_tax is True
    # The seed's lines split from amtInclTax: 6000.00 at 13% is 5309.73 + 690.27.
    assert (app.lines[4].amount, app.lines[4].tax) == (Decimal("5309.73"), Decimal("690.27"))
    assert (app.amount, app.tax) == (Decimal("5327.43"), Decimal("692.57"))


@pytest.mark.parametrize("tax", [0, "0", "0.00"])
def test_an_explicit_zero_tax_at_13_percent_is_refused_on_its_tax_not_recomputed(tax):
    body = valid_order()
    order = body["invoiceOrder"]
    order["amtInclTaxSign"] = "2"
    for key in ("invoiceAmtInclTax", "invoiceAmt", "invoiceTax"):
        order.pop(key)
    order["invoiceOrderSub"] = [
        {"goodsName": "整车", "invoiceLineNature": "0", "taxonomyCode": "1090305010300000000", "taxrate": 0.13,
         "amt": 1000, "tax": tax, "price": 1000, "quantity": 1}
    ]  # fmt: skip
    result = convert(body)
    assert result.application is None
    problems = fields(result)
    assert "invoiceOrder.invoiceOrderSub[0].tax" in problems
    assert "tax 0.00" in problems["invoiceOrder.invoiceOrderSub[0].tax"]
    assert "130.00" in problems["invoiceOrder.invoiceOrderSub[0].tax"]


# ---------------------------------------------------------------------------- discount pairing
def test_a_normal_line_between_a_discounted_line_and_its_discount_is_refused():
    lines = [mk_line(0, nature=DISCOUNTED), mk_line(1), mk_line(2, "-10.00", "-1.30", nature=DISCOUNT)]
    problems = validate_application(mk_app(lines), POLICY)
    assert sorted(p.path for p in problems if not p.warning) == [("lines", 0, "nature"), ("lines", 2, "nature")]


def test_the_split_pair_is_refused_at_intake_by_the_callers_paths():
    body = valid_order()
    lines = body["invoiceOrder"]["invoiceOrderSub"]
    # The seed's pairs are [2, 1, 2, 1, 0]: move the normal line between the first pair.
    body["invoiceOrder"]["invoiceOrderSub"] = [lines[0], lines[4], lines[1], lines[2], lines[3]]
    result = convert(body)
    assert result.application is None
    problems = fields(result)
    assert "immediately" in problems["invoiceOrder.invoiceOrderSub[0].invoiceLineNature"]
    assert "immediately" in problems["invoiceOrder.invoiceOrderSub[2].invoiceLineNature"]
