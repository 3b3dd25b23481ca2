"""`phi-gateway demo` as a newcomer runs it: the real gateway, a receiver placed in India by a
config override, synthetic traffic in every format; what arrived where is printed, PHI never
reached the receiver abroad, the printed token opens the API and the console (whose
overview and an incident are photographed for the README), a report is left, and Ctrl-C
stops everything. No synthetic identifier is printed."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from gateway.demo.traffic import KINDS, MLLP_KIND, patient
from tests.support import browser
from tests.support.gateway_process import BIN, free_port

pytestmark = pytest.mark.e2e
SHOTS = Path(os.environ.get("PHI_GATEWAY_SCREENSHOTS", "build/screenshots"))


def _read_until(process: subprocess.Popen[str], marker: str, timeout: float = 180) -> str:
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen += line
        if marker in line:
            return seen
    raise AssertionError(f"the demo did not print {marker!r}; it printed:\n{seen}")


def _row(output: str, kind: str) -> list[int]:
    match = re.search(rf"^{re.escape(kind)}\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", output, re.M)
    assert match, f"no summary row for {kind}"
    return [int(n) for n in match.groups()]


def test_demo_blocks_what_goes_abroad_and_opens_the_console(tmp_path: Path) -> None:
    listen, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [str(BIN), "demo", "--minutes", "0.1", "--dir", str(tmp_path / "demo"),
         "--listen", listen, "--admin-listen", admin],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        output = _read_until(process, "Ctrl-C stops the demo")
        for kind in [*KINDS, MLLP_KIND]:
            blocked, arrived_abroad, passed, arrived_home = _row(output, kind)
            assert passed >= 2 and arrived_home == passed, kind  # domestic is never broken
            if kind == "clean":
                assert blocked == 0 and arrived_abroad >= 2
            else:
                assert blocked >= 2 and arrived_abroad == 0, kind
        rounds = max(int(n) for n in re.findall(r"round (\d+) sent", output))
        for n in range(1, rounds + 1):
            p = patient(n)
            for value in (p.given, p.family, p.mrn, p.ssn, p.phone, p.street, p.account):
                assert value not in output
        report = tmp_path / "demo" / "block-report.html"
        assert report.read_text().startswith("<!DOCTYPE html>")

        token = re.search(r"^\s+(phg_\S+)\s*$", output, re.M)
        assert token, output
        request = urllib.request.Request(
            f"http://{admin}/api/v1/incidents?country=IN&action=block",
            headers={"Authorization": f"Bearer {token.group(1)}"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            listed = json.loads(answer.read())
        assert listed["total"] >= 8 * rounds
        assert f"http://{admin}/console/" in output

        if not browser.missing():  # the browser is installed
            _screenshots(tmp_path, admin, token.group(1))
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    assert code == 0
    host, port = listen.rsplit(":", 1)
    with pytest.raises(OSError), socket.create_connection((host, int(port)), timeout=2):
        pass  # the gateway stopped with the demo


def _screenshots(tmp_path: Path, admin: str, token: str) -> None:
    """The README's two pictures of the console, taken from this demo."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = browser.chromium(tmp_path / "profile", downloads)
    try:
        driver.set_window_size(1280, 1100)
        driver.get(f"http://{admin}/console/")
        field = driver.find_element(By.ID, "token")
        field.send_keys(token)
        page = driver.find_element(By.TAG_NAME, "html")
        field.submit()
        WebDriverWait(driver, 30).until(expected_conditions.staleness_of(page))
        assert driver.find_element(By.ID, "verification").text.startswith("Intact")
        SHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SHOTS / "demo-overview.png"))
        driver.get(f"http://{admin}/console/incidents?action=block&country=IN")
        link = driver.find_element(By.CSS_SELECTOR, "a.incident-link")
        driver.get(str(link.get_attribute("href")))
        assert driver.find_element(By.ID, "state").text == "new"
        driver.save_screenshot(str(SHOTS / "demo-incident.png"))
    finally:
        driver.quit()
