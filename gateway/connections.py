"""Bounded client connections (``connections.*`` in the config): the phases each connection
goes through, their deadlines, and the caps on how many connections clients may hold.

Pure bookkeeping with the clock passed in: ``addons/connection_watch.py`` tells it what the
hooks saw and how many bytes each client sent, asks which connections are overdue, and does
the closing. The rules (docs/decisions.md, "Bounded connections"):

- *waiting* (no request in flight): a new connection must finish its first request's headers
  within ``header_seconds`` of opening; a kept-alive one may stay silent for ``idle_seconds``
  after a response and then has ``header_seconds`` from the request's first byte. Output
  still being written to the client counts as activity, so a slow download is not idle.
- *body*: from the end of the headers, ``body_seconds`` plus one second per
  ``min_body_bytes_per_second`` bytes received (streamed domestic uploads alike).
- *upstream*: from the request being handed upstream to the first byte of its answer,
  ``upstream_seconds``.
- *streams* (MLLP, TCP, WebSocket, TLS passthrough) have no phases; an MLLP sender whose
  last data got no reply for ``upstream_seconds`` (and sent nothing since) is closed.

Time the gateway itself spends in a hook (resolving, inspecting) never counts against the
client: the clock of that phase starts when the hook returns.
"""

from __future__ import annotations

import enum
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from gateway.config import Connections

# Descriptors one proxied connection costs: the client's socket and the upstream's.
DESCRIPTORS_PER_CONNECTION = 2


class Phase(enum.StrEnum):
    """Where a connection was when its deadline passed (label of the timeouts counter)."""

    IDLE = "idle"  # nothing sent: a kept-alive connection, or a new one that stays silent
    HEADERS = "headers"  # request headers begun but not finished in time
    BODY = "body"  # the request body stalled or trickled
    UPSTREAM = "upstream"  # the destination had the request and did not answer


class Refusal(enum.StrEnum):
    """Why a new connection was closed at once (label of the refusals counter)."""

    PER_CLIENT = "per-client"  # connections.max_per_client from this address
    GLOBAL = "global"  # connections.max_total (or the cap derived from RLIMIT_NOFILE)
    DESCRIPTORS = "descriptors"  # open descriptors reached the reserve


class Stage(enum.Enum):
    """Where one request is (several at once on an HTTP/2 connection)."""

    HOOK = "hook"  # the gateway is working on it: no deadline
    BODY = "body"
    UPSTREAM = "upstream"
    RESPONSE = "response"  # answered (by the destination or the gateway): no deadline


@dataclass(frozen=True, slots=True)
class Timeouts:
    header: float
    idle: float
    body: float
    min_body_rate: int
    upstream: float

    @classmethod
    def of(cls, config: Connections) -> Timeouts:
        return cls(
            config.header_seconds,
            config.idle_seconds,
            config.body_seconds,
            config.min_body_bytes_per_second,
            config.upstream_seconds,
        )

    @property
    def shortest(self) -> float:
        return min(self.header, self.idle, self.body, self.upstream)


@dataclass(slots=True)
class _Request:
    stage: Stage
    since: float
    received: int  # the connection's byte count when ``since`` was taken


@dataclass(frozen=True, slots=True)
class Overdue:
    connection: Connection
    phase: Phase
    flow: str | None = None  # the request, for upstream timeouts on HTTP


