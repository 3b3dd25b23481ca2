"""The console without a browser: sessions, the CSRF and origin checks, the security
headers, roles, the streamed upload's fingerprint, the client patterns of the incident search
and its keyset pages over a real SQLite trail."""

from __future__ import annotations

import hashlib
import hmac
import io
import ipaddress
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.api_auth import new_token
from gateway.audit.factory import fingerprint_key
from gateway.audit.query import Search, client_patterns, parse_period, search
from gateway.config import ApiToken, parse_config
from gateway.console.app import Console
from gateway.console.session import COOKIE, LOGIN_COOKIE, Sessions
from gateway.console.upload import UploadError, read_upload
from gateway.engine import Gateway
from gateway.report.job import ReportJobs
from tests.support.mmdb import build_test_mmdb
from tests.support.trail import decision_event as _event

AUDITOR, AUDITOR_HASH = new_token()
ANALYST, ANALYST_HASH = new_token()
ORIGIN = "http://127.0.0.1:9464"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("console")
    config = parse_config(
        {
            "geo": {
                "databases": [
                    {"path": str(build_test_mmdb(tmp / "w.mmdb")), "answers_reserved": True}
                ]
            },
            "audit": {"database": str(tmp / "audit.db"), "instance_id": "gw-unit"},
            "admin": {
                "tokens": [
                    {"name": "auditor-1", "role": "auditor", "sha256": AUDITOR_HASH},
                    {"name": "analyst-1", "role": "analyst", "sha256": ANALYST_HASH},
                ]
            },
        }
    )
    gw = Gateway.from_config(config)
    yield gw
    gw.close()


class Browser:
    """Calls the WSGI app as a browser would: cookies kept, Origin sent with forms."""

    def __init__(self, app: Console) -> None:
        self.app = app
        self.cookies: dict[str, str] = {}

    def call(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        *,
        origin: str | None = ORIGIN,
        body: bytes | None = None,
        content_type: str = "application/x-www-form-urlencoded",
    ) -> tuple[int, dict[str, list[str]], str]:
        target, _, query = path.partition("?")
        raw = body if body is not None else urllib.parse.urlencode(form or {}).encode()
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "PATH_INFO": target,
            "QUERY_STRING": query,
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_PORT": "50000",
            "HTTP_HOST": "127.0.0.1:9464",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(raw),
            "CONTENT_LENGTH": str(len(raw)) if method == "POST" else "",
            "CONTENT_TYPE": content_type,
            "HTTP_COOKIE": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
        }
        if origin is not None and method == "POST":
            environ["HTTP_ORIGIN"] = origin
        seen: dict[str, Any] = {}

        def start(status: str, headers: list[tuple[str, str]]) -> None:
            seen["code"] = int(status.split(maxsplit=1)[0])
            seen["headers"] = headers

        text = b"".join(self.app(environ, start)).decode(errors="replace")
        headers: dict[str, list[str]] = {}
        for key, value in seen["headers"]:
            headers.setdefault(key.lower(), []).append(value)
        for line in headers.get("set-cookie", []):
            name, _, rest = line.partition("=")
            value = rest.split(";", 1)[0]
            if "Max-Age=0" in line:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return seen["code"], headers, text

    def sign_in(self, token: str) -> int:
        code, _, page = self.call("GET", "/console/login")
        assert code == 200
        marker = page.split('name="login_csrf" value="', 1)[1].split('"', 1)[0]
        assert self.cookies[LOGIN_COOKIE] == marker
        code, _headers, _ = self.call(
            "POST", "/console/login", {"login_csrf": marker, "token": token, "next": "/console/"}
        )
        return code

    def csrf(self, path: str = "/console/incidents") -> str:
        _, _, page = self.call("GET", path)
        return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


@pytest.fixture
def app(gateway: Gateway) -> Console:
    return Console(lambda: gateway, None, ReportJobs(2, 60))


def test_pages_ask_for_a_session_and_sign_in_sets_a_strict_cookie(app: Console) -> None:
    browser = Browser(app)
    code, headers, _ = browser.call("GET", "/console/incidents?country=IN")
    assert code == 303
    assert headers["location"] == [
        "/console/login?" + urllib.parse.urlencode({"next": "/console/incidents?country=IN"})
    ]
    assert browser.sign_in(AUDITOR) == 303
    (line,) = [c for c in _last_cookies(app, AUDITOR) if c.startswith(COOKIE)]
    for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/console/", "Max-Age="):
        assert flag in line
    code, headers, page = browser.call("GET", "/console/incidents")
    assert code == 200 and "auditor-1 (auditor)" in page
    csp = headers["content-security-policy"][0]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert headers["cache-control"] == ["no-store"]


