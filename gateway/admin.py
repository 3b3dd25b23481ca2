"""Admin HTTP server: /metrics (Prometheus), /healthz (process alive), /readyz (serving).

A small WSGI app on its own thread, so a busy proxy event loop never delays a scrape.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, make_wsgi_app

from gateway import metrics

StartResponse = Callable[..., Any]


class ReadinessState:
    """Ready when the proxy listens with a valid policy; reasons say why not."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._problems: dict[str, str] = {"proxy": "not listening yet"}

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


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def make_app(
    readiness: ReadinessState,
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    metrics_app = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            result: Iterable[bytes] = metrics_app(environ, start_response)
            return result
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/readyz":
            problems = readiness.problems()
            if problems:
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                return ["".join(f"{k}: {v}\n" for k, v in problems.items()).encode()]
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ready\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


class AdminServer:
    def __init__(self, host: str, port: int, readiness: ReadinessState) -> None:
        self._server = make_server(
            host, port, make_app(readiness), server_class=_Server, handler_class=_QuietHandler
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
