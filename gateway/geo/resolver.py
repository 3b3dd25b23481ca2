"""Host name → addresses, cached briefly. The addresses judged are the addresses connected to:
the proxy pins its upstream connection to one of the addresses returned here."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time

_CACHE_MAX = 10000


class Resolver:
    def __init__(self, cache_seconds: float = 30.0) -> None:
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, tuple[str, ...]]] = {}

    @staticmethod
    def literal(host: str) -> str | None:
        try:
            return str(ipaddress.ip_address(host.strip("[]").split("%", 1)[0]))
        except ValueError:
            return None

    def cached(self, host: str) -> tuple[str, ...] | None:
        entry = self._cache.get(host)
        if entry and entry[0] > time.monotonic():
            return entry[1]
        return None

    def _store(self, host: str, infos: list[tuple[object, ...]]) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for info in infos:
            sockaddr = info[4]
            assert isinstance(sockaddr, tuple)
            seen[str(sockaddr[0])] = None
        addresses = tuple(seen)
        if self.cache_seconds > 0 and addresses:
            now = time.monotonic()
            if len(self._cache) >= _CACHE_MAX:  # many distinct names: drop what has expired
                self._cache = {h: e for h, e in self._cache.items() if e[0] > now}
                if len(self._cache) >= _CACHE_MAX:
                    self._cache.clear()
            self._cache[host] = (now + self.cache_seconds, addresses)
        return addresses

    async def resolve(self, host: str) -> tuple[str, ...]:
        """All addresses of a host (A and AAAA); empty when it does not resolve."""
        if (ip := self.literal(host)) is not None:
            return (ip,)
        if (hit := self.cached(host)) is not None:
            return hit
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return ()
        return self._store(host, list(infos))

    def resolve_sync(self, host: str) -> tuple[str, ...]:
        if (ip := self.literal(host)) is not None:
            return (ip,)
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return ()
        return self._store(host, list(infos))