def _last_cookies(app: Console, token: str) -> list[str]:
    fresh = Browser(app)
    fresh.call("GET", "/console/login")
    marker = fresh.cookies[LOGIN_COOKIE]
    _, headers, _ = fresh.call(
        "POST", "/console/login", {"login_csrf": marker, "token": token, "next": "/console/"}
    )
    return headers["set-cookie"]


def test_sign_in_refuses_a_bad_token_a_stale_form_and_another_site(app: Console) -> None:
    browser = Browser(app)
    assert browser.sign_in("phg_not-a-token") == 401
    browser.call("GET", "/console/login")
    marker = browser.cookies[LOGIN_COOKIE]
    stale = browser.call("POST", "/console/login", {"login_csrf": "x", "token": AUDITOR})
    assert stale[0] == 403
    elsewhere = browser.call(
        "POST",
        "/console/login",
        {"login_csrf": marker, "token": AUDITOR},
        origin="http://evil.example",
    )
    assert elsewhere[0] == 403
    assert COOKIE not in browser.cookies


def test_open_redirects_are_refused(app: Console) -> None:
    browser = Browser(app)
    browser.call("GET", "/console/login")
    marker = browser.cookies[LOGIN_COOKIE]
    for target in ("https://evil.example/", "//evil.example/console/", "/console//evil"):
        _, headers, _ = browser.call(
            "POST", "/console/login", {"login_csrf": marker, "token": AUDITOR, "next": target}
        )
        assert headers["location"] == ["/console/"]
        browser.call("GET", "/console/login")
        marker = browser.cookies[LOGIN_COOKIE]


def test_failed_sign_ins_are_throttled() -> None:
    sessions = Sessions(30, 10)
    for _ in range(10):
        assert not sessions.refused("10.0.0.1", now=100.0)
        sessions.failed("10.0.0.1", now=100.0)
    assert sessions.refused("10.0.0.1", now=101.0)
    assert not sessions.refused("10.0.0.2", now=101.0)
    assert not sessions.refused("10.0.0.1", now=100.0 + 301)


def test_sessions_expire_end_with_their_token_and_stay_bounded() -> None:
    sessions = Sessions(1, 3)
    token = ApiToken(name="a", role="auditor", sha256="0" * 64)
    other = ApiToken(name="b", role="auditor", sha256="1" * 64)
    first, _ = sessions.open(token, now=0.0)
    assert sessions.find(first, (token,), now=59.0) is not None
    assert sessions.find(first, (token,), now=61.0) is None  # expired
    second, _ = sessions.open(token, now=100.0)
    assert sessions.find(second, (other,), now=101.0) is None  # token revoked
    demoted = ApiToken(name="a", role="admin", sha256="0" * 64)
    third, _ = sessions.open(token, now=100.0)
    assert sessions.find(third, (demoted,), now=101.0) is None  # role changed
    ids = [sessions.open(token, now=200.0 + n)[0] for n in range(5)]
    assert sessions.find(ids[0], (token,), now=210.0) is None  # made room
    assert sessions.find(ids[-1], (token,), now=210.0) is not None


def test_state_changes_need_the_csrf_token_the_origin_and_the_role(
    app: Console, gateway: Gateway
) -> None:
    incident_id = _decision(gateway, "10.9.0.1:4000", "IN")
    analyst = Browser(app)
    assert analyst.sign_in(ANALYST) == 303
    csrf = analyst.csrf()
    url = f"/console/incidents/{incident_id}/workflow"
    assert analyst.call("POST", url, {"change": "acknowledge"})[0] == 403
    assert analyst.call("POST", url, {"change": "acknowledge", "csrf": csrf}, origin=None)[0] == 403
    assert (
        analyst.call(
            "POST", url, {"change": "acknowledge", "csrf": csrf}, origin="http://x.example"
        )[0]
        == 403
    )
    code, headers, _ = analyst.call("POST", url, {"change": "acknowledge", "csrf": csrf})
    assert code == 303 and headers["location"] == [f"/console/incidents/{incident_id}"]
    assert "acknowledged" in analyst.call("GET", f"/console/incidents/{incident_id}")[2]
    again = analyst.call("POST", url, {"change": "acknowledge", "csrf": csrf})
    assert again[0] == 409 and "acknowledged" in again[2]

    auditor = Browser(app)
    auditor.sign_in(AUDITOR)
    token = auditor.csrf()
    code, _, page = auditor.call("POST", url, {"change": "comment", "comment": "x", "csrf": token})
    assert code == 403 and "needs the analyst role" in page
    assert auditor.call("GET", "/console/policy/reload")[0] == 403

    # Signed out, the old cookie is worth nothing.
    signed_out = analyst.cookies[COOKIE]
    assert analyst.call("POST", "/console/logout", {"csrf": csrf})[0] == 303
    replay = Browser(app)
    replay.cookies[COOKIE] = signed_out
    assert replay.call("GET", "/console/incidents")[0] == 303