class Connection:
    """One client connection's clock. ``key`` is mitmproxy's client id."""

    __slots__ = (
        "_awaiting_reply",
        "_first_byte",
        "_fresh",
        "_requests",
        "_waiting_since",
        "address",
        "closing",
        "key",
        "mllp",
        "received",
        "stream",
    )

    def __init__(self, key: str, address: str, now: float, *, stream: bool = False) -> None:
        self.key = key
        self.address = address
        self.received = 0
        self.stream = stream
        self.mllp = False
        self.closing = False  # acted on: it is on its way out
        self._fresh = True
        self._waiting_since = now
        self._first_byte: float | None = None
        self._requests: dict[str, _Request] = {}
        self._awaiting_reply: float | None = None

    # -- what the client sent ---------------------------------------------------------------
    def read(self, size: int, now: float) -> None:
        self.received += size
        if self._first_byte is None and not self._requests:
            self._first_byte = now

    def writing(self, now: float) -> None:
        """Output is still queued for the client: the connection is not idle."""
        if not self._requests:
            self._waiting_since = now
            if not self._fresh:
                self._first_byte = None

    # -- HTTP requests ----------------------------------------------------------------------
    def headers(self, flow: str, now: float) -> None:
        """The request's headers are complete; the gateway's hook runs."""
        self._requests[flow] = _Request(Stage.HOOK, now, self.received)

    def body(self, flow: str, now: float) -> None:
        """The headers hook returned: the body's clock starts."""
        request = self._requests.get(flow)
        if request is not None and request.stage is Stage.HOOK:
            request.stage, request.since, request.received = Stage.BODY, now, self.received

    def judging(self, flow: str) -> None:
        """The body is complete; the gateway's request hook runs."""
        request = self._requests.get(flow)
        if request is not None and request.stage is Stage.BODY:
            request.stage = Stage.HOOK

    def forwarded(self, flow: str, now: float) -> None:
        """Handed to the destination: its answer's clock starts."""
        request = self._requests.get(flow)
        if request is not None and request.stage is Stage.HOOK:
            request.stage, request.since = Stage.UPSTREAM, now

    def answered(self, flow: str) -> None:
        request = self._requests.get(flow)
        if request is not None:
            request.stage = Stage.RESPONSE

    def finished(self, flow: str, now: float) -> None:
        if self._requests.pop(flow, None) is not None and not self._requests:
            self._wait(now)

    def tunnel(self, now: float) -> None:
        """A CONNECT was answered: the tunnel's first request is awaited like a kept-alive one."""
        self._requests.clear()
        self._wait(now)

    def _wait(self, now: float) -> None:
        self._fresh = False
        self._waiting_since = now
        self._first_byte = None

    def stage(self, flow: str) -> Stage | None:
        request = self._requests.get(flow)
        return request.stage if request is not None else None

    # -- streams ----------------------------------------------------------------------------
    def streaming(self, *, mllp: bool = False) -> None:
        self.stream = True
        self.mllp = self.mllp or mllp
        self._requests.clear()

    def sent(self, now: float) -> None:
        """The sender's data went to the receiver: a reply is due."""
        self._awaiting_reply = now

    def replied(self) -> None:
        self._awaiting_reply = None

    # -- deadlines --------------------------------------------------------------------------
    def overdue(self, now: float, timeouts: Timeouts) -> Overdue | None:
        if self.closing:
            return None
        if self.stream:
            awaiting = self._awaiting_reply
            if self.mllp and awaiting is not None and now - awaiting > timeouts.upstream:
                return Overdue(self, Phase.UPSTREAM)
            return None
        if not self._requests:
            return self._overdue_waiting(now, timeouts)
        for flow, request in self._requests.items():
            if request.stage is Stage.BODY:
                credit = (self.received - request.received) / timeouts.min_body_rate
                if now - request.since > timeouts.body + credit:
                    return Overdue(self, Phase.BODY, flow)
            elif request.stage is Stage.UPSTREAM and now - request.since > timeouts.upstream:
                return Overdue(self, Phase.UPSTREAM, flow)
        return None

    def _overdue_waiting(self, now: float, timeouts: Timeouts) -> Overdue | None:
        first = self._first_byte
        if self._fresh:
            if now - self._waiting_since > timeouts.header:
                return Overdue(self, Phase.IDLE if first is None else Phase.HEADERS)
        elif first is None:
            if now - self._waiting_since > timeouts.idle:
                return Overdue(self, Phase.IDLE)
        elif now - first > timeouts.header:
            return Overdue(self, Phase.HEADERS)
        return None


