"""Which address a host's upstream connections go to, held steady while it matters.

A request is judged against the addresses its host resolves to; the connection that carries it
must then go to an address that was judged. DNS answers change (short TTLs, geo-DNS, rebinding
attacks), so a host's pin is not replaced while any flow judged against it is still in flight,
nor within ``ttl`` seconds of its last use. Every later judgement of the host includes the
pinned address, so a flow can never be judged against one address and connect to another.

``PinTable`` holds the pins; ``ConnectionPins`` is what the proxy front end talks to: the pins
plus the upstream connections redirected to them and the connections still open (plain Python:
the front end hands over connection ids and addresses, never its own types).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Key = tuple[str, int]


@dataclass(slots=True)
class _Pin:
    address: str
    last_used: float
    in_flight: int = 0


class PinTable:
    def __init__(self, ttl: float = 30.0, clock: Callable[[], float] | None = None) -> None:
        self.ttl = ttl
        self._clock = clock or time.monotonic
        self._pins: dict[Key, _Pin] = {}
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._pins)

    def current(self, key: Key) -> str | None:
        """The pinned address if the pin is still binding (in flight or recently used)."""
        pin = self._pins.get(key)
        if pin is None:
            return None
        if pin.in_flight == 0 and self._clock() - pin.last_used > self.ttl:
            return None
        return pin.address

    def acquire(self, key: Key, fresh_address: str | None) -> str | None:
        """Pin for a flow about to be judged: keep a binding pin, else take the fresh address.

        Returns the address the flow's connection will use. The caller must ``release``.
        """
        now = self._clock()
        self._sweep(now)
        pin = self._pins.get(key)
        if pin is None or (pin.in_flight == 0 and now - pin.last_used > self.ttl):
            if fresh_address is None:
                return None
            pin = self._pins[key] = _Pin(fresh_address, now)
        pin.in_flight += 1
        pin.last_used = now
        return pin.address

    def release(self, key: Key) -> None:
        pin = self._pins.get(key)
        if pin is not None and pin.in_flight > 0:
            pin.in_flight -= 1
            pin.last_used = self._clock()

    def _sweep(self, now: float) -> None:
        """Forget idle pins now and then, so many distinct hosts cannot grow the table."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + max(self.ttl, 1.0)
        idle = [
            k for k, p in self._pins.items() if p.in_flight == 0 and now - p.last_used > self.ttl
        ]
        for key in idle:
            del self._pins[key]


class ConnectionPins:
    """Every piece of pin bookkeeping the proxy needs, in one place (no proxy types here).

    - Flows: ``acquire`` before a flow is judged, ``release`` when its exchange is over.
    - Upstream connections, by the proxy's connection id: ``redirect`` when one is about to
      be opened (connect to the pinned address, not to whatever the name resolves to next),
      ``connected`` once it is open (hand back the host name so the proxy keeps reusing the
      connection for that host; count its peer as live), ``failed`` if it never opened,
      ``disconnected`` when it closes.
    - A host's ``live`` addresses are judged with every later flow to it, because the proxy
      may send that flow down an already open connection.
    """

    def __init__(self, ttl: float = 30.0, clock: Callable[[], float] | None = None) -> None:
        self._pins = PinTable(ttl, clock)
        # connection id → the host name a redirected connection carries again once open
        self._restore: dict[str, Key] = {}
        # host:port → peer address of each open upstream connection → how many
        self._live: dict[Key, dict[str, int]] = {}

    @property
    def ttl(self) -> float:
        return self._pins.ttl

    @ttl.setter
    def ttl(self, seconds: float) -> None:
        self._pins.ttl = seconds

    # -- flows --------------------------------------------------------------------------------
    def pinned(self, key: Key) -> str | None:
        """The address a new connection for ``key`` must use, while the pin binds."""
        return self._pins.current(key)

    def acquire(self, key: Key, resolved: Sequence[str]) -> tuple[str, ...]:
        """Pin ``key`` for a flow about to be judged and return every address the flow must be
        judged against: ``resolved``, the pin (another flow may have pinned the host while
        this one resolved) and the peers of open connections the proxy may reuse. Each call
        must be matched by one ``release(key)``."""
        pin = self._pins.acquire(key, resolved[0] if resolved else None)
        extra = (pin,) if pin else ()
        return (*resolved, *extra, *self.live(key))

    def release(self, key: Key) -> None:
        self._pins.release(key)

    def live(self, key: Key) -> tuple[str, ...]:
        """Peer addresses of the open upstream connections for ``key``."""
        return tuple(self._live.get(key, ()))

    # -- upstream connections -----------------------------------------------------------------
    def redirect(self, connection_id: str, key: Key, address: str) -> Key:
        """Where a new connection for ``key`` goes: to ``address`` (its pin, or what the name
        resolves to now), remembering the name for ``connected`` when that differs."""
        if address == key[0]:
            return key
        self._restore[connection_id] = key
        return (address, key[1])

    def connected(self, connection_id: str, address: Key | None, peer: str | None) -> Key | None:
        """A connection is open at ``address`` (as the proxy holds it) to ``peer``: returns
        the address it should carry from now on and counts ``peer`` as live for it."""
        address = self._restore.pop(connection_id, None) or address
        if address is not None and peer is not None:
            live = self._live.setdefault(address, {})
            live[peer] = live.get(peer, 0) + 1
        return address

    def failed(self, connection_id: str) -> None:
        """A redirected connection never opened: nothing to restore."""
        self._restore.pop(connection_id, None)

    def disconnected(self, connection_id: str, address: Key | None, peer: str | None) -> None:
        """A connection counted by ``connected`` (under ``address``, its name) has closed."""
        self._restore.pop(connection_id, None)
        if address is None or peer is None:
            return
        live = self._live.get(address)
        if not live or peer not in live:
            return
        live[peer] -= 1
        if live[peer] <= 0:
            del live[peer]
        if not live:
            del self._live[address]