def test_tokens_in_the_address_are_refused_and_never_recorded(
    app: Console, gateway: Gateway
) -> None:
    browser = Browser(app)
    code, _, _ = browser.call("GET", f"/console/incidents?token={AUDITOR}")
    assert code == 400
    gateway.audit.flush()
    rows = gateway.audit.backend.fetch_once(
        "SELECT detail FROM audit_events WHERE kind = 'access'", ()
    )
    assert rows and all(AUDITOR not in str(r["detail"]) for r in rows)


def _decision(gateway: Gateway, client: str, country: str, day: str = "") -> str:
    event = _event(client, country, day)
    gateway.audit.append(event)
    gateway.audit.flush()
    return event.incident_id


def test_upload_fingerprint_matches_the_trails_and_is_bounded() -> None:
    key = fingerprint_key(b"site secret")
    content = b"MSH|^~\\&|" + bytes(range(256)) * 3000 + b"\r\n--not-a-boundary"
    built = httpx.Request(
        "POST", "http://x/", data={"csrf": "abc"}, files={"file": ("a.hl7", content)}
    )
    body = built.read()
    upload = read_upload(
        io.BytesIO(body), len(body), built.headers["content-type"], key, len(content)
    )
    assert upload.fields == {"csrf": "abc"}
    assert upload.fingerprint == hmac.new(key, content, hashlib.sha256).hexdigest()
    assert upload.size == len(content)
    with pytest.raises(UploadError):
        read_upload(io.BytesIO(body), len(body), built.headers["content-type"], key, 1000)
    with pytest.raises(UploadError):
        read_upload(io.BytesIO(body[:-10]), len(body), built.headers["content-type"], key, 10**7)
    with pytest.raises(UploadError):
        read_upload(io.BytesIO(body), len(body), "multipart/form-data", key, 10**7)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=0, max_value=32),
)
def test_client_patterns_match_exactly_the_network(base: int, probe: int, length: int) -> None:
    network = ipaddress.ip_network((base, length), strict=False)
    address = ipaddress.IPv4Address(
        probe if probe % 3 else int(network.network_address) + probe % max(1, network.num_addresses)
    )
    value = f"{address}:5000"
    assert _like_any(client_patterns(network), value) == (address in network)


def _like_any(patterns: list[str], value: str) -> bool:
    import re

    return any(
        re.fullmatch(re.escape(p).replace("%", ".*").replace("\\.\\*", ".*"), value) is not None
        for p in patterns
    )


def test_search_pages_newest_first_and_filters(tmp_path: Path) -> None:
    from gateway.audit.factory import open_backend

    config = parse_config({"audit": {"database": str(tmp_path / "a.db")}})
    backend = open_backend(config.audit)
    events = [
        _event(f"10.{20 + n % 2}.0.{n % 250}:4000", "IN" if n % 3 else "DE", "2026-11-02")
        for n in range(130)
    ]
    conn = backend.connect()
    backend.append(conn, "gw-unit", events)
    conn.close()
    period = parse_period("2026-11-01", "2026-11-30")
    seen: list[str] = []
    after = ""
    while True:
        page = search(backend, Search(period), after, 50)
        seen += [str(r["incident_id"]) for r in page.rows]
        assert page.matched == 130 and not page.capped
        if not page.after:
            break
        after = page.after
    assert seen == [e.incident_id for e in sorted(events, key=lambda e: e.time, reverse=True)]
    radiology = Search(period, clients=(ipaddress.ip_network("10.21.0.0/16"),), country="IN")
    found = search(backend, radiology, "", 1000).rows
    expected = [e for e in events if e.client.startswith("10.21.") and e.country == "IN"]
    assert {r["incident_id"] for r in found} == {e.incident_id for e in expected}
    assert search(backend, Search(period, category="ssn"), "", 5).matched == 130
    assert search(backend, Search(period, category="mrn"), "", 5).matched == 0
    assert search(backend, Search(period, category="s_n"), "", 5).matched == 0  # no wildcard


def test_a_search_past_its_budget_says_so(tmp_path: Path) -> None:
    from gateway.audit.factory import open_backend

    config = parse_config({"audit": {"database": str(tmp_path / "a.db")}})
    backend = open_backend(config.audit)
    conn = backend.connect()
    backend.append(conn, "gw-unit", [_event("10.0.0.1:1", "IN", "2026-11-02")])
    conn.close()
    period = parse_period("2026-11-01", "2026-11-30")
    stopped = search(backend, Search(period), "", 50, budget_seconds=0)
    assert stopped.cut and stopped.rows == []
    assert not search(backend, Search(period), "", 50, budget_seconds=5).cut
