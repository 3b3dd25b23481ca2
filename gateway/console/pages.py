"""The console's pages: what each shows and allows, for which role.

auditor: read everything (overview, incidents, reports, fingerprint lookup, policy);
analyst: also the incident workflow; admin: also the policy reload.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jinja2

from gateway import metrics
from gateway.api import change_incident, incident_json
from gateway.audit.factory import fingerprint_key
from gateway.audit.query import (
    DECISION_ACTIONS,
    Period,
    Search,
    by_fingerprint,
    incident,
    parse_period,
    recent_of_kind,
    search,
)
from gateway.audit.workflow import CLOSED, NEW, STATES, Change, WorkflowError, dispositions, history
from gateway.config import Network
from gateway.console.upload import UploadError, read_upload
from gateway.entry_expiry import iso as expiry_iso
from gateway.errors import QueryError, ReportBusy, ReportFailed, ReportTimeout
from gateway.geo.resolver import Resolver
from gateway.model import Destination, host_and_port
from gateway.policy import explain
from gateway.report import FORMATS
from gateway.report.build import DIMENSIONS, Tally, categories_text
from gateway.report.job import ReportJobs
from gateway.report.render import CONTENT_TYPES
from gateway.report.timeline import ACTION_COLOURS, ACTION_LABELS, bars

if TYPE_CHECKING:
    from gateway.api import ReloadFunction
    from gateway.console.app import Reply, Request
    from gateway.engine import Gateway

PAGE_SIZE = 50
# The overview's numbers come from a report built in a child process: kept this long per period.
OVERVIEW_CACHE_SECONDS = 60.0
_OVERVIEW_CACHE_MAX = 16
_INCIDENT = re.compile(r"^incidents/([A-Za-z0-9-]{1,64})$")
_WORKFLOW = re.compile(r"^incidents/([A-Za-z0-9-]{1,64})/workflow$")
_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("gateway.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
NAV = (
    ("", "Overview"),
    ("incidents", "Incidents"),
    ("reports", "Reports"),
    ("fingerprint", "Fingerprint lookup"),
    ("policy", "Policy"),
)


def new_marker() -> str:
    return secrets.token_urlsafe(24)


def _hex(colour: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)


@dataclass(slots=True)
class _Cached:
    until: float
    data: dict[str, Any]


class Pages:
    def __init__(self, reload: ReloadFunction | None, reports: ReportJobs) -> None:
        self._reload = reload
        self._reports = reports
        self._overview_lock = threading.Lock()
        self._overview: dict[tuple[str, str], _Cached] = {}

    # -- rendering -----------------------------------------------------------------------

    def render(
        self, request: Request, template: str, route: str, code: int = 200, **values: Any
    ) -> Reply:
        from gateway.console.app import PREFIX, Reply

        session = request.session
        body = _ENV.get_template(template).render(
            prefix=PREFIX,
            nav=NAV,
            here=request.path.split("/")[0],
            session=session,
            csrf=session.csrf if session else "",
            can=lambda role: session is not None and _role_at_least(session.role, role),
            labels=ACTION_LABELS,
            colours={a: _hex(c) for a, c in ACTION_COLOURS.items()},
            actions=DECISION_ACTIONS,
            **values,
        )
        return Reply(code, body.encode(), "text/html; charset=utf-8", route)

    def error(self, request: Request, code: int, message: str) -> Reply:
        return self.render(
            request, "error.html.j2", "console-error", code, status=code, message=message
        )

    def login(self, request: Request, next_page: str, marker: str, message: str) -> Reply:
        return self.render(
            request, "login.html.j2", "console-login", next_page=next_page, marker=marker,
            message=message,
        )  # fmt: skip

    def _refuse(self, request: Request, role: str) -> Reply:
        assert request.session is not None
        return self.error(
            request,
            403,
            f"This needs the {role} role; you are signed in as {request.session.token_name} "
            f"({request.session.role}).",
        )

    # -- routing -------------------------------------------------------------------------

    def route(self, request: Request, gateway: Gateway) -> Reply:
        session = request.session
        assert session is not None
        path, post = request.path, request.method == "POST"
        if path == "policy/reload":
            if not _role_at_least(session.role, "admin"):
                return self._refuse(request, "admin")
            return self.reload(request, gateway) if post else self.reload_page(request, gateway)
        workflow = _WORKFLOW.match(path)
        if workflow and post:
            if not _role_at_least(session.role, "analyst"):
                return self._refuse(request, "analyst")
            return self.workflow(request, gateway, workflow.group(1))
        if not _role_at_least(session.role, "auditor"):
            return self._refuse(request, "auditor")
        if path == "fingerprint":
            return self.fingerprint(request, gateway) if post else self.fingerprint_page(request)
        if post:
            return self.error(request, 405, "Nothing to change here.")
        if path == "":
            return self.overview(request, gateway)
        if path == "incidents":
            return self.incidents(request, gateway)
        match = _INCIDENT.match(path)
        if match:
            return self.incident(request, gateway, match.group(1))
        if path == "reports":
            return self.reports_page(request)
        if path == "reports/download":
            return self.download(request, gateway)
        if path == "policy":
            return self.policy(request, gateway)
        return self.error(request, 404, "No such page.")

    # -- overview ------------------------------------------------------------------------

    def _summary(self, gateway: Gateway, period: Period) -> dict[str, Any]:
        key = (period.since, period.last.isoformat())
        now = time.monotonic()
        with self._overview_lock:
            cached = self._overview.get(key)
            if cached is not None and cached.until > now:
                return cached.data
        done = self._reports.run(gateway.config, period, "summary")
        data: dict[str, Any] = json.loads(b"".join(done.chunks()))
        with self._overview_lock:
            if len(self._overview) >= _OVERVIEW_CACHE_MAX:
                self._overview.clear()
            self._overview[key] = _Cached(now + OVERVIEW_CACHE_SECONDS, data)
        return data

    def overview(self, request: Request, gateway: Gateway) -> Reply:
        period = parse_period(request.arg("from") or None, request.arg("to") or None)
        try:
            summary = self._summary(gateway, period)
        except (ReportBusy, ReportFailed, ReportTimeout) as exc:
            return self.error(request, 503, f"The overview could not be built now: {exc}")
        timeline = [
            Tally(d["day"], {a: int(d.get(a, 0)) for a in DECISION_ACTIONS})
            for d in summary["timeline"]
        ]
        now = dt.datetime.now(dt.UTC)
        max_age = gateway.config.geo.max_source_age_days
        sources = []
        for source in gateway.locator.sources():
            age = source.age_seconds(now)
            days = None if age is None else int(age // 86400)
            sources.append(
                {
                    "name": source.name,
                    "built": source.built.date().isoformat() if source.built else "no date",
                    "days": days,
                    "stale": days is None or days > max_age,
                }
            )
        return self.render(
            request,
            "overview.html.j2",
            "console-overview",
            period=period,
            summary=summary,
            dimensions=[(k, t) for k, t in DIMENSIONS if k in ("country", "rule", "category")],
            chart=bars(timeline, width=760, height=200),
            timeline=timeline,
            sources=sources,
            max_age=max_age,
            policy_version=gateway.policy_version,
            mode=gateway.config.policy.mode.value,
        )

    # -- incidents -----------------------------------------------------------------------

    def _clients(self, gateway: Gateway, text: str) -> tuple[Network, ...]:
        if not text:
            return ()
        groups = gateway.config.policy.client_groups
        if text in groups:
            return tuple(ipaddress.ip_network(n, strict=False) for n in groups[text])
        try:
            return (ipaddress.ip_network(text, strict=False),)
        except ValueError:
            raise QueryError("client: an address, a CIDR or a client group name") from None

    def incidents(self, request: Request, gateway: Gateway) -> Reply:
        period = parse_period(request.arg("from") or None, request.arg("to") or None)
        backend = gateway.audit.backend
        state = request.arg("state")
        only: frozenset[str] | None = None
        excluding: frozenset[str] = frozenset()
        if state:
            if state not in STATES:
                raise QueryError(f"state must be one of {', '.join(STATES)}")
            states = dispositions(backend, period.since, period.until)
            if state == NEW:
                excluding = frozenset(i for i, s in states.items() if s.state != NEW)
            else:
                only = frozenset(i for i, s in states.items() if s.state == state)
        where = Search(
            period,
            action=request.arg("action"),
            country=request.arg("country"),
            destination=request.arg("destination"),
            clients=self._clients(gateway, request.arg("client")),
            rule=request.arg("rule"),
            category=request.arg("category"),
            only=only,
            excluding=excluding,
        )
        budget = gateway.config.admin.console.search_budget_ms / 1000
        page = search(backend, where, request.arg("after"), PAGE_SIZE, budget)
        if page.cut:
            metrics.CONSOLE_SEARCHES_CUT.labels("page").inc()
        elif page.uncounted:
            metrics.CONSOLE_SEARCHES_CUT.labels("count").inc()
        shown: dict[str, str] = {}
        if page.rows:
            first = str(page.rows[-1]["time"])[:10]
            last = dt.date.fromisoformat(str(page.rows[0]["time"])[:10]) + dt.timedelta(days=1)
            found = dispositions(backend, first, last.isoformat())
            shown = {
                str(r["incident_id"]): found[str(r["incident_id"])].state
                for r in page.rows
                if str(r["incident_id"]) in found
            }
        filters = {
            k: request.arg(k)
            for k in ("action", "country", "destination", "client", "rule", "category", "state")
        }
        filters |= {"from": period.since, "to": period.last.isoformat()}
        kept = {k: v for k, v in filters.items() if v}
        following = "?" + urllib.parse.urlencode(kept | {"after": page.after}) if page.after else ""
        return self.render(
            request,
            "incidents.html.j2",
            "console-incidents",
            page=page,
            states=shown,
            filters=filters,
            first_page="?" + urllib.parse.urlencode(kept),
            following=following,
            is_later_page=bool(request.arg("after")),
            all_states=STATES,
            groups=sorted(gateway.config.policy.client_groups),
            categories=categories_text,
        )

    def incident(
        self,
        request: Request,
        gateway: Gateway,
        incident_id: str,
        message: str = "",
        code: int = 200,
    ) -> Reply:
        backend = gateway.audit.backend
        row = incident(backend, incident_id)
        if row is None:
            return self.error(request, 404, "No such incident.")
        state = history(backend, incident_id)
        return self.render(
            request,
            "incident.html.j2",
            "console-incident",
            code,
            row=incident_json(row),
            state=state,
            closed=CLOSED,
            message=message,
            categories=categories_text,
        )

    def workflow(self, request: Request, gateway: Gateway, incident_id: str) -> Reply:
        assert request.session is not None
        form = request.form()
        fields = {k: form.get(k, "") for k in ("change", "disposition", "assignee", "comment")}
        try:
            change = Change(**{k: v for k, v in fields.items() if v})
            change_incident(
                gateway,
                incident_id,
                change,
                by=request.session.token_name,
                role=request.session.role,
                client=request.client,
            )
        except LookupError:
            return self.error(request, 404, "No such incident.")
        except WorkflowError as exc:
            return self.incident(request, gateway, incident_id, str(exc), 409)
        from gateway.console.app import PREFIX, redirect

        return redirect(f"{PREFIX}incidents/{incident_id}", "console-workflow")

    # -- reports -------------------------------------------------------------------------

    def reports_page(self, request: Request) -> Reply:
        today = dt.datetime.now(dt.UTC).date()
        return self.render(
            request,
            "reports.html.j2",
            "console-reports",
            formats=FORMATS,
            first=(today - dt.timedelta(days=30)).isoformat(),
            last=today.isoformat(),
        )

    def download(self, request: Request, gateway: Gateway) -> Reply:
        from gateway.console.app import Reply

        fmt = request.arg("format") or "pdf"
        if fmt not in FORMATS:
            raise QueryError(f"format must be one of {', '.join(FORMATS)}")
        period = parse_period(request.arg("from") or None, request.arg("to") or None)
        try:
            done = self._reports.run(gateway.config, period, fmt)
        except ReportBusy as exc:
            reply = self.error(request, 503, str(exc))
            reply.headers.append(("Retry-After", "30"))
            return reply
        except ReportTimeout as exc:
            return self.error(request, 504, str(exc))
        except ReportFailed as exc:
            return self.error(request, 500, str(exc))
        name = f"block-report-{period.since}-to-{period.last.isoformat()}.{fmt}"
        return Reply(
            200,
            content_type=CONTENT_TYPES[fmt],
            route="console-report",
            headers=[
                ("Content-Disposition", f'attachment; filename="{name}"'),
                ("X-Audit-Chain", "intact" if done.intact else "TAMPERED"),
            ],
            stream=done.chunks(),
            length=done.size,
        )

    # -- fingerprint lookup --------------------------------------------------------------

    def fingerprint_page(self, request: Request, **values: Any) -> Reply:
        code = int(values.pop("code", 200))
        values.setdefault("matches", None)
        values.setdefault("message", "")
        values.setdefault("size", 0)
        return self.render(request, "fingerprint.html.j2", "console-fingerprint", code, **values)

    def fingerprint(self, request: Request, gateway: Gateway) -> Reply:
        assert request.session is not None
        environ = request.environ
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        limit = gateway.config.admin.console.max_upload_bytes
        try:
            upload = read_upload(
                environ["wsgi.input"],
                length,
                str(environ.get("CONTENT_TYPE", "")),
                fingerprint_key(gateway.audit.settings.secret),
                limit,
            )
        except UploadError as exc:
            return self.fingerprint_page(request, message=str(exc), code=400)
        if upload.fields.get("csrf", "") != request.session.csrf or not request.session.csrf:
            return self.error(
                request, 403, "Refused: the form's security token is missing or stale."
            )
        if not upload.has_file:
            return self.fingerprint_page(request, message="Choose a file first.", code=400)
        matches = by_fingerprint(gateway.audit.backend, upload.fingerprint)
        return self.fingerprint_page(request, matches=matches, size=upload.size)

    # -- policy --------------------------------------------------------------------------

    def policy(self, request: Request, gateway: Gateway) -> Reply:
        config = gateway.config
        now = time.time()
        warn = config.policy.expiry_warning_days * 86400
        entries = []
        for key, rule in config.policy.rules():
            expires = rule.expires_at
            status = "no expiry"
            if expires is not None:
                left = expires - now
                status = (
                    "expired" if left <= 0 else ("expires soon" if left <= warn else "in force")
                )
            entries.append(
                {
                    "key": key,
                    "target": rule.host or str(rule.cidr),
                    "port": rule.port or "any",
                    "action": "block" if key.startswith("deny") else rule.action.value,
                    "reason": rule.reason,
                    "ticket": rule.ticket,
                    "owner": rule.owner,
                    "clients": ", ".join(rule.clients) or "everyone",
                    "expires": expiry_iso(expires) if expires is not None else "",
                    "status": status,
                }
            )
        client, target = request.arg("client"), request.arg("destination")
        explained = None
        if client or target:
            explained = self._explain(gateway, client, target)
        reloads = [
            {
                "time": r["time"],
                "detail": json.loads(str(r["detail"]) or "{}"),
                "version": r["policy_version"],
            }
            for r in recent_of_kind(gateway.audit.backend, "reload", 20)
        ]
        return self.render(
            request,
            "policy.html.j2",
            "console-policy",
            entries=entries,
            groups=config.policy.client_groups,
            mode=config.policy.mode.value,
            allowed_countries=config.jurisdiction.allowed_countries,
            version=gateway.policy_version,
            explained=explained,
            client=client,
            destination=target,
            reloads=reloads,
        )

    def _explain(self, gateway: Gateway, client: str, target: str) -> dict[str, Any]:
        if not client or not target:
            raise QueryError("policy explain needs both a client address and a destination")
        try:
            ipaddress.ip_address(client)
        except ValueError:
            raise QueryError("client: an IP address") from None
        host, port = host_and_port(target)
        addresses = Resolver(0).resolve_sync(host)
        destination = Destination(host, port, tuple(gateway.locator.locate(a) for a in addresses))
        found = explain(destination, gateway.config, client)
        return {
            "host": host,
            "port": port,
            "groups": found.groups,
            "addresses": [
                {
                    "ip": j.ip,
                    "country": j.country_label,
                    "location": j.location.value,
                    "reason": j.reason,
                }
                for j in destination.addresses
            ],
            "location": found.location.value,
            "entries": [{"key": e.key, "outcome": e.describe()} for e in found.entries],
            "verdicts": [
                {
                    "payload": payload,
                    "action": v.action.value if v.enforced else f"monitor ({v.action.value})",
                    "rule": v.rule,
                    "reason": v.reason,
                }
                for payload, v in found.verdicts
            ],
        }

    def reload_page(
        self, request: Request, gateway: Gateway, message: str = "", code: int = 200
    ) -> Reply:
        return self.render(
            request, "reload.html.j2", "console-reload", code, message=message,
            version=gateway.policy_version, available=self._reload is not None,
        )  # fmt: skip

    def reload(self, request: Request, gateway: Gateway) -> Reply:
        assert request.session is not None
        if self._reload is None:
            return self.reload_page(request, gateway, "Reload is not available here.", 503)
        ok, message = self._reload(request.session.token_name, request.session.role)
        return self.reload_page(request, gateway, message, 200 if ok else 409)


def _role_at_least(role: str, needed: str) -> bool:
    from gateway.api_auth import ROLES

    return ROLES.get(role, 0) >= ROLES[needed]
