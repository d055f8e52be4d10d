"""The approvers' web page (`/approvals/ui`) in real headless Chromium (Debian `chromium` + `chromium-driver`,
driven with selenium; installed by tests/setup.sh): a call held by the gateway shows up in the queue with its
details, an approver approves it with a comment, the row leaves the queue and appears in the history, and the
held SDK call completes. A screenshot is kept in tests/e2e/artifacts/approvals.png.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from helpers import MODERN
from test_approvals import ALICE, one_call, start
from test_policies import forwarded_calls

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture
def browser():
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not Path(exe).exists():
            pytest.fail(f"{exe} missing: run tests/setup.sh (installs Debian chromium and chromium-driver)")
    profile = tempfile.mkdtemp(prefix="approvals-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
              f"--user-data-dir={profile}", "--window-size=1400,900"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_the_page_shows_the_queue_and_approving_releases_the_held_call(stack, certs, policy_dir, browser):
    up, gw, admin = start(stack, certs, policy_dir, wait="60s")
    outcome: dict = {}
    caller = threading.Thread(target=lambda: outcome.update(call=one_call(gw, certs, MODERN, {"id": "c-page"})))
    caller.start()

    browser.get(admin + "/approvals/ui")
    browser.find_element(By.ID, "token").send_keys(ALICE)
    browser.find_element(By.ID, "save-token").click()
    wait = WebDriverWait(browser, 20, poll_frequency=0.1)
    row = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#pending tr.pending-row")))
    approval_id = row.get_attribute("data-id")
    assert approval_id.startswith("apr_")
    cells = row.text
    assert "crm / delete_customer" in cells and "c-page" in cells and "guard" in cells, cells
    assert forwarded_calls(up, "delete_customer") == [], "forwarded before approval"

    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "approvals-pending.png"))
    row.find_element(By.CSS_SELECTOR, "input.comment").send_keys("approved in the browser")
    row.find_element(By.CSS_SELECTOR, "button.approve").click()

    wait.until(EC.invisibility_of_element_located((By.CSS_SELECTOR, f'#pending tr[data-id="{approval_id}"]')))
    hist = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, f'#history tr[data-id="{approval_id}"]')))
    assert "approved" in hist.text and "alice" in hist.text and "approved in the browser" in hist.text, hist.text
    assert browser.find_element(By.ID, "pending-empty").is_displayed()
    assert browser.find_element(By.ID, "error").text == ""
    browser.save_screenshot(str(ARTIFACTS / "approvals.png"))

    caller.join(timeout=30)
    c = outcome["call"]
    assert c.error is None and c.result.is_error is False and c.text == "v2 deleted c-page", (c.error, c.result)
    assert len(forwarded_calls(up, "delete_customer")) == 1
