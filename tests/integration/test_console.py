"""The operations console in headless Chromium (Selenium, Debian's chromium and chromedriver) against
the real local run: an operator resolves a MANUAL_REVIEW application as issued, sees it ISSUED, and
the sample business system's webhook receives the outcome; hostile names and remarks stay text.
Guidance (issue 19): a MISMATCH shows expected and reported per field, its invoice is not a green
ISSUED, and each status and finding kind says what to do (the playbook); twelve repeats of a finding
are one row, acknowledged together with one reason; open findings are a filter and a flagged row;
times are China time with the zone; raw answers are readable; sign-out stays signed out.

The local run uses the sample configuration with a Xunlian channel that does not de-duplicate
(``FAPIAO_HUB_LOCAL_CONFIG``): a request whose answer is lost (the sandbox's ``timeout_after_issue``,
scripted for one request number) can then only end in MANUAL_REVIEW, as in production.

Screenshots go to test-artifacts/console/ on every run; with ``CONSOLE_SCREENSHOTS=docs`` they are
copied to docs/console/ too (committed, shown in docs/operations.md): a test run does not dirty the
tree. Chromium and chromedriver are required (``make chromium`` installs them): without them these
tests fail, they do not skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from selenium import webdriver  # the dev extra; make chromium installs the browser and its driver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By

from fapiao_hub.domain.models import Difference, Finding, FindingKind, request_number_for
from fapiao_hub.infra.store import ApplicationStore
from fapiao_hub_client import demo
from tests.integration.conftest import ROOT, LocalRun, _finish, start_local_run

pytestmark = pytest.mark.integration


SCREENSHOTS = ROOT / "test-artifacts" / "console"
DOCUMENTED = ROOT / "docs" / "console"  # written only when CONSOLE_SCREENSHOTS=docs
CHINA_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2} \(UTC\+8\)")
SYSTEM = "sample-erp"
COMPANY = "VB5"  # routed to the Xunlian channel in local/hub-config.json
WAIT_SECONDS = 60
HOSTILE_BUYER = "<img src=x onerror=alert(1)>"
HOSTILE_REMARK = "<script>window.__pwned = 1; alert(2)</script><b onmouseover=alert(3)>bold</b>"


def executable(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"{names[0]} is not installed; the console tests need it: make chromium (as root)")


def wait_for[T](what: str, probe: Callable[[], T | None], seconds: float = WAIT_SECONDS) -> T:
    deadline = time.monotonic() + seconds
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    """One local run for the module, with a strict (non-de-duplicating) Xunlian channel."""
    work = tmp_path_factory.mktemp("console")
    config = json.loads((ROOT / "local" / "hub-config.json").read_text(encoding="utf-8"))
    config["channels"]["xunlian"].update(dedupes_request_number=False, read_timeout_seconds=1)
    path = work / "hub-config.json"
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    # Derived request numbers: the test scripts the sandbox's faults for a number before sending the order.
    run = start_local_run(work / "run", FAPIAO_HUB_LOCAL_CONFIG=str(path), LOCAL_DERIVED_REQUEST_NUMBERS="1")
    try:
        yield run
    finally:
        _finish(run)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = executable("chromium", "chromium-browser")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=executable("chromedriver"))  # no Selenium Manager download
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def operator_token(run: LocalRun) -> str:
    token = json.loads((run.state_dir / "local.json").read_text(encoding="utf-8")).get("operator_token")
    assert token, "the local run wrote no operator_token to local.json"
    return str(token)


def submit(run: LocalRun, order: dict[str, Any]) -> dict[str, Any]:
    answer = requests.post(f"{run.api_url}/v1/invoice-orders", json=order, timeout=30,
                           headers={"Authorization": f"Bearer {run.token}"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def business_view(run: LocalRun, code: str) -> dict[str, Any]:
    answer = requests.get(f"{run.api_url}/v1/invoice-orders/{code}", timeout=30,
                          headers={"Authorization": f"Bearer {run.token}"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def no_dialog(driver: Any) -> None:
    try:
        alert = driver.switch_to.alert
    except NoAlertPresentException:
        return
    text = alert.text
    alert.dismiss()
    pytest.fail(f"a dialog opened: {text!r}")


def shot(driver: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(SCREENSHOTS / name)), name
    if os.environ.get("CONSOLE_SCREENSHOTS") == "docs":
        DOCUMENTED.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SCREENSHOTS / name, DOCUMENTED / name)


def text_of(driver: Any, selector: str) -> str:
    return driver.execute_script("const n = document.querySelector(arguments[0]); return n ? n.textContent : null;",
                                 selector)  # fmt: skip


def open_console(driver: Any, run: LocalRun) -> None:
    """The console signs in by itself on the local run (GET /ops/local-session) and shows the counts."""
    driver.get(run.info.get("console_url") or f"{run.api_url}/ops/")
    wait_for("the console to sign in", lambda: text_of(driver, "#session-state") == "signed in")
    wait_for("the summary", lambda: driver.find_elements(By.CSS_SELECTOR, "#summary-counts [data-status]"))


def test_an_operator_resolves_a_manual_review_as_issued(hub: LocalRun, browser: Any) -> None:
    code = f"console-review-{demo.run_suffix()}"
    number = request_number_for(f"{SYSTEM}#{code}")
    xunlian = hub.info["channels"]["xunlian"]["base_url"]
    requests.post(f"{xunlian}/_sandbox/config", json={"timeout_ms": 3000}, timeout=5).raise_for_status()
    requests.post(f"{xunlian}/_sandbox/faults", json={number: ["timeout_after_issue"]}, timeout=5).raise_for_status()
    order, _ = demo.blue_order("xunlian", COMPANY, code)
    submit(hub, order)
    wait_for("MANUAL_REVIEW", lambda: business_view(hub, code)["status"] == "MANUAL_REVIEW")
    sandbox = requests.get(f"{xunlian}/_sandbox/issued/{number}", timeout=5).json()
    assert sandbox["count"] == 1, sandbox  # the channel did issue it; the hub never heard
    issued = sandbox["invoices"][0]

    open_console(browser, hub)
    review = '#summary-counts [data-status="MANUAL_REVIEW"]'
    count = wait_for("the MANUAL_REVIEW count", lambda: text_of(browser, f"{review} .n"))
    assert int(count) >= 1
    browser.find_element(By.CSS_SELECTOR, review).click()
    row = f'#application-rows tr[data-code="{code}"]'
    wait_for("the application in the filtered list", lambda: browser.find_elements(By.CSS_SELECTOR, row))
    statuses = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#application-rows .status")]
    assert statuses and set(statuses) == {"MANUAL_REVIEW"}, statuses
    shot(browser, "list.png")

    browser.find_element(By.CSS_SELECTOR, f"{row} a").click()
    button = '#detail-actions [data-action="resolve-issued"]'
    wait_for("the detail's actions", lambda: browser.find_elements(By.CSS_SELECTOR, button))
    assert text_of(browser, "#detail-title") == f"{SYSTEM} / {code}"
    assert "MANUAL_REVIEW" in text_of(browser, '#detail-fields [data-field="Status"]')
    assert len(browser.find_elements(By.CSS_SELECTOR, "#detail-timeline li")) >= 3
    # China time with its zone everywhere; no epoch seconds (lease, next poll).
    for field in ("Received", "Updated"):
        assert CHINA_TIME.match(text_of(browser, f'#detail-fields [data-field="{field}"]')), field
    for field in ("Lease until", "Next poll"):
        shown = text_of(browser, f'#detail-fields [data-field="{field}"]')
        assert shown == "–" or CHINA_TIME.match(shown), (field, shown)
    times = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#detail-timeline time")]
    assert times and all(CHINA_TIME.match(t) for t in times), times
    # What to do, from the playbook; the answer was lost (a timeout): no raw answer, and the console says why.
    todo = text_of(browser, '#detail-guidance [data-playbook="MANUAL_REVIEW"]')
    assert todo.startswith("MANUAL_REVIEW playbook: ask the channel"), todo
    assert text_of(browser, "#detail-raw-keys").startswith("None: no answer of a channel was kept")
    shot(browser, "detail.png")

    browser.find_element(By.CSS_SELECTOR, button).click()
    dialog = browser.find_element(By.ID, "action-dialog")
    wait_for("the action dialog", lambda: dialog.is_displayed())
    # Without a reason the browser refuses to send (the API would answer 400 naming "reason").
    browser.find_element(By.CSS_SELECTOR, '#action-params input[name="number"]').send_keys(issued["invoiceNumber"])
    if issued.get("invoiceCode"):
        browser.find_element(By.CSS_SELECTOR, '#action-params input[name="code"]').send_keys(issued["invoiceCode"])
    # Xunlian cannot be asked: the operator states the figures seen on the invoice (issue 18).
    seen = (("amount", "totalAmountExcludeTax"), ("tax", "totalTaxAmount"), ("sellerTaxNumber", "sellerTaxId"))
    for name, key in seen:
        browser.find_element(By.CSS_SELECTOR, f'#action-params input[name="{name}"]').send_keys(str(issued[key]))
    reason = "seen in the Xunlian portal: issued before the answer was lost"
    browser.find_element(By.ID, "action-reason").send_keys(reason)
    shot(browser, "action.png")
    browser.find_element(By.ID, "action-submit").click()

    status = '#detail-fields [data-field="Status"]'
    wait_for("ISSUED in the console", lambda: "ISSUED" in (text_of(browser, status) or ""))
    assert not dialog.is_displayed()
    assert issued["invoiceNumber"] in text_of(browser, "#detail-invoices")
    assert reason in text_of(browser, "#detail-timeline")
    assert "resolve-issued: done; the application is now ISSUED." in text_of(browser, "#banner")

    view = business_view(hub, code)
    assert view["status"] == "ISSUED"
    assert [i["invoiceNumber"] for i in view["invoices"]] == [issued["invoiceNumber"]]
    assert view["invoices"][0]["attestedByOperator"] == ["seller", "direction", "amount", "tax"]
    assert "attested by operator: seller, direction, amount, tax" in text_of(browser, "#detail-invoices")
    notifications = hub.info["webhooks"][SYSTEM]["notifications"]

    def delivered() -> dict[str, Any] | None:
        for delivery in requests.get(notifications, timeout=5).json():
            body = delivery.get("body") or {}
            if (body.get("application") or {}).get("openApplyCode") == code and body.get("type") == "InvoiceIssued":
                return delivery
        return None

    delivery = wait_for("the webhook's InvoiceIssued", delivered)
    assert delivery["signature_ok"] is True, delivery
    assert [i["invoiceNumber"] for i in delivery["body"]["invoices"]] == [issued["invoiceNumber"]]

    # The token: never in the address bar, the page or the run's log.
    token = operator_token(hub)
    assert token not in browser.current_url
    assert token not in browser.page_source
    assert token not in hub.log()
    assert requests.get(f"{xunlian}/_sandbox/issued/{number}", timeout=5).json()["count"] == 1  # never issued twice
    no_dialog(browser)


def test_hostile_names_and_remarks_are_shown_as_text(hub: LocalRun, browser: Any) -> None:
    code = f"console-hostile-{demo.run_suffix()}"
    order, _ = demo.blue_order("xunlian", COMPANY, code)
    order["invoiceOrder"].update(purchaserTaxpayerName=HOSTILE_BUYER, remark=HOSTILE_REMARK)
    submit(hub, order)

    page = requests.get(f"{hub.api_url}/ops/", timeout=10)
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"

    open_console(browser, hub)
    row = f'#application-rows tr[data-code="{code}"]'
    wait_for("the hostile application in the list", lambda: browser.find_elements(By.CSS_SELECTOR, row))
    assert text_of(browser, f"{row} td.buyer") == HOSTILE_BUYER
    browser.find_element(By.CSS_SELECTOR, f"{row} a").click()
    wait_for("the detail", lambda: HOSTILE_REMARK in (text_of(browser, "#detail-order") or ""))
    order_text = json.loads(text_of(browser, "#detail-order"))
    assert order_text["purchaserTaxpayerName"] == HOSTILE_BUYER and order_text["remark"] == HOSTILE_REMARK
    time.sleep(1)  # an onerror handler would have fired by now

    no_dialog(browser)
    injected = browser.execute_script(
        "return {scripts: document.scripts.length, imgs: document.querySelectorAll('img').length,"
        " bold: document.querySelectorAll('main b').length, pwned: window.__pwned === 1,"
        " handlers: document.querySelectorAll('[onerror],[onmouseover]').length};"
    )
    assert injected == {"scripts": 1, "imgs": 0, "bold": 0, "pwned": False, "handlers": 0}, injected
    errors = [e["message"] for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert not [m for m in errors if "Content Security Policy" in m], errors  # nothing even tried to run


# ---------------------------------------------------------------------------- guidance (issue 19)
def store_of(run: LocalRun) -> ApplicationStore:
    """The run's applications table in its moto server, over HTTP: to add what only days of
    reconciliation runs would (repeats of one finding)."""
    dynamodb = boto3.resource(
        "dynamodb", endpoint_url=run.info["aws_endpoint_url"], region_name=run.info["region"],
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    return ApplicationStore(dynamodb.Table(run.info["tables"]["ApplicationsTable"]))


def ops_detail(run: LocalRun, code: str) -> dict[str, Any]:
    answer = requests.get(f"{run.api_url}/v1/ops/applications/{SYSTEM}/{code}", timeout=30,
                          headers={"Authorization": f"Bearer {operator_token(run)}"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def show_detail(driver: Any, run: LocalRun, code: str) -> None:
    driver.get(f"{run.info.get('console_url') or run.api_url + '/ops/'}#/applications/{SYSTEM}/{code}")
    wait_for("the console to sign in", lambda: text_of(driver, "#session-state") == "signed in")
    wait_for("the detail", lambda: text_of(driver, "#detail-title") == f"{SYSTEM} / {code}"
             and driver.find_elements(By.CSS_SELECTOR, "#detail-actions button, #detail-actions span"))  # fmt: skip


def classes(driver: Any, selector: str) -> set[str]:
    return set((driver.find_element(By.CSS_SELECTOR, selector).get_attribute("class") or "").split())


def test_a_mismatch_shows_expected_and_reported_and_its_invoice_is_not_green(hub: LocalRun, browser: Any) -> None:
    code = f"console-mismatch-{demo.run_suffix()}"
    number = request_number_for(f"{SYSTEM}#{code}")
    xunlian = hub.info["channels"]["xunlian"]["base_url"]
    requests.post(f"{xunlian}/_sandbox/faults", json={number: ["wrong_amount"]}, timeout=5).raise_for_status()
    order, _ = demo.blue_order("xunlian", COMPANY, code)
    submit(hub, order)
    wait_for("MISMATCH", lambda: business_view(hub, code)["status"] == "MISMATCH")
    detail = ops_detail(hub, code)
    [finding] = detail["findings"]
    expected = {d["field"]: (d["expected"], d["reported"]) for d in finding["differences"]}
    assert "amount" in expected, expected
    [invoice] = detail["invoices"]

    show_detail(browser, hub, code)
    box = f'#detail-findings [data-finding="{finding["id"]}"]'
    wait_for("the finding", lambda: browser.find_elements(By.CSS_SELECTOR, box))
    for field, (want, got) in expected.items():
        row = f'{box} table.differences tr[data-field="{field}"]'
        assert text_of(browser, f"{row} td.expected") == want and text_of(browser, f"{row} td.reported") == got, field
    assert text_of(browser, f'{box} [data-playbook="RESULT_MISMATCH"]').startswith("RESULT_MISMATCH playbook: ")
    assert text_of(browser, '#detail-guidance [data-playbook="MISMATCH"]').startswith("MISMATCH playbook: compare")
    # The channel issued it, but it is not accepted: never a green ISSUED.
    state = f'#invoice-table tr[data-invoice="{invoice["invoiceNumber"]}"] td.state span'
    assert text_of(browser, state) == "MISMATCH: not accepted"
    assert "ISSUED" not in classes(browser, state)
    browser.execute_script("document.getElementById('detail-guidance').scrollIntoView()")
    shot(browser, "mismatch.png")
    # The channel's answer as it came, through the ops API.
    [key] = detail["rawKeys"]
    browser.find_element(By.CSS_SELECTOR, "#detail-raw-keys li button").click()
    wait_for("the raw answer", lambda: invoice["invoiceNumber"] in (text_of(browser, "#raw-view-body") or ""))
    assert text_of(browser, "#raw-view-key") == key
    shot(browser, "raw-answer.png")

    # The playbook entry the finding links to, served with the console.
    browser.find_element(By.CSS_SELECTOR, f"{box} .finding-head a.kind").click()
    entry = '#playbook-entries [data-playbook="RESULT_MISMATCH"]'
    wait_for("the playbook", lambda: browser.find_elements(By.CSS_SELECTOR, f"{entry}.current"))
    assert "What to do:" in text_of(browser, entry) and "docs/operations.md#result_mismatch" in text_of(browser, entry)
    no_dialog(browser)


def test_repeated_findings_are_one_row_flagged_and_acknowledged_together(hub: LocalRun, browser: Any) -> None:
    code = f"console-repeats-{demo.run_suffix()}"
    order, _ = demo.blue_order("xunlian", COMPANY, code)
    submit(hub, order)
    wait_for("ISSUED", lambda: business_view(hub, code)["status"] == "ISSUED")
    detail = ops_detail(hub, code)
    [invoice] = detail["invoices"]
    number = invoice["invoiceNumber"]
    assert len(detail["rawKeys"]) == 1, detail["rawKeys"]  # the synchronous answer is archived too

    # Twelve reconciliation runs finding the same difference, and one other finding.
    store = store_of(hub)
    key = f"{SYSTEM}#{code}"
    for day in range(1, 13):
        store.add_finding(key, Finding(
            id=f"{code}-totals-{day:02d}", kind=FindingKind.TOTALS_DIFFER, at=f"2026-11-{day:02d}T01:15:00.000Z",
            source="reconciliation", summary="the channel's total differs from the hub's record",
            differences=(Difference(field="amount", expected=str(invoice["amount"]), reported="1.00"),),
            invoice_numbers=(number,),
        ), note="reconciliation: totals differ")  # fmt: skip
    store.add_finding(key, Finding(
        id=f"{code}-second", kind=FindingKind.POSSIBLE_DUPLICATE_ISSUANCE, at="2026-11-20T02:00:00.000Z",
        source="callback", summary="a second invoice 99990001 arrived", invoice_numbers=("99990001",),
    ), note="a second invoice")  # fmt: skip

    open_console(browser, hub)
    card = '#summary-extra [data-kind="open-findings"]'
    wait_for("the open findings card", lambda: browser.find_elements(By.CSS_SELECTOR, card))
    assert "attention" in classes(browser, card) and int(text_of(browser, f"{card} .n")) >= 13
    browser.find_element(By.CSS_SELECTOR, card).click()
    row = f'#application-rows tr[data-code="{code}"]'
    wait_for("the filtered list", lambda: browser.find_elements(By.CSS_SELECTOR, row))
    assert browser.find_element(By.ID, "filter-open-findings").is_selected()
    rows = browser.find_elements(By.CSS_SELECTOR, "#application-rows tr")
    assert all(int(r.get_attribute("data-open-findings")) > 0 for r in rows)
    assert "flagged" in classes(browser, row) and "held" in classes(browser, f"{row} .status")
    assert text_of(browser, f"{row} td.findings") == "13 open"
    assert CHINA_TIME.match(text_of(browser, f"{row} td:first-child"))
    shot(browser, "open-findings.png")

    browser.find_element(By.CSS_SELECTOR, f"{row} td:nth-child(3) a").click()
    group = '#detail-findings [data-kind="TOTALS_DIFFER"]'
    wait_for("the findings", lambda: browser.find_elements(By.CSS_SELECTOR, group))
    groups = browser.find_elements(By.CSS_SELECTOR, "#detail-findings .finding")
    assert [g.get_attribute("data-count") for g in groups] == ["1", "12"]  # newest last seen first
    assert text_of(browser, f"{group} .repeat") == "×12"
    assert "2026-11-12 09:15 (UTC+8)" in text_of(browser, f"{group} .finding-head")  # last seen, China time
    assert text_of(browser, f'{group} tr[data-field="amount"] td.reported') == "1.00"
    height = browser.execute_script("return document.documentElement.scrollHeight")
    assert height < 2600, height  # twelve repeats no longer make a 4,675-px page
    # An ISSUED application held by open findings: not a green badge, and the invoice says why.
    assert "held" in classes(browser, '#detail-fields [data-field="Status"] .status')
    assert text_of(browser, f'#invoice-table tr[data-invoice="{number}"] td.state') == "ISSUED: TOTALS_DIFFER"
    shot(browser, "findings.png")

    browser.find_element(By.CSS_SELECTOR, f"{group} input.pick").click()
    assert text_of(browser, "#findings-selected") == "1 selected (12 findings)"
    browser.find_element(By.ID, "findings-acknowledge").click()
    dialog = browser.find_element(By.ID, "action-dialog")
    wait_for("the acknowledge dialog", lambda: dialog.is_displayed())
    choices = browser.find_elements(By.CSS_SELECTOR, "#action-params label.choice")
    assert len(choices) == 2
    ticked = [c.text for c in choices if c.find_element(By.TAG_NAME, "input").is_selected()]
    assert len(ticked) == 1 and "×12" in ticked[0] and "last seen 2026-11-12 09:15 (UTC+8)" in ticked[0], ticked
    reason = "reconciliation compared the pre-discount total; the channel's invoice is right"
    browser.find_element(By.ID, "action-reason").send_keys(reason)
    shot(browser, "acknowledge.png")
    browser.find_element(By.ID, "action-submit").click()
    wait_for("the acknowledgement", lambda: "12 findings acknowledged" in (text_of(browser, "#banner") or ""))
    done = "acknowledge-finding: 12 findings acknowledged; the application is now ISSUED."
    assert text_of(browser, "#banner") == done

    after = ops_detail(hub, code)
    still_open = sorted(f["id"] for f in after["findings"] if f["open"])
    assert still_open == [f"{code}-second"]
    # One acknowledgement record per finding on the audit trail (each action also has its own record).
    acknowledged = [e for e in after["history"] if e.get("record") == "finding-acknowledged"]
    assert len(acknowledged) == 12 and all(reason in (e.get("note") or "") for e in acknowledged)
    assert after["status"] == "ISSUED"
    no_dialog(browser)


def test_an_invoice_clash_links_the_application_holding_the_invoice(hub: LocalRun, browser: Any) -> None:
    suffix = demo.run_suffix()
    holder, clashing = f"console-holder-{suffix}", f"console-clash-{suffix}"
    for code in (holder, clashing):
        submit(hub, demo.blue_order("xunlian", COMPANY, code)[0])
    for code in (holder, clashing):
        wait_for("ISSUED", lambda code=code: business_view(hub, code)["status"] == "ISSUED")
    [invoice] = ops_detail(hub, holder)["invoices"]
    taken = f"{invoice['invoiceCode']}-{invoice['invoiceNumber']}"
    # What workflow records when a channel reports, for one application, the other's invoice.
    store_of(hub).add_finding(f"{SYSTEM}#{clashing}", Finding(
        id=f"{clashing}-clash", kind=FindingKind.INVOICE_CLASH, at="2026-12-08T01:00:00.000Z", source="poll",
        summary=f"issued by xunlian, but invoice {taken} is recorded for another application",
        differences=(Difference(field=f"invoices[{taken}].application", expected="this application",
                                reported="another"),),
        invoice_numbers=(taken,), related=(f"{SYSTEM}#{holder}",),
    ), note="invoice clash")  # fmt: skip
    # The business system's own answer never names the other application.
    assert holder not in json.dumps(business_view(hub, clashing))

    open_console(browser, hub)
    show_detail(browser, hub, clashing)
    link = f'#detail-fields a[data-related="{holder}"]'
    wait_for("the related application", lambda: browser.find_elements(By.CSS_SELECTOR, link))
    assert text_of(browser, link) == f"{SYSTEM} / {holder} (ISSUED)"
    assert "INVOICE_CLASH" in text_of(browser, "#detail-findings")
    browser.find_element(By.CSS_SELECTOR, link).click()
    wait_for("the holder's detail", lambda: browser.current_url.endswith(f"#/applications/{SYSTEM}/{holder}"))
    wait_for("the holder's invoice", lambda: browser.find_elements(
        By.CSS_SELECTOR, f'#invoice-table tr[data-invoice="{invoice["invoiceNumber"]}"]'))


def test_sign_out_stays_signed_out_and_is_not_an_error(hub: LocalRun, browser: Any) -> None:
    open_console(browser, hub)
    browser.find_element(By.ID, "sign-out").click()
    wait_for("signed out", lambda: text_of(browser, "#session-state") == "signed out")
    assert text_of(browser, "#sign-in-note") == "Signed out." and text_of(browser, "#sign-in-error") == ""
    red = browser.execute_script("return getComputedStyle(document.getElementById('sign-in-note')).color")
    assert red != "rgb(179, 38, 30)", red
    browser.refresh()
    wait_for("the page after the reload", lambda: text_of(browser, "#session-state") == "signed out")
    time.sleep(1.5)  # the local session would have signed it in by now
    assert text_of(browser, "#session-state") == "signed out"
    assert browser.find_element(By.ID, "sign-in").is_displayed()
    assert not browser.execute_script("return sessionStorage.getItem('fapiao-hub.operator-token')")
    browser.find_element(By.ID, "local-sign-in").click()
    wait_for("signed in again", lambda: text_of(browser, "#session-state") == "signed in")
