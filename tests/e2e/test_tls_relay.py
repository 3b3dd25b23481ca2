"""Domestic TLS relayed encrypted, not decrypted (issue 19): through the real gateway, with
clients that trust only the CA they should see. A relayed connection shows the upstream's own
certificate (the test PKI's CA); an intercepted one shows the gateway's mitmproxy CA."""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Upstreams, gateway_config
from tests.support.gateway_process import GatewayProcess, free_port
from tests.support.mmdb import DOMESTIC_IP
from tests.support.patients import hl7_adt, make_patient
from tests.support.tlsclient import GATEWAY_CA, TEST_CA, Tunnel, wrap
from tests.support.upstream import Pki, RecordingServer

pytestmark = pytest.mark.e2e
ADT = hl7_adt(make_patient(19)).encode()
CLEAN = b'{"resourceType": "CapabilityStatement", "status": "active"}'


def connect(
    gateway: GatewayProcess, host: str, port: int, cafile: Path, sni: str | None = None
) -> Tunnel:
    """CONNECT host:port through the explicit proxy, then TLS with ``sni`` (default: host;
    Python sends no SNI for an address)."""
    raw = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    raw.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = raw.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return wrap(raw, cafile, sni or host)


def socks5(port: int, host: str, target: int, cafile: Path) -> Tunnel:
    """A SOCKS5 CONNECT by address (RFC 1928), then TLS."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.sendall(b"\x05\x01\x00")
    assert raw.recv(2) == b"\x05\x00"
    raw.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(host) + struct.pack("!H", target))
    reply = b""
    while len(reply) < 10:
        reply += raw.recv(10 - len(reply))
    assert reply[:2] == b"\x05\x00", reply
    return wrap(raw, cafile, host)


def handshake_fails(gateway: GatewayProcess, host: str, port: int, cafile: Path) -> bool:
    try:
        connect(gateway, host, port, cafile).close()
    except ssl.SSLCertVerificationError:
        return True
    return False


def relayed(gateway: GatewayProcess) -> float:
    return gateway.metric("phi_gateway_tls_relayed_total", reason="domestic")


# -- the shared gateway: relaying on (the default) ---------------------------------------------
def test_domestic_https_is_relayed_with_the_servers_own_certificate(
    gateway: GatewayProcess, upstreams: Upstreams, pki: Pki
) -> None:
    server = upstreams.domestic_tls
    before, audited = relayed(gateway), len(gateway.audit_rows())
    decided = gateway.metric("phi_gateway_decisions_total", rule="domestic")
    tunnel = connect(gateway, server.host, server.port, pki.ca_pem)
    try:
        assert tunnel.issuer == TEST_CA
        # Kept alive: both requests on the one relayed connection, nothing decrypted.
        assert tunnel.post("/relayed/1", CLEAN) == (200, b'{"ok": true}')
        assert tunnel.post("/relayed/2", ADT)[0] == 200
    finally:
        tunnel.close()
    assert server.first_at("/relayed/2").body == ADT  # arrived as sent
    assert relayed(gateway) == before + 1  # one connection, counted once
    # Domestic traffic is not audited, and a relayed connection decides no request.
    assert len(gateway.audit_rows()) == audited
    assert gateway.metric("phi_gateway_decisions_total", rule="domestic") == decided
    # The gateway's CA is not the one this connection showed: trusting it alone fails.
    assert handshake_fails(gateway, server.host, server.port, gateway.ca_pem)


def test_domestic_https_by_name_is_relayed(
    gateway: GatewayProcess, upstreams: Upstreams, pki: Pki
) -> None:
    if socket.gethostbyname_ex("localhost")[2] != [DOMESTIC_IP]:
        pytest.skip("localhost does not resolve to 127.0.0.1 alone here")
    server = upstreams.domestic_tls
    before = relayed(gateway)
    tunnel = connect(gateway, "localhost", server.port, pki.ca_pem)  # SNI localhost
    try:
        assert tunnel.issuer == TEST_CA
        assert tunnel.post("/relayed/by-name", CLEAN)[0] == 200
    finally:
        tunnel.close()
    assert relayed(gateway) == before + 1


def test_foreign_https_is_still_intercepted_and_phi_blocked(
    gateway: GatewayProcess, upstreams: Upstreams, pki: Pki
) -> None:
    server = upstreams.foreign_tls
    before = relayed(gateway)
    tunnel = connect(gateway, server.host, server.port, gateway.ca_pem)
    try:
        assert tunnel.issuer == GATEWAY_CA
        assert tunnel.post("/abroad/phi", ADT)[0] == 451
        assert tunnel.post("/abroad/clean", CLEAN)[0] == 200
    finally:
        tunnel.close()
    assert "/abroad/phi" not in server.paths() and "/abroad/clean" in server.paths()
    assert handshake_fails(gateway, server.host, server.port, pki.ca_pem)
    assert relayed(gateway) == before


# -- a gateway whose lists name domestic servers ------------------------------------------------
class Listed:
    """Domestic TLS servers named by the deny list and by proxy.inspect_domestic (CIDR and
    port: every server here is 127.0.0.1), a deny rule by host name for the SNI, and a SOCKS5
    listener next to the explicit proxy."""

    def __init__(self, workdir: Path, test_mmdb: Path, pki: Pki) -> None:
        self.denied = RecordingServer(DOMESTIC_IP, tls=pki.server_context)
        self.inspected = RecordingServer(DOMESTIC_IP, tls=pki.server_context)
        self.socks_port = free_port()
        home = f"{DOMESTIC_IP}/32"
        config = gateway_config(
            test_mmdb,
            pki,
            policy={
                "deny_destinations": [
                    {"cidr": home, "port": self.denied.port, "reason": "closed vendor"},
                    {"host": "denied-by-sni.example", "reason": "closed vendor"},
                ]
            },
            proxy={
                "inspect_domestic": [
                    {"cidr": home, "port": self.inspected.port, "reason": "counted per request"}
                ],
                "modes": ["regular", f"socks5@{self.socks_port}"],
            },
        )
        self.gateway = GatewayProcess(workdir, config)

    def close(self) -> None:
        self.gateway.stop()
        self.denied.close()
        self.inspected.close()


@pytest.fixture(scope="module")
def listed(tmp_path_factory: pytest.TempPathFactory, test_mmdb: Path, pki: Pki) -> Iterator[Listed]:
    site = Listed(tmp_path_factory.mktemp("tls-relay-listed"), test_mmdb, pki)
    yield site
    site.close()


def test_a_deny_listed_domestic_host_is_intercepted_and_blocked(listed: Listed) -> None:
    gateway, server = listed.gateway, listed.denied
    tunnel = connect(gateway, server.host, server.port, gateway.ca_pem)
    try:
        assert tunnel.issuer == GATEWAY_CA
        assert tunnel.post("/denied", CLEAN)[0] == 451  # deny-list: PHI or not
    finally:
        tunnel.close()
    assert "/denied" not in server.paths()
    assert gateway.metric("phi_gateway_decisions_total", rule="deny-list") >= 1


def test_an_inspect_domestic_host_is_intercepted(listed: Listed, pki: Pki) -> None:
    gateway, server = listed.gateway, listed.inspected
    before = relayed(gateway)
    tunnel = connect(gateway, server.host, server.port, gateway.ca_pem)
    try:
        assert tunnel.issuer == GATEWAY_CA
        assert tunnel.post("/inspected", ADT)[0] == 200  # domestic: forwarded, decrypted
    finally:
        tunnel.close()
    assert server.first_at("/inspected").body == ADT
    assert gateway.metric("phi_gateway_decisions_total", rule="domestic", protocol="http/1") >= 1
    assert handshake_fails(gateway, server.host, server.port, pki.ca_pem)
    assert relayed(gateway) == before


def test_a_deny_listed_sni_is_intercepted(listed: Listed, upstreams: Upstreams, pki: Pki) -> None:
    """CONNECT to a domestic address that no list names, with an SNI the deny list names: the
    gateway does not relay what a list names by either name."""
    gateway, server = listed.gateway, upstreams.domestic_tls
    tunnel = connect(gateway, server.host, server.port, gateway.ca_pem, "denied-by-sni.example")
    tunnel.close()
    assert tunnel.issuer == GATEWAY_CA
    other = connect(gateway, server.host, server.port, pki.ca_pem)  # the same, no SNI: relayed
    other.close()
    assert other.issuer == TEST_CA


def test_an_sni_naming_another_host_is_intercepted(
    listed: Listed, upstreams: Upstreams, pki: Pki
) -> None:
    if socket.gethostbyname_ex("localhost")[2] != [DOMESTIC_IP]:
        pytest.skip("localhost does not resolve to 127.0.0.1 alone here")
    gateway, server = listed.gateway, upstreams.domestic_tls
    before = relayed(gateway)
    tunnel = connect(gateway, "localhost", server.port, gateway.ca_pem, "fronted.example")
    tunnel.close()
    assert tunnel.issuer == GATEWAY_CA  # CONNECT localhost, SNI another host: decrypted
    assert relayed(gateway) == before


def test_domestic_tls_through_socks5_is_relayed(
    listed: Listed, upstreams: Upstreams, pki: Pki
) -> None:
    gateway, server = listed.gateway, upstreams.domestic_tls
    before = relayed(gateway)
    tunnel = socks5(listed.socks_port, server.host, server.port, pki.ca_pem)
    try:
        assert tunnel.issuer == TEST_CA
        assert tunnel.post("/relayed/socks5", CLEAN)[0] == 200
    finally:
        tunnel.close()
    assert relayed(gateway) == before + 1
    # Abroad through SOCKS5: intercepted as ever.
    abroad = socks5(
        listed.socks_port, upstreams.foreign_tls.host, upstreams.foreign_tls.port, gateway.ca_pem
    )
    try:
        assert abroad.issuer == GATEWAY_CA
        assert abroad.post("/abroad/socks5", ADT)[0] == 451
    finally:
        abroad.close()


# -- the switch off: every TLS connection decrypted, as before issue 19 -------------------------
def test_relay_domestic_tls_false_decrypts_domestic_tls_again(
    tmp_path: Path, test_mmdb: Path, pki: Pki, upstreams: Upstreams
) -> None:
    config = gateway_config(test_mmdb, pki, proxy={"relay_domestic_tls": False})
    gateway = GatewayProcess(tmp_path / "gateway", config)
    try:
        server = upstreams.domestic_tls
        tunnel = connect(gateway, server.host, server.port, gateway.ca_pem)
        try:
            assert tunnel.issuer == GATEWAY_CA
            assert tunnel.post("/decrypted-at-home", ADT)[0] == 200
        finally:
            tunnel.close()
        assert relayed(gateway) == 0
    finally:
        gateway.stop()
