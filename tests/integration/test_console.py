"""The operations console in headless Chromium (Selenium, Debian's chromium and chromedriver) against
the real local run: an operator resolves a MANUAL_REVIEW application as issued, sees it ISSUED, and
the sample business system's webhook receives the outcome; hostile names and remarks stay text.

The local run uses the sample configuration with a Xunlian channel that does not de-duplicate
(``FAPIAO_HUB_LOCAL_CONFIG``): a request whose answer is lost (the sandbox's ``timeout_after_issue``,
scripted for one request number) can then only end in MANUAL_REVIEW, as in production.

Screenshots of the list, the detail with its timeline and the action dialog go to docs/console/
(committed, shown in docs/operations.md). Chromium and chromedriver are required (``make chromium``
installs them): without them these tests fail, they do not skip.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium import webdriver  # the dev extra; make chromium installs the browser and its driver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By

from fapiao_hub.models import request_number_for
from fapiao_hub_client import demo
from tests.integration.conftest import ROOT, LocalRun, _finish, start_local_run

pytestmark = pytest.mark.integration


SCREENSHOTS = ROOT / "docs" / "console"
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
    shot(browser, "detail.png")

    browser.find_element(By.CSS_SELECTOR, button).click()
    dialog = browser.find_element(By.ID, "action-dialog")
    wait_for("the action dialog", lambda: dialog.is_displayed())
    # Without a reason the browser refuses to send (the API would answer 400 naming "reason").
    browser.find_element(By.CSS_SELECTOR, '#action-params input[name="number"]').send_keys(issued["invoiceNumber"])
    if issued.get("invoiceCode"):
        browser.find_element(By.CSS_SELECTOR, '#action-params input[name="code"]').send_keys(issued["invoiceCode"])
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
