"""Request bodies bound abroad are buffered whole before they are inspected (a streamed body
would leave before it was read): this bounds them, per body and all together.

mitmproxy's own ``body_size_limit`` is global: it would also cut domestic uploads and
downloads, which are streamed and never inspected. So the gateway gives each request it
buffers for inspection a limit of its own (``limits.max_body_bytes``) and counts the bytes all
such requests hold (``limits.max_buffered_body_bytes``). mitmproxy checks a buffered body's
size as each chunk arrives (``HttpStream.check_body_size``); wrapping that check, a body is cut
as soon as its declared length or its arriving bytes pass a limit — with a 413 naming the limit
and the incident, and an audited, counted block — instead of after it was held whole.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Generator
from typing import Any

from mitmproxy import flow as mitm_flow
from mitmproxy import http
from mitmproxy.proxy.layers.http import HttpStream, SendHttp
from mitmproxy.proxy.layers.http._events import ErrorCode, ResponseProtocolError
from mitmproxy.proxy.layers.http._hooks import HttpErrorHook

LIMIT = "phi_gateway_body_limit"  # flow.metadata: bytes this request may buffer
REFUSED = "phi_gateway_body_refused"  # flow.metadata: the limit that cut it
INCIDENT = "phi_gateway_incident"  # flow.metadata: set by whoever records the refusal


def _declared(flow: http.HTTPFlow) -> int | None:
    value = flow.request.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


class BodyBudget:
    """The bytes held by request bodies buffered for inspection, across all connections."""

    def __init__(self) -> None:
        self.max_total = 0  # 0: no total limit (set from the policy in force at each watch)
        self._held: dict[int, int] = {}

    @property
    def held(self) -> int:
        return sum(self._held.values())

    def watch(self, flow: http.HTTPFlow, limit: int, total: int) -> None:
        flow.metadata[LIMIT] = limit
        self.max_total = total
        if id(flow) not in self._held:
            self._held[id(flow)] = 0
            # A flow that ends without a hook (a reset connection) still gives its bytes back.
            weakref.finalize(flow, self._held.pop, id(flow), None)

    def release(self, flow: http.HTTPFlow) -> None:
        self._held.pop(id(flow), None)

    def over(self, flow: http.HTTPFlow, size: int) -> str:
        """The limit this body passes at ``size`` bytes, or ""."""
        limit = flow.metadata.get(LIMIT)
        if not isinstance(limit, int):
            return ""
        declared = _declared(flow)
        if size > limit or (declared is not None and declared > limit):
            return "max_body_bytes"
        if id(flow) in self._held:
            before = self._held[id(flow)]
            self._held[id(flow)] = size
            if self.max_total and size > before and self.held > self.max_total:
                return "max_buffered_body_bytes"
        return ""


BUDGET = BodyBudget()
_CheckBodySize = Callable[[HttpStream, bool], Generator[Any, Any, bool]]


def _refuse(stream: HttpStream, flow: http.HTTPFlow, limit: str) -> Generator[Any, Any, bool]:
    flow.metadata[REFUSED] = limit
    flow.error = mitm_flow.Error(f"request body exceeds limits.{limit}")
    yield HttpErrorHook(flow)  # the addon decides and records it here (sets INCIDENT)
    incident = flow.metadata.get(INCIDENT, "")
    message = f"PHI gateway: request body bound abroad exceeds limits.{limit}: refused"
    if incident:
        message += f" (incident {incident})"
    yield SendHttp(
        ResponseProtocolError(stream.stream_id, message, ErrorCode.REQUEST_TOO_LARGE),
        stream.context.client,
    )
    stream.client_state = stream.state_errored
    stream.request_body_buf.clear()
    flow.live = False
    BUDGET.release(flow)
    return True


def install() -> None:
    """Wrap mitmproxy's body size check once (idempotent)."""
    original: _CheckBodySize = HttpStream.check_body_size
    if getattr(original, "phi_gateway", False):
        return

    def check_body_size(self: HttpStream, request: bool) -> Generator[Any, Any, bool]:
        flow = getattr(self, "flow", None)
        if request and isinstance(flow, http.HTTPFlow) and LIMIT in flow.metadata:
            limit = BUDGET.over(flow, len(self.request_body_buf))
            if limit:
                return (yield from _refuse(self, flow, limit))
        return (yield from original(self, request))

    check_body_size.phi_gateway = True  # type: ignore[attr-defined]
    HttpStream.check_body_size = check_body_size  # type: ignore[method-assign]
