"""Admin HTTP server: /metrics (Prometheus), /healthz (process alive), /readyz (serving),
the authenticated API under /api/v1/ (gateway/api.py) and the console under /console/
(gateway/console/).

A small WSGI app on its own thread, so a busy proxy event loop never delays a scrape. The
metrics endpoints may live on a second server of their own (``admin.metrics_listen``).
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, make_wsgi_app

from gateway import metrics
from gateway.api_auth import authenticate
from gateway.audit.event import reload_event
from gateway.config import ApiToken

if TYPE_CHECKING:
    from gateway.api import ReloadFunction
    from gateway.engine import Gateway

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
log = logging.getLogger("phi_gateway")
# Out of descriptors, the listening socket stays readable and accept() keeps failing: the
# admin thread waits this long before trying again instead of spinning.
_EXHAUSTED_PAUSE_SECONDS = 0.1


class ReadinessState:
    """Ready when the proxy listens with a valid policy; reasons say why not. Notes tell of a
    degraded state that still serves (the audit store down while events spool)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._problems: dict[str, str] = {"proxy": "not listening yet"}
        self._notes: dict[str, str] = {}

    def set_note(self, key: str, note: str | None) -> None:
        with self._lock:
            if note:
                self._notes[key] = note
            else:
                self._notes.pop(key, None)

    def notes(self) -> dict[str, str]:
        with self._lock:
            return dict(self._notes)

    def set_problem(self, key: str, problem: str | None) -> None:
        with self._lock:
            if problem:
                self._problems[key] = problem
            else:
                self._problems.pop(key, None)
        metrics.UP.set(0 if self._problems else 1)

    def problems(self) -> dict[str, str]:
        with self._lock:
            return dict(self._problems)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                log.error("the admin port cannot accept a connection: out of descriptors")
                time.sleep(_EXHAUSTED_PAUSE_SECONDS)
            raise


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Routes:
    """What one admin server answers: /healthz and /readyz always; /metrics and the API as
    told. ``api`` and ``metrics_tokens`` are filled in once the gateway runs (before that the
    API answers 503)."""

    def __init__(self, serve_metrics: bool = True, serve_api: bool = True) -> None:
        self.serve_metrics = serve_metrics
        self.serve_api = serve_api
        self.api: WsgiApp | None = None
        self.console: WsgiApp | None = None
        # When set: /metrics asks for a bearer token of any role among these.
        self.metrics_tokens: Callable[[], tuple[ApiToken, ...]] | None = None
        # When set: /metrics answers this exposition instead of this process's registry
        # (run --workers: every worker's, merged).
        self.metrics_source: Callable[[], bytes] | None = None


def make_app(readiness: ReadinessState, routes: Routes | None = None) -> WsgiApp:
    metrics_app = make_wsgi_app(REGISTRY)
    routes = routes or Routes()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/api/") and routes.serve_api:
            if routes.api is None:
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                return [b"starting\n"]
            return routes.api(environ, start_response)
        if (path == "/console" or path.startswith("/console/")) and routes.serve_api:
            if routes.console is None:
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"no console here\n"]
            if path == "/console":
                start_response("308 Permanent Redirect", [("Location", "/console/")])
                return [b""]
            return routes.console(environ, start_response)
        if path == "/metrics" and routes.serve_metrics:
            tokens = routes.metrics_tokens
            if tokens is not None and not authenticate(
                environ.get("HTTP_AUTHORIZATION", ""), tokens()
            ):
                start_response(
                    "401 Unauthorized",
                    [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")],
                )
                return [b"a bearer token is required\n"]
            if routes.metrics_source is not None:
                start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
                return [routes.metrics_source()]
            result: Iterable[bytes] = metrics_app(environ, start_response)
            return result
        elif path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        elif path == "/readyz":
            problems = readiness.problems()
            if problems:
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                return ["".join(f"{k}: {v}\n" for k, v in problems.items()).encode()]
            start_response("200 OK", [("Content-Type", "text/plain")])
            notes = readiness.notes()
            return [b"ready\n" + "".join(f"{k}: {v}\n" for k, v in notes.items()).encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


def audited_reload(
    reload: Callable[[], tuple[bool, str]], gateway: Callable[[], Gateway]
) -> ReloadFunction:
    """``reload`` as the API and the console call it: for whom, recorded in the trail (who,
    the result, the policy version before and after)."""

    def run(by: str, role: str) -> tuple[bool, str]:
        before = gateway().policy_version
        ok, message = reload()
        record_reload(gateway(), before, by=by, role=role, ok=ok, message=message)
        return ok, message

    return run


def record_reload(
    gateway: Gateway, before: str, *, by: str, role: str, ok: bool, message: str
) -> None:
    gateway.audit.append(
        reload_event(
            instance_id=gateway.instance_id,
            policy_version=gateway.policy_version,
            previous_version=before,
            by=by,
            role=role,
            ok=ok,
            message=message,
        )
    )


class AdminServer:
    def __init__(
        self, host: str, port: int, readiness: ReadinessState, routes: Routes | None = None
    ) -> None:
        self.routes = routes or Routes()
        self._server = make_server(
            host,
            port,
            make_app(readiness, self.routes),
            server_class=_Server,
            handler_class=_QuietHandler,
        )
        self.address: tuple[str, int] = (
            str(self._server.server_address[0]),
            int(self._server.server_address[1]),
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="admin-http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
