"""The console's WSGI app: routing, sign-in, the security headers and the audit of every view.

Pages are rendered on the server (templates/); the only script is a progressive enhancement.
Every request, signed in or not, is an audit event as API requests are (kind ``access``, the
session's token name and role). State changes are POST forms that carry the session's CSRF
token and an Origin (or Referer) of this very console; the cookie is HttpOnly, Secure and
SameSite=Strict on top of that.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from importlib import resources
from typing import TYPE_CHECKING, Any

from gateway import metrics
from gateway.api import ReloadFunction
from gateway.api_auth import authenticate, carries_token, without_tokens
from gateway.audit.event import access_event
from gateway.console import pages
from gateway.console.session import COOKIE, LOGIN_COOKIE, Session, Sessions, same_secret
from gateway.errors import QueryError
from gateway.report.job import ReportJobs

if TYPE_CHECKING:
    from gateway.engine import Gateway

log = logging.getLogger(__name__)
StartResponse = Callable[..., Any]
PREFIX = "/console/"
_MAX_FORM_BYTES = 64 * 1024
_STATIC = {"console.css": "text/css; charset=utf-8"}
_STATUS = {
    200: "200 OK",
    303: "303 See Other",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    403: "403 Forbidden",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    409: "409 Conflict",
    413: "413 Content Too Large",
    429: "429 Too Many Requests",
    500: "500 Internal Server Error",
    503: "503 Service Unavailable",
    504: "504 Gateway Timeout",
}
SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    # Same-origin, not no-referrer: a browser that sends no Origin still sends a Referer the
    # CSRF check can read.
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
)


@dataclass(slots=True)
class Request:
    environ: dict[str, Any]
    method: str
    path: str  # below /console/, without the prefix ("" is the overview)
    query: dict[str, str]
    cookies: dict[str, str]
    client: str  # ip:port
    address: str  # ip
    session: Session | None = None
    _form: dict[str, str] | None = None

    def arg(self, name: str) -> str:
        return self.query.get(name, "").strip()

    def form(self) -> dict[str, str]:
        """An urlencoded POST body (bounded); a field given twice keeps the first."""
        if self._form is None:
            try:
                length = int(self.environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= _MAX_FORM_BYTES:
                raise FormTooLarge
            raw = self.environ["wsgi.input"].read(length) if length else b""
            pairs = urllib.parse.parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
            found: dict[str, str] = {}
            for key, value in pairs:
                found.setdefault(key, value)
            self._form = found
        return self._form

    @property
    def origin(self) -> str:
        scheme = self.environ.get("wsgi.url_scheme", "http")
        return f"{scheme}://{self.environ.get('HTTP_HOST', '')}"


class FormTooLarge(Exception):
    pass


@dataclass(slots=True)
class Reply:
    code: int
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    route: str = "console"
    headers: list[tuple[str, str]] = field(default_factory=list)
    stream: Iterable[bytes] | None = None
    length: int = 0


def redirect(location: str, route: str, headers: list[tuple[str, str]] | None = None) -> Reply:
    return Reply(303, b"", "text/plain", route, [("Location", location), *(headers or [])])


def cookie(name: str, value: str, path: str, max_age: int) -> tuple[str, str]:
    return (
        "Set-Cookie",
        f"{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict",
    )


class Console:
    def __init__(
        self,
        gateway: Callable[[], Gateway],
        reload: ReloadFunction | None,
        reports: ReportJobs,
    ) -> None:
        self._gateway = gateway
        settings = gateway().config.admin.console
        self.sessions = Sessions(settings.session_minutes, settings.max_sessions)
        self.pages = pages.Pages(reload, reports)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        gateway = self._gateway()
        request = _request(environ)
        raw_query = str(environ.get("QUERY_STRING", ""))
        try:
            if carries_token(raw_query):
                reply = self.pages.error(
                    request, 400, "Tokens go in the sign-in form, never in the address."
                )
            else:
                reply = self._dispatch(request, gateway)
        except QueryError as exc:
            reply = self.pages.error(request, 400, str(exc))
        except FormTooLarge:
            reply = self.pages.error(request, 413, "That form is too large.")
        except Exception:  # never a traceback (or a value from it) to the browser
            log.exception("console request failed")
            reply = self.pages.error(request, 500, "Internal error: see the gateway log.")
        if not request.path.startswith("static/"):
            query = without_tokens(raw_query)
            session = request.session
            gateway.audit.append(
                access_event(
                    instance_id=gateway.instance_id,
                    policy_version=gateway.policy_version,
                    client=request.client,
                    method=request.method,
                    path=(PREFIX + request.path + ("?" + query if query else ""))[:300],
                    status=reply.code,
                    token=session.token_name if session else "-",
                    role=session.role if session else "-",
                )
            )
        metrics.ADMIN_API_REQUESTS.labels(reply.route, str(reply.code)).inc()
        headers = [("Content-Type", reply.content_type), *SECURITY_HEADERS, *reply.headers]
        status = _STATUS.get(reply.code, f"{reply.code} Error")
        if reply.stream is not None:
            headers.append(("Content-Length", str(reply.length)))
            start_response(status, headers)
            return reply.stream
        headers.append(("Content-Length", str(len(reply.body))))
        start_response(status, headers)
        return [reply.body]

    def _dispatch(self, request: Request, gateway: Gateway) -> Reply:
        path = request.path
        if path.startswith("static/"):
            return _static(path.removeprefix("static/"))
        if path == "login":
            return self._login(request, gateway)
        tokens = gateway.config.admin.tokens
        request.session = self.sessions.find(request.cookies.get(COOKIE, ""), tokens)
        if request.session is None:
            if request.method == "GET":
                here = (
                    PREFIX
                    + path
                    + ("?" + request.environ.get("QUERY_STRING", "") if request.query else "")
                )
                return redirect(
                    PREFIX + "login?" + urllib.parse.urlencode({"next": here}), "console-login"
                )
            return self.pages.error(request, 401, "Sign in first.")
        if request.method == "POST":
            problem = self._forged(request)
            if problem:
                return self.pages.error(request, 403, problem)
            if path == "logout":
                self.sessions.close(request.cookies.get(COOKIE, ""))
                return redirect(PREFIX + "login", "console-logout", [cookie(COOKIE, "", PREFIX, 0)])
        elif request.method != "GET":
            return self.pages.error(request, 405, "Use GET or a form.")
        return self.pages.route(request, gateway)

    def _forged(self, request: Request) -> str:
        """Why a state change is refused (not from this console, or no CSRF token), or ""."""
        origin = request.environ.get("HTTP_ORIGIN", "")
        if not origin or origin == "null":
            referer = request.environ.get("HTTP_REFERER", "")
            parts = urllib.parse.urlsplit(referer)
            origin = f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""
        if origin != request.origin:
            return "Refused: this change did not come from a page of this console."
        assert request.session is not None
        if _multipart(request):
            return ""  # an upload: its handler reads the token from the form's first part
        if not same_secret(request.form().get("csrf", ""), request.session.csrf):
            return "Refused: the form's security token is missing or stale. Reload the page."
        return ""

    def _login(self, request: Request, gateway: Gateway) -> Reply:
        next_page = _safe_next(request.arg("next"))
        if request.method == "GET":
            marker = pages.new_marker()
            reply = self.pages.login(request, next_page, marker, "")
            reply.headers.append(cookie(LOGIN_COOKIE, marker, PREFIX + "login", 600))
            return reply
        if request.method != "POST":
            return self.pages.error(request, 405, "Use the sign-in form.")
        form = request.form()
        next_page = _safe_next(form.get("next", ""))
        marker = pages.new_marker()
        fresh = cookie(LOGIN_COOKIE, marker, PREFIX + "login", 600)
        if request.environ.get("HTTP_ORIGIN", request.origin) != request.origin or not same_secret(
            form.get("login_csrf", ""), request.cookies.get(LOGIN_COOKIE, "")
        ):
            metrics.CONSOLE_SIGNINS.labels("refused").inc()
            reply = self.pages.login(request, next_page, marker, "The form was stale: try again.")
            reply.code = 403
            reply.headers.append(fresh)
            return reply
        if self.sessions.refused(request.address):
            metrics.CONSOLE_SIGNINS.labels("throttled").inc()
            reply = self.pages.login(
                request, next_page, marker, "Too many failed sign-ins: wait a few minutes."
            )
            reply.code = 429
            reply.headers.append(fresh)
            return reply
        token = authenticate("Bearer " + form.get("token", ""), gateway.config.admin.tokens)
        if token is None:
            self.sessions.failed(request.address)
            metrics.CONSOLE_SIGNINS.labels("failed").inc()
            reply = self.pages.login(request, next_page, marker, "That token is not valid.")
            reply.code = 401
            reply.headers.append(fresh)
            return reply
        session_id, session = self.sessions.open(token)
        request.session = session
        metrics.CONSOLE_SIGNINS.labels("ok").inc()
        return redirect(
            next_page,
            "console-login",
            [
                cookie(COOKIE, session_id, PREFIX, self.sessions.lifetime_seconds),
                cookie(LOGIN_COOKIE, "", PREFIX + "login", 0),
            ],
        )


def _multipart(request: Request) -> bool:
    return str(request.environ.get("CONTENT_TYPE", "")).startswith("multipart/form-data")


def _safe_next(value: str) -> str:
    """Only a page of this console: never another site (an open redirect)."""
    if value.startswith(PREFIX) and "//" not in value and "\\" not in value:
        return value
    return PREFIX


def _request(environ: dict[str, Any]) -> Request:
    path = str(environ.get("PATH_INFO", ""))
    query = {k: v for k, v in urllib.parse.parse_qsl(str(environ.get("QUERY_STRING", "")))[:50]}
    cookies: dict[str, str] = {}
    try:
        jar: SimpleCookie = SimpleCookie(str(environ.get("HTTP_COOKIE", "")))
        cookies = {k: m.value for k, m in jar.items()}
    except CookieError:
        pass
    address = str(environ.get("REMOTE_ADDR", ""))
    return Request(
        environ=environ,
        method=str(environ.get("REQUEST_METHOD", "GET")),
        path=path.removeprefix(PREFIX.rstrip("/")).lstrip("/"),
        query=query,
        cookies=cookies,
        client=f"{address}:{environ.get('REMOTE_PORT', '')}",
        address=address,
    )


def _static(name: str) -> Reply:
    if name not in _STATIC:
        return Reply(404, b"not found\n", "text/plain", "console-static")
    body = resources.files("gateway.console").joinpath("static", name).read_bytes()
    reply = Reply(200, body, _STATIC[name], "console-static")
    return reply
