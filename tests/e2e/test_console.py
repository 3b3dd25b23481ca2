"""The console in a real browser (Debian's Chromium): sign in, filter incidents, open one,
acknowledge it, download a PDF report, look a file up by its fingerprint, explain a policy
decision; a page for another role is refused, a change without the CSRF token is refused;
every control is labelled, the chart's colours stand out, the incident list works from the
keyboard. Screenshots of each page go to ``build/screenshots/``."""

from __future__ import annotations

import http.client
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from gateway.api_auth import new_token
from gateway.report.timeline import ACTION_COLOURS
from tests.e2e.conftest import Upstreams, gateway_config
from tests.support import browser
from tests.support.gateway_process import GatewayProcess
from tests.support.patients import hl7_adt, make_patient
from tests.support.upstream import Pki

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bool(browser.missing()), reason=browser.missing() or "ok"),
]
AUDITOR, AUDITOR_HASH = new_token()
ANALYST, ANALYST_HASH = new_token()
ADMIN, ADMIN_HASH = new_token()
SECRET = "console-test-secret"
SHOTS = Path(os.environ.get("PHI_GATEWAY_SCREENSHOTS", "build/screenshots"))
RADIOLOGY_CLIENT = "127.0.5.1"


def _send(proxy_port: int, url: str, body: bytes, source: str = "127.0.0.1") -> int:
    """A POST through the proxy from a chosen client address (httpx cannot bind one)."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", proxy_port, timeout=10, source_address=(source, 0)
    )
    try:
        connection.request("POST", url, body=body, headers={"Content-Type": "application/hl7-v2"})
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.fixture(scope="module")
def console(
    tmp_path_factory: pytest.TempPathFactory, test_mmdb: Path, pki: Pki, upstreams: Upstreams
) -> Iterator[tuple[GatewayProcess, bytes]]:
    config = gateway_config(
        test_mmdb,
        pki,
        audit={"instance_id": "gw-console"},
        admin={
            "tokens": [
                {"name": "auditor-1", "role": "auditor", "sha256": AUDITOR_HASH},
                {"name": "analyst-1", "role": "analyst", "sha256": ANALYST_HASH},
                {"name": "admin-1", "role": "admin", "sha256": ADMIN_HASH},
            ]
        },
        policy={
            "client_groups": {"radiology": [f"{RADIOLOGY_CLIENT}/32"]},
            "allow_destinations": [
                {
                    "cidr": "127.0.0.3/32",
                    "reason": "BAA 2026-04 reading vendor",
                    "ticket": "CHG-1042",
                    "owner": "radiology-lead",
                    "clients": ["radiology"],
                    "action": "redact",
                }
            ],
        },
    )
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("console"), config, env={"PHI_GATEWAY_SECRET": SECRET}
    )
    kept = hl7_adt(make_patient(7)).encode()
    try:
        port = gateway.port
        for seed in range(10, 16):
            body = hl7_adt(make_patient(seed)).encode()
            assert _send(port, f"{upstreams.foreign.url}/adt", body) == 451
        assert _send(port, f"{upstreams.foreign.url}/adt", kept, RADIOLOGY_CLIENT) == 451
        gateway.audit_rows(wait_for=7)
        yield gateway, kept
    finally:
        gateway.stop()


@pytest.fixture
def chrome(tmp_path: Path) -> Iterator[WebDriver]:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = browser.chromium(tmp_path / "profile", downloads)
    driver.downloads = downloads  # type: ignore[attr-defined]
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: WebDriver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"console-{name}.png"))


def _sign_in(driver: WebDriver, base: str, token: str, page: str = "") -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/console/{page}")
    assert "/console/login" in driver.current_url
    field = driver.find_element(By.ID, "token")
    field.send_keys(token)
    _navigates(driver, field.submit)


def _navigates(driver: WebDriver, action: Callable[[], object]) -> None:
    """Do what leaves the page (a click, a submit), and wait until the next one replaced it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    page = driver.find_element(By.TAG_NAME, "html")
    action()
    WebDriverWait(driver, 30).until(expected_conditions.staleness_of(page))


def _unlabelled(driver: WebDriver) -> list[str]:
    """Visible form controls without a label a screen reader would read."""
    script = """
    return Array.from(document.querySelectorAll('input, select, textarea'))
      .filter(e => e.type !== 'hidden')
      .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
      .map(e => e.name || e.id || e.outerHTML.slice(0, 60));
    """
    return list(driver.execute_script(script))


