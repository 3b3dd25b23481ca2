"""A TLS client that says whose certificate it was shown: the upstream's own (relayed) or one
the gateway issued (decrypted), and speaks HTTP/1.1 on the kept-alive connection."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

TEST_CA = "phi-gateway test CA"  # tests/support/upstream.py: make_pki
GATEWAY_CA = "mitmproxy"  # the CA mitmproxy creates in proxy.confdir


@dataclass
class Tunnel:
    """One TLS connection through the gateway, and who issued the certificate it showed."""

    sock: ssl.SSLSocket
    issuer: str

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """One HTTP/1.1 request on the kept-alive connection."""
        self.sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: upstream\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        reader = self.sock.makefile("rb")
        status = int(reader.readline().split()[1])
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return status, reader.read(length)

    def close(self) -> None:
        self.sock.close()


def issuer(sock: ssl.SSLSocket) -> str:
    cert = sock.getpeercert()
    assert cert is not None
    names = {pair[0]: pair[1] for rdn in cert["issuer"] for pair in rdn}
    return str(names.get("commonName", ""))


def wrap(raw: socket.socket, cafile: Path, hostname: str) -> Tunnel:
    context = ssl.create_default_context(cafile=str(cafile))  # trusts this one CA only
    sock = context.wrap_socket(raw, server_hostname=hostname)
    return Tunnel(sock, issuer(sock))
