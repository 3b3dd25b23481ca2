"""The PROXY protocol, version 2 (HAProxy's spec, "proxy-protocol.txt" section 2.2): the binary
header a balancer sends first on each connection it opens to a backend, naming the client's
address and the address the client connected to. Behind HAProxy every connection comes from
the balancer: without this header every audit row would name HAProxy as the client.

Read only on connections from ``proxy.proxy_protocol_from`` (the balancers), and required on
them: a connection from a balancer without a valid header is closed, since its client is
unknown (``addons/proxy_protocol.py``). A LOCAL header (the balancer's own health check)
keeps the connection's own addresses. Version 1 (text) is not accepted: HAProxy's
``send-proxy-v2`` sends version 2, and one format is one parser to trust.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
HEADER_BYTES = 16  # signature, version and command, family and transport, length
# The address block and TLVs: HAProxy sends a few dozen bytes (at most a few hundred with
# TLVs such as SSL or unique-id); the length field allows 65,535.
MAX_BODY_BYTES = 4096
_LOCAL, _PROXY = 0x0, 0x1
_INET, _INET6, _UNIX = 0x1, 0x2, 0x3
_STREAM = 0x1
_ADDRESS_BYTES = {_INET: 12, _INET6: 36, _UNIX: 216}


class ProxyProtocolError(Exception):
    """The connection does not start with a valid PROXY v2 header (a reason, never bytes)."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What the balancer says about the connection. ``source`` and ``destination`` are None
    for a LOCAL header (the balancer's own connection) and for families with no IP address
    (UNSPEC, UNIX): the connection's own addresses stand."""

    local: bool
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None


def body_length(head: bytes) -> int:
    """The length of what follows the 16 bytes that start the header."""
    if len(head) != HEADER_BYTES or not head.startswith(SIGNATURE):
        raise ProxyProtocolError("no PROXY protocol v2 signature")
    if head[12] >> 4 != 2:
        raise ProxyProtocolError("not PROXY protocol version 2")
    if head[12] & 0x0F not in (_LOCAL, _PROXY):
        raise ProxyProtocolError("unknown PROXY protocol command")
    length: int = struct.unpack("!H", head[14:16])[0]
    if length > MAX_BODY_BYTES:
        raise ProxyProtocolError("PROXY protocol header longer than it may be")
    return length


def parse(head: bytes, body: bytes) -> ProxyHeader:
    """The header from its first 16 bytes and the ``body_length(head)`` bytes after them."""
    length = body_length(head)
    if len(body) != length:
        raise ProxyProtocolError("truncated PROXY protocol header")
    if head[12] & 0x0F == _LOCAL:
        return ProxyHeader(local=True)
    family, transport = head[13] >> 4, head[13] & 0x0F
    if family not in _ADDRESS_BYTES:
        return ProxyHeader(local=False)  # UNSPEC: the sender does not know the addresses
    if len(body) < _ADDRESS_BYTES[family]:
        raise ProxyProtocolError("PROXY protocol address block is too short")
    if transport != _STREAM:
        raise ProxyProtocolError("PROXY protocol header is not for a stream connection")
    if family == _UNIX:
        return ProxyHeader(local=False)
    size = 4 if family == _INET else 16
    kind = socket.AF_INET if family == _INET else socket.AF_INET6
    source = socket.inet_ntop(kind, body[:size])
    destination = socket.inet_ntop(kind, body[size : 2 * size])
    ports = struct.unpack("!HH", body[2 * size : 2 * size + 4])
    return ProxyHeader(False, (source, ports[0]), (destination, ports[1]))


def encode(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A PROXY v2 header for a TCP connection (the tests' and the bench's sender)."""
    a, b = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    family = _INET if a.version == 4 else _INET6
    body = a.packed + b.packed + struct.pack("!HH", source[1], destination[1])
    return SIGNATURE + bytes([0x21, family << 4 | _STREAM]) + struct.pack("!H", len(body)) + body


def is_trusted(
    peer: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> bool:
    """Is the connection's peer one of the balancers (an IPv4-mapped IPv6 address counts as
    its IPv4 address)?"""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)
