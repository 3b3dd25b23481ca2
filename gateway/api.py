"""The admin HTTP API (``/api/v1/``): incidents and block reports for auditors, policy reload
for admins. Bearer tokens with roles; every request, allowed or not, is an audit event.

    GET  /api/v1/incidents?from=YYYY-MM-DD&to=YYYY-MM-DD&action=&country=&limit=&offset=
    GET  /api/v1/incidents/{incident_id}
    GET  /api/v1/reports/blocks?from=&to=&format=json|csv|html|pdf
    POST /api/v1/policy/reload                                   (admin)
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway import metrics
from gateway.api_auth import allowed, authenticate, carries_token, without_tokens
from gateway.audit.event import AuditEvent, access_event
from gateway.audit.query import MAX_PAGE, IncidentFilter, Period, incident, incidents, parse_period
from gateway.audit.workflow import Change, WorkflowError, history, workflow_event
from gateway.config import ApiToken
from gateway.errors import QueryError, ReportBusy, ReportFailed, ReportTimeout
from gateway.report import FORMATS
from gateway.report.job import ReportJobs
from gateway.report.render import CONTENT_TYPES

if TYPE_CHECKING:
    from gateway.engine import Gateway

log = logging.getLogger(__name__)
StartResponse = Callable[..., Any]
# Reloads the policy for whom (token name, role): (applied, message).
ReloadFunction = Callable[[str, str], tuple[bool, str]]
_INCIDENT_PATH = re.compile(r"^/api/v1/incidents/([A-Za-z0-9-]{1,64})$")
_WORKFLOW_PATH = re.compile(r"^/api/v1/incidents/([A-Za-z0-9-]{1,64})/workflow$")
_MAX_WORKFLOW_BODY = 16 * 1024
_JSON_COLUMNS = ("categories", "locations", "geo_evidence", "geo_databases", "redaction")
_STATUS = {
    200: "200 OK",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    403: "403 Forbidden",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    409: "409 Conflict",
    500: "500 Internal Server Error",
    503: "503 Service Unavailable",
    504: "504 Gateway Timeout",
}


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    body: bytes
    content_type: str = "application/json"
    route: str = "unknown"
    # A large answer (a report) read in chunks instead of ``body``, with its length.
    stream: Iterable[bytes] | None = None
    length: int = 0
    headers: tuple[tuple[str, str], ...] = field(default=())


def _json(code: int, value: object, route: str) -> Reply:
    return Reply(code, json.dumps(value, indent=1).encode(), "application/json", route)


def _error(code: int, message: str, route: str = "unknown") -> Reply:
    return _json(code, {"error": message}, route)


def incident_json(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for column in _JSON_COLUMNS:
        with contextlib.suppress(ValueError):
            out[column] = json.loads(str(row[column])) if row[column] else None
    return out


class Api:
    def __init__(
        self, gateway: Callable[[], Gateway], reload: ReloadFunction | None, reports: ReportJobs
    ) -> None:
        self._gateway = gateway
        self._reload = reload
        self._reports = reports

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        gateway = self._gateway()
        token = authenticate(environ.get("HTTP_AUTHORIZATION", ""), gateway.config.admin.tokens)
        query = str(environ.get("QUERY_STRING", ""))
        try:
            if carries_token(query):
                # Query strings end up in logs, histories and Referer headers: refused, and
                # the value is not recorded.
                reply = _error(400, "tokens go in the Authorization header, never in the URL")
            else:
                reply = self._dispatch(environ, gateway, token)
        except QueryError as exc:
            reply = _error(400, str(exc))
        except Exception:  # never a traceback (or a value from it) to the client
            reply = _error(500, "internal error: see the gateway log")
            log.exception("admin API request failed")
        path = environ.get("PATH_INFO", "")
        query = without_tokens(query)
        gateway.audit.append(
            access_event(
                instance_id=gateway.instance_id,
                policy_version=gateway.policy_version,
                client=f"{environ.get('REMOTE_ADDR', '')}:{environ.get('REMOTE_PORT', '')}",
                method=environ.get("REQUEST_METHOD", ""),
                path=(path + ("?" + query if query else ""))[:300],
                status=reply.code,
                token=token.name if token else "-",
                role=token.role if token else "-",
            )
        )
        metrics.ADMIN_API_REQUESTS.labels(reply.route, str(reply.code)).inc()
        headers = [("Content-Type", reply.content_type), ("Cache-Control", "no-store")]
        headers += reply.headers
        if reply.code == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="phi-gateway"'))
        if reply.stream is not None:
            headers.append(("Content-Length", str(reply.length)))
            start_response(_STATUS.get(reply.code, f"{reply.code} Error"), headers)
            return reply.stream
        start_response(_STATUS.get(reply.code, f"{reply.code} Error"), headers)
        return [reply.body]

    def _dispatch(self, environ: dict[str, Any], gateway: Gateway, token: ApiToken | None) -> Reply:
        path = str(environ.get("PATH_INFO", ""))
        method = str(environ.get("REQUEST_METHOD", "GET"))
        query = urllib.parse.parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)

        def arg(name: str) -> str:
            return query.get(name, [""])[0]

        if token is None:
            return _error(401, "a bearer token is required")
        if path == "/api/v1/policy/reload":
            if method != "POST":
                return _error(405, "use POST", "policy-reload")
            if not allowed(token, "admin"):
                return _error(403, "the admin role is required", "policy-reload")
            if self._reload is None:
                return _error(503, "reload is not available", "policy-reload")
            ok, message = self._reload(token.name, token.role)
            return _json(200 if ok else 409, {"reloaded": ok, "message": message}, "policy-reload")
        workflow = _WORKFLOW_PATH.match(path)
        if workflow:
            if method != "POST":
                return _error(405, "use POST", "incident-workflow")
            if not allowed(token, "analyst"):
                return _error(403, "the analyst role is required", "incident-workflow")
            return self._workflow(environ, gateway, token, workflow.group(1))
        if method != "GET":
            return _error(405, "use GET")
        if not allowed(token, "auditor"):
            return _error(403, "the auditor role is required")
        backend = gateway.audit.backend
        if path == "/api/v1/incidents":
            where = IncidentFilter(
                parse_period(arg("from") or None, arg("to") or None), arg("action"), arg("country")
            )
            limit = _integer(arg("limit"), 100, 1, MAX_PAGE)
            offset = _integer(arg("offset"), 0, 0, 10**9)
            rows, total = incidents(backend, where, limit, offset)
            following = offset + len(rows)
            next_page = None
            if following < total:
                params = {k: v[0] for k, v in query.items()} | {"offset": str(following)}
                next_page = f"{path}?{urllib.parse.urlencode(params)}"
            return _json(
                200,
                {
                    "total": total,
                    "limit": limit,
                    "offset": offset,
                    "next": next_page,
                    "incidents": [incident_json(r) for r in rows],
                },
                "incidents",
            )
        match = _INCIDENT_PATH.match(path)
        if match:
            row = incident(backend, match.group(1))
            if row is None:
                return _error(404, "no such incident", "incident")
            state = history(backend, match.group(1))
            body = incident_json(row) | {
                "workflow": {
                    "state": state.state,
                    "assignee": state.assignee,
                    "closed_at": state.closed_at,
                    "history": state.history,
                }
            }
            return _json(200, body, "incident")
        if path == "/api/v1/reports/blocks":
            fmt = arg("format") or "json"
            if fmt not in FORMATS:
                return _error(400, f"format must be one of {', '.join(FORMATS)}", "reports-blocks")
            period = parse_period(arg("from") or None, arg("to") or None)
            return self._report(gateway, period, fmt)
        return _error(404, "no such endpoint")

    def _workflow(
        self, environ: dict[str, Any], gateway: Gateway, token: ApiToken, incident_id: str
    ) -> Reply:
        """One workflow change, chained in the trail before it is answered."""
        route = "incident-workflow"
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 < length <= _MAX_WORKFLOW_BODY:
            return _error(400, f"a JSON body of at most {_MAX_WORKFLOW_BODY} bytes", route)
        try:
            data = json.loads(environ["wsgi.input"].read(length))
            if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
                raise WorkflowError("a JSON object of strings")
            unknown = set(data) - {"change", "disposition", "assignee", "comment"}
            if unknown:
                raise WorkflowError(f"unknown field(s): {', '.join(sorted(unknown))[:100]}")
            change = Change(**data)
        except (ValueError, TypeError) as exc:  # WorkflowError is a ValueError
            message = str(exc) if isinstance(exc, WorkflowError) else "not a JSON object"
            return _error(400, message, route)
        try:
            event = change_incident(
                gateway,
                incident_id,
                change,
                by=token.name,
                role=token.role,
                client=f"{environ.get('REMOTE_ADDR', '')}:{environ.get('REMOTE_PORT', '')}",
            )
        except LookupError:
            return _error(404, "no such incident", route)
        except WorkflowError as exc:
            return _error(409, str(exc), route)
        detail = json.loads(event.detail)
        return _json(
            200,
            {
                "incident_id": incident_id,
                "event_id": event.incident_id,
                "from": detail["from"],
                "state": detail["to"],
            },
            route,
        )

    def _report(self, gateway: Gateway, period: Period, fmt: str) -> Reply:
        """Built in a child process: report work never runs in the proxy's interpreter."""
        try:
            done = self._reports.run(gateway.config, period, fmt)
        except ReportBusy as exc:
            return Reply(
                503,
                json.dumps({"error": str(exc)}).encode(),
                route="reports-blocks",
                headers=(("Retry-After", "30"),),
            )
        except ReportTimeout as exc:
            return _error(504, str(exc), "reports-blocks")
        except ReportFailed as exc:
            return _error(500, str(exc), "reports-blocks")
        return Reply(
            200,
            b"",
            CONTENT_TYPES[fmt],
            "reports-blocks",
            stream=done.chunks(),
            length=done.size,
            headers=(("X-Audit-Chain", "intact" if done.intact else "TAMPERED"),),
        )


def change_incident(
    gateway: Gateway, incident_id: str, change: Change, *, by: str, role: str, client: str
) -> AuditEvent:
    """One workflow change, chained in the trail (and flushed: the next read sees it) before
    it returns. Raises LookupError for an unknown incident, WorkflowError for a change its
    state does not allow."""
    backend = gateway.audit.backend
    if incident(backend, incident_id) is None:
        raise LookupError(incident_id)
    event = workflow_event(
        instance_id=gateway.instance_id,
        policy_version=gateway.policy_version,
        incident_id=incident_id,
        current=history(backend, incident_id),
        change=change,
        by=by,
        role=role,
        client=client,
    )
    gateway.audit.append(event)
    gateway.audit.flush()  # on an admin thread
    return event


def _integer(text: str, default: int, low: int, high: int) -> int:
    if not text:
        return default
    if not text.isdigit():
        raise QueryError("limit and offset must be whole numbers")
    return max(low, min(high, int(text)))
