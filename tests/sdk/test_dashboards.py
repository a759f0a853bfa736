"""The dashboards in a real browser: Debian's headless Chromium driven by
Selenium through chromedriver, against the real binary on conf/demo.yaml.

The customer flow: paste a key, see the balance and the recent requests, make
a call, refresh, see it. The operator flow: sign in with the admin token,
create an account, top it up at 4x, create a key (shown once), revoke it, and
the key gets 401. Each screen is checked for what it must show, the browser
must report no Content-Security-Policy violation, no full key may stay on a
page, the admin token never goes to the main listener, and the pages fit a
phone's width. Screenshots go to target/screenshots/ (the CI's artifacts).
"""

import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import REPO, Stack

SHOTS = Path(os.environ.get("TOLLGATE_SCREENSHOTS", REPO / "target" / "screenshots"))
ADMIN_TOKEN = "tollgate-admin-demo"


def browser() -> webdriver.Chrome:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    assert binary and driver_path, "the test command installs Debian's chromium and chromium-driver"
    options = Options()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1800"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options)


@pytest.fixture(scope="module")
def stack():
    s = Stack()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def driver():
    d = browser()
    yield d
    d.quit()


def call(stack: Stack, key: str, text: str = "hello") -> tuple[int, str]:
    body = json.dumps({"model": "gpt-5.5", "messages": [{"role": "user", "content": text}]}).encode()
    request = urllib.request.Request(
        f"{stack.url}/v1/chat/completions",
        data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.headers["x-request-id"]
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("x-request-id", "")


def wait(driver, what, timeout: float = 10):
    return WebDriverWait(driver, timeout).until(lambda d: what(d))


def text(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def shot(driver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def no_csp_violation(driver) -> None:
    logs = driver.get_log("browser")
    bad = [l["message"] for l in logs if "Content Security Policy" in l["message"] or "Refused to" in l["message"]]
    assert not bad, bad
    severe = [l["message"] for l in logs if l["level"] == "SEVERE"]
    assert not severe, severe


def fits_a_phone(driver, page: str) -> None:
    driver.set_window_size(390, 844)
    overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{page} is {overflow}px wider than a phone"
    shot(driver, f"{page}-phone")
    driver.set_window_size(1280, 1800)


def requested_origins(driver) -> set[str]:
    names = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    return {"/".join(n.split("/")[:3]) for n in names}


def test_the_customer_pastes_a_key_and_sees_the_balance_and_each_new_call(stack, driver):
    status, first = call(stack, stack.key)
    assert status == 200
    driver.get(f"{stack.url}/dashboard")
    assert driver.execute_script("return sessionStorage.length") == 0
    driver.find_element(By.ID, "key-input").send_keys(stack.key)
    driver.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()

    wait(driver, lambda d: text(d, "balance-usd").startswith("$"))
    wait(driver, lambda d: first in text(d, "requests"))
    assert text(driver, "plan") == "pro"
    assert text(driver, "key-prefix").endswith("…") and stack.key not in driver.page_source
    assert "openai/gpt-5.5" in text(driver, "models")
    assert driver.find_elements(By.CSS_SELECTOR, "#chart svg rect.bar"), "the 30-day spend chart"
    assert "Claude Code" in text(driver, "setup") and f"{stack.url}/v1" in text(driver, "setup")
    # The key lives in this tab's session storage only: never a URL, never a cookie.
    assert driver.execute_script("return sessionStorage.getItem('tollgate.dashboard.key')") == stack.key
    assert stack.key not in driver.current_url and driver.get_cookies() == []
    shot(driver, "customer")

    status, second = call(stack, stack.key, "a new call")
    assert status == 200
    assert second not in text(driver, "requests")
    driver.find_element(By.ID, "refresh").click()
    wait(driver, lambda d: second in text(d, "requests"))
    # Each row opens its bill.
    driver.find_element(By.XPATH, f"//button[text()='{second}']").click()
    wait(driver, lambda d: d.find_element(By.ID, "generation").is_displayed())
    assert second in text(driver, "generation") and "$" in text(driver, "generation-fields")
    assert requested_origins(driver) == {stack.url}
    no_csp_violation(driver)
    fits_a_phone(driver, "customer")

    driver.find_element(By.ID, "forget").click()
    assert driver.execute_script("return sessionStorage.getItem('tollgate.dashboard.key')") is None


def test_a_wrong_key_is_refused_on_the_page(stack, driver):
    driver.get(f"{stack.url}/dashboard")
    driver.find_element(By.ID, "key-input").send_keys("sk-tollgate-not-a-key")
    driver.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    wait(driver, lambda d: "401" in text(d, "login-error"))
    assert not driver.find_element(By.ID, "board").is_displayed()
    # The browser logs the refused call (expected here); the next test reads its own.
    driver.get_log("browser")


def test_the_operator_creates_an_account_tops_it_up_and_issues_and_revokes_a_key(stack, driver):
    driver.get(f"{stack.admin_url}/admin")
    driver.find_element(By.ID, "token-input").send_keys(ADMIN_TOKEN)
    driver.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    wait(driver, lambda d: "demo" in text(d, "accounts"))

    driver.find_element(By.ID, "new-name").send_keys("Browser Co")
    driver.find_element(By.CSS_SELECTOR, "#new-plan option[value=pro]").click()
    driver.find_element(By.CSS_SELECTOR, "#create-form button[type=submit]").click()
    wait(driver, lambda d: "Browser Co" in text(d, "account-title"))
    assert "Browser Co" in text(driver, "accounts")

    driver.find_element(By.ID, "topup-amount").send_keys("10")
    driver.find_element(By.CSS_SELECTOR, "#topup-multiplier option[value='4']").click()
    driver.find_element(By.CSS_SELECTOR, "#topup-form button[type=submit]").click()
    wait(driver, lambda d: "4×" in text(d, "topup-status"))
    wait(driver, lambda d: text(d, "acct-balance") == "$40.00")
    wait(driver, lambda d: "topup" in text(d, "ledger"))

    driver.find_element(By.ID, "key-name").send_keys("browser")
    driver.find_element(By.ID, "key-cap").send_keys("5")
    driver.find_element(By.ID, "key-rpm").send_keys("30")
    driver.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    wait(driver, lambda d: d.find_element(By.ID, "new-key").is_displayed())
    key = text(driver, "new-key-value")
    assert key.startswith("sk-tollgate-"), key
    assert driver.find_elements(By.XPATH, "//button[text()='Copy the key']")
    wait(driver, lambda d: "browser" in text(d, "keys") and "$5.00" in text(d, "keys") and "rpm 30" in text(d, "keys"))
    shot(driver, "admin-new-key")
    # Shown once: gone from the page when the operator says it is stored.
    driver.find_element(By.ID, "new-key-done").click()
    assert key not in driver.page_source
    shown = next(w for w in text(driver, "keys").split() if w.endswith("…"))
    assert key.startswith(shown[:-1]) and len(shown) < len(key) // 2, shown

    status, _ = call(stack, key)
    assert status == 200
    driver.find_element(By.XPATH, "//button[@aria-label='Revoke key browser']").click()
    driver.switch_to.alert.accept()
    wait(driver, lambda d: "revoked" in text(d, "keys"))
    status, _ = call(stack, key)
    assert status == 401
    shot(driver, "admin")

    driver.find_element(By.CSS_SELECTOR, "nav.tabs button[data-tab=usage]").click()
    wait(driver, lambda d: "openai/gpt-5.5" in text(d, "usage"))
    assert driver.find_elements(By.CSS_SELECTOR, "#usage-chart svg rect.bar")
    shot(driver, "admin-usage")
    driver.find_element(By.CSS_SELECTOR, "nav.tabs button[data-tab=models]").click()
    wait(driver, lambda d: "openai/gpt-5.5" in text(d, "models") and "$1.25" in text(d, "models"))
    driver.find_element(By.CSS_SELECTOR, "nav.tabs button[data-tab=live]").click()
    wait(driver, lambda d: text(d, "live-total") not in ("", "–") and "invalid_api_key" in text(d, "live-codes"))
    shot(driver, "admin-live")

    # The token went to the admin listener only.
    assert requested_origins(driver) == {stack.admin_url}
    assert driver.execute_script("return sessionStorage.getItem('tollgate.console.token')") == ADMIN_TOKEN
    no_csp_violation(driver)
    driver.find_element(By.CSS_SELECTOR, "nav.tabs button[data-tab=accounts]").click()
    fits_a_phone(driver, "admin")


def test_every_page_carries_the_policy_and_the_console_api_needs_the_token(stack):
    for url in (f"{stack.url}/dashboard", f"{stack.admin_url}/admin", f"{stack.admin_url}/admin/assets/admin.js"):
        with urllib.request.urlopen(url, timeout=5) as r:
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "default-src 'none'" in csp, csp
            assert r.headers["x-frame-options"] == "DENY"
    for path in ("/admin/v1/accounts", "/admin/v1/stats", "/admin/v1/plans"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{stack.admin_url}{path}", timeout=5)
        assert refused.value.code == 401
    # The main listener serves no console, and the admin API is not behind it.
    for path in ("/admin", "/admin/v1/accounts"):
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{stack.url}{path}", timeout=5)
        assert missing.value.code == 404
