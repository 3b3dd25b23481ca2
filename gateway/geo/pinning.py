"""Which address a host's upstream connections go to, held steady while it matters.

A request is judged against the addresses its host resolves to; the connection that carries it
must then go to an address that was judged. DNS answers change (short TTLs, geo-DNS, rebinding
attacks), so a host's pin is not replaced while any flow judged against it is still in flight,
nor within ``ttl`` seconds of its last use. Every later judgement of the host includes the
pinned address, so a flow can never be judged against one address and connect to another.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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