def test_console_in_a_real_browser(
    console: tuple[GatewayProcess, bytes], chrome: WebDriver, upstreams: Upstreams
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    gateway, kept = console
    driver = chrome
    base = f"http://127.0.0.1:{gateway.admin_port}"
    find = driver.find_element

    # Sign in: the overview shows the period's blocks and an intact trail.
    driver.get(f"{base}/console/")
    _shot(driver, "login")
    assert _unlabelled(driver) == []
    _sign_in(driver, base, ANALYST)
    assert driver.current_url.rstrip("/").endswith("/console")
    assert find(By.ID, "total-block").text == "7"
    assert find(By.ID, "verification").text.startswith("Intact")
    assert "analyst-1 (analyst)" in find(By.CLASS_NAME, "who").text
    bars = driver.find_elements(By.CSS_SELECTOR, "svg.chart rect.bar")
    assert bars and {b.get_attribute("data-action") for b in bars} == {"block"}
    _shot(driver, "overview")
    assert _unlabelled(driver) == []

    # Filter: the radiology client group holds one of the seven.
    driver.get(f"{base}/console/incidents")
    assert find(By.ID, "matched").text.startswith("7 incident(s)")
    find(By.ID, "f-client").send_keys("radiology")
    find(By.ID, "f-country").send_keys("IN")
    _navigates(driver, find(By.CSS_SELECTOR, "form.filters button").click)
    assert find(By.ID, "matched").text.startswith("1 incident(s)")
    rows = driver.find_elements(By.CSS_SELECTOR, "table.incidents tbody tr")
    assert len(rows) == 1 and RADIOLOGY_CLIENT in rows[0].text
    assert _unlabelled(driver) == []

    # The list from the keyboard: Tab from the filter button walks the incident links.
    driver.get(f"{base}/console/incidents")
    _shot(driver, "incidents")
    links = [
        e.get_attribute("href") for e in driver.find_elements(By.CSS_SELECTOR, "a.incident-link")
    ]
    assert len(links) == 7
    find(By.CSS_SELECTOR, "form.filters button").send_keys("")  # focus it
    reached = []
    for _ in links:
        driver.switch_to.active_element.send_keys(Keys.TAB)
        reached.append(driver.switch_to.active_element.get_attribute("href"))
    assert reached == links
    driver.switch_to.active_element.send_keys(Keys.SHIFT, Keys.TAB)
    focused = driver.switch_to.active_element
    _navigates(driver, lambda: focused.send_keys(Keys.ENTER))
    assert driver.current_url == links[-2]

    # Open one and acknowledge it: the change is a chained workflow event.
    incident_id = links[-2].rsplit("/", 1)[1]
    assert find(By.ID, "state").text == "new"
    _shot(driver, "incident")
    assert _unlabelled(driver) == []
    _navigates(driver, find(By.ID, "acknowledge").click)
    assert find(By.ID, "state").text == "acknowledged"
    workflow = gateway.audit_rows_where(kind="workflow")
    assert [json.loads(r["detail"])["to"] for r in workflow] == ["acknowledged"]
    assert workflow[0]["subject"] == incident_id

    # A change without the CSRF token is refused (and changes nothing).
    driver.execute_script("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove());")
    find(By.ID, "comment").send_keys("no token")
    _navigates(driver, find(By.ID, "comment").submit)
    assert "security token" in find(By.ID, "message").text
    assert len(gateway.audit_rows_where(kind="workflow")) == 1

    # Download the PDF report; an independent reader finds the incidents and the
    # acknowledgement in it.
    driver.get(f"{base}/console/reports")
    _shot(driver, "reports")
    assert _unlabelled(driver) == []
    find(By.ID, "download").click()
    downloads: Path = driver.downloads  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not [
        p for p in downloads.glob("*.pdf") if not p.name.endswith(".crdownload")
    ]:
        time.sleep(0.2)
    (pdf,) = downloads.glob("*.pdf")
    import pypdfium2

    document = pypdfium2.PdfDocument(pdf)
    text = "".join(page.get_textpage().get_text_range() for page in document)
    assert text.startswith("Block report") and "intact" in text
    listed = [line for line in text.splitlines() if line.startswith(incident_id[:25])]
    assert len(listed) == 1 and "acknowled" in listed[0]  # the PDF shortens long cells
    assert text.count(" foreign-phi ") == 7
    document.close()

    # Fingerprint lookup: the file that was sent is found; another is not.
    sample = pdf.parent / "sent.hl7"
    sample.write_bytes(kept)
    driver.get(f"{base}/console/fingerprint")
    find(By.ID, "file").send_keys(str(sample))
    _navigates(driver, find(By.ID, "lookup").click)
    assert "matches 1 decision" in find(By.ID, "found").text
    _shot(driver, "fingerprint")
    sample.write_bytes(kept + b"\r")
    find(By.ID, "file").send_keys(str(sample))
    _navigates(driver, find(By.ID, "lookup").click)
    assert find(By.ID, "found").text.startswith("No decision")

    # Policy: the entry with its owner and ticket, and explain for a radiology client.
    driver.get(
        f"{base}/console/policy?client={RADIOLOGY_CLIENT}&destination=127.0.0.3:{upstreams.foreign_2.port}"
    )
    entries = find(By.ID, "entries").text
    assert "CHG-1042" in entries and "radiology-lead" in entries and "radiology" in entries
    explanation = find(By.ID, "explanation").text
    assert "radiology" in explanation and "DECIDES" in explanation
    _shot(driver, "policy")
    assert _unlabelled(driver) == []

    # An analyst may not reload the policy.
    driver.get(f"{base}/console/policy/reload")
    assert "needs the admin role" in find(By.ID, "message").text

    # Sign out: the session is gone.
    _navigates(driver, find(By.CSS_SELECTOR, "form.signout button").click)
    driver.get(f"{base}/console/incidents")
    assert "/console/login" in driver.current_url

    # Every page view was an audit event with the session's token.
    viewed = [json.loads(r["detail"]) for r in gateway.audit_rows_where(kind="access")]
    console_views = [v for v in viewed if v["path"].startswith("/console/")]
    assert {"analyst-1"} <= {v["token"] for v in console_views}
    assert any(v["path"] == "/console/policy/reload" and v["status"] == 403 for v in console_views)
    assert all(ANALYST not in json.dumps(v) for v in viewed)


def test_auditor_reads_but_cannot_change(
    console: tuple[GatewayProcess, bytes], chrome: WebDriver
) -> None:
    from selenium.webdriver.common.by import By

    gateway, _ = console
    driver = chrome
    base = f"http://127.0.0.1:{gateway.admin_port}"
    _sign_in(driver, base, AUDITOR, "incidents")
    assert "/console/incidents" in driver.current_url
    link = driver.find_element(By.CSS_SELECTOR, "a.incident-link")
    _navigates(driver, link.click)
    assert driver.find_elements(By.ID, "acknowledge") == []
    # The form is not offered; posting it anyway with a valid session and token is refused.
    session = {c["name"]: c["value"] for c in driver.get_cookies()}
    page = driver.page_source
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    url = driver.current_url + "/workflow"
    with httpx.Client(cookies=session, timeout=10) as plain:
        refused = plain.post(
            url, data={"csrf": csrf, "change": "acknowledge"}, headers={"Origin": base}
        )
        assert refused.status_code == 403 and "needs the analyst role" in refused.text
        # Another origin is refused before the role is even asked about.
        forged = plain.post(
            url,
            data={"csrf": csrf, "change": "acknowledge"},
            headers={"Origin": "http://evil.example"},
        )
        assert forged.status_code == 403 and "did not come from" in forged.text
        headers = plain.get(f"{base}/console/").headers
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert headers["X-Frame-Options"] == "DENY"
    # The cookie is HttpOnly, Secure and SameSite=Strict.
    cookie = next(c for c in driver.get_cookies() if c["name"] == "phg_console_session")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"


def test_admin_reloads_and_the_policy_page_lists_who_did(
    console: tuple[GatewayProcess, bytes], chrome: WebDriver
) -> None:
    from selenium.webdriver.common.by import By

    gateway, _ = console
    driver = chrome
    base = f"http://127.0.0.1:{gateway.admin_port}"
    _sign_in(driver, base, ADMIN, "policy/reload")
    _navigates(driver, driver.find_element(By.ID, "reload").click)
    assert "in force" in driver.find_element(By.ID, "message").text
    gateway.reload()  # SIGHUP
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(gateway.audit_rows_where(kind="reload")) < 2:
        time.sleep(0.2)
    driver.get(f"{base}/console/policy")
    reloads = driver.find_element(By.ID, "reloads").text
    assert "admin-1 (admin)" in reloads and "SIGHUP" in reloads and "applied" in reloads
    by = {json.loads(r["detail"])["by"] for r in gateway.audit_rows_where(kind="reload")}
    assert by == {"admin-1", "SIGHUP"}


def test_chart_colours_contrast_with_the_page() -> None:
    """WCAG 1.4.11: graphics need 3:1 against what surrounds them (white)."""
    for action, colour in ACTION_COLOURS.items():
        assert browser.contrast(colour, (255, 255, 255)) >= 3.0, action