@dataclass(frozen=True, slots=True)
class Caps:
    per_client: int
    total: int | None  # None: no global cap (no finite descriptor limit, none configured)


class ConnectionTable:
    """The open client connections, counted per client address."""

    def __init__(self) -> None:
        self._connections: dict[str, Connection] = {}
        self._per_address: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._connections)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._connections.values()))

    def get(self, key: str) -> Connection | None:
        return self._connections.get(key)

    def admit(
        self,
        key: str,
        address: str,
        now: float,
        caps: Caps,
        *,
        descriptors_short: bool = False,
        stream: bool = False,
    ) -> Connection | Refusal:
        """The new connection's clock, or why it is refused (nothing is recorded then)."""
        if self._per_address[address] >= caps.per_client:
            return Refusal.PER_CLIENT
        if caps.total is not None and len(self._connections) >= caps.total:
            return Refusal.GLOBAL
        if descriptors_short:
            return Refusal.DESCRIPTORS
        connection = Connection(key, address, now, stream=stream)
        self._connections[key] = connection
        self._per_address[address] += 1
        return connection

    def release(self, key: str) -> Connection | None:
        connection = self._connections.pop(key, None)
        if connection is not None:
            left = self._per_address[connection.address] - 1
            if left > 0:
                self._per_address[connection.address] = left
            else:
                del self._per_address[connection.address]
        return connection

    def overdue(self, now: float, timeouts: Timeouts) -> list[Overdue]:
        found = []
        for connection in self._connections.values():
            late = connection.overdue(now, timeouts)
            if late is not None:
                found.append(late)
        return found


@dataclass(frozen=True, slots=True)
class DescriptorBudget:
    """The process's open-file limit, what was open when the proxy started, and the reserve.

    ``limit`` None: no finite limit (RLIM_INFINITY), so nothing is derived from it."""

    limit: int | None
    at_start: int
    reserved: int

    @classmethod
    def measure(cls, reserved: int) -> DescriptorBudget:
        return cls(soft_nofile_limit(), open_descriptors() or 0, reserved)

    def connection_cap(self) -> int | None:
        """The most client connections the descriptors allow, keeping the reserve free."""
        if self.limit is None:
            return None
        spare = self.limit - self.at_start - self.reserved
        return max(1, spare // DESCRIPTORS_PER_CONNECTION)

    def short(self, in_use: int | None) -> bool:
        """Whether open descriptors have eaten into the reserve (half of it stays for the
        admin port and the store whatever new connections would cost)."""
        if self.limit is None or in_use is None:
            return False
        return in_use >= self.limit - self.reserved // 2


def total_cap(configured: int | None, budget: DescriptorBudget) -> int | None:
    """``connections.max_total``, never above what the descriptors allow."""
    derived = budget.connection_cap()
    if configured is None:
        return derived
    return configured if derived is None else min(configured, derived)


def per_client_cap(configured: int, total: int | None) -> int:
    """``connections.max_per_client``, never more than half the global cap: one client
    alone can never take every connection (under a low descriptor limit the derived global
    cap may be below the configured per-client one)."""
    return configured if total is None else min(configured, max(1, total // 2))


def soft_nofile_limit() -> int | None:
    try:
        import resource
    except ImportError:  # not a Unix: no limit to derive from
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft < 0 or soft >= 2**31:
        return None
    return int(soft)


def open_descriptors() -> int | None:
    """Descriptors this process has open (Linux /proc; None where it cannot tell)."""
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(directory))
        except OSError:
            continue
    return None


def tick_seconds(timeouts: Timeouts) -> float:
    """How often deadlines are checked: a quarter of the shortest, between 0.05 and 1 s."""
    return min(1.0, max(0.05, timeouts.shortest / 4))
