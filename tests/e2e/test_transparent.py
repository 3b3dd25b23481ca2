"""Transparent mode end to end: a hospital host sends to receivers' own addresses, a firewall
redirects its TCP to the gateway, and the gateway judges MLLP and HTTP as in the other modes.

The network is built from namespaces this test creates (tests/support/netns.py), nothing on the
host's own interfaces or tables is touched, and no packet leaves them:

    client 10.231.0.2 ── veth ── 10.231.0.1 router 10.231.1.1 ── veth ── servers 10.231.1.2 (US)
    (default route via router)   gateway, iptables REDIRECT          10.231.1.3 (DE)

The router follows mitmproxy's transparent-mode recipe for Linux: ip_forward on, ICMP redirects
off, ``iptables -t nat -A PREROUTING -i <client side> -p tcp -j REDIRECT --to-ports <gateway>``;
mitmproxy reads each connection's original destination (SO_ORIGINAL_DST). The servers have no
route back to the client's network, so nothing can reach them except through the gateway's own
upstream connections (each receiver checks the peer is the router).
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydicom.uid import ImplicitVRLittleEndian

from tests.support import dicom
from tests.support.dimse import StoreScp, c_store
from tests.support.gateway_process import GatewayProcess
from tests.support.mllp import MllpReceiver, MllpSender, mllp, msa, run
from tests.support.mmdb import build_test_mmdb
from tests.support.netns import Netns, NetnsUnavailable, remove_stale, unavailable_reason, veth
from tests.support.patients import hl7_adt, make_patient
from tests.support.tlsclient import GATEWAY_CA, TEST_CA, wrap
from tests.support.upstream import Pki, RecordingServer, make_pki

pytestmark = pytest.mark.e2e

CLIENT_IP = "10.231.0.2"
ROUTER_CLIENT_SIDE = "10.231.0.1"  # where REDIRECT delivers, and where the gateway listens
ROUTER_SERVER_SIDE = "10.231.1.1"  # the gateway's upstream connections come from here
DOMESTIC_IP = "10.231.1.2"
FOREIGN_IP = "10.231.1.3"
WORLD = {f"{DOMESTIC_IP}/32": "US", f"{FOREIGN_IP}/32": "DE"}
MLLP_PORT = 2575  # in proxy.mllp_ports by default: raw TCP from the first byte
INCIDENT = re.compile(r"INC-\d{8}T\d{6}Z-[0-9a-f]{8}")
PATIENTS = [make_patient(700 + n) for n in range(10)]
MESSAGES = [hl7_adt(p, control_id=f"TRN{n:05d}").encode() for n, p in enumerate(PATIENTS)]


def digest(data: bytes) -> str:
    """Compared instead of the bytes, so a failure never prints a message's contents."""
    return hashlib.sha256(data).hexdigest()


def assert_no_identifiers(data: bytes) -> None:
    for patient in PATIENTS:
        for value in patient.identifiers():
            assert value.encode() not in data, "a synthetic identifier leaked"


@dataclass
class Receivers:
    """An MLLP receiver on 2575 and one on an arbitrary port (MLLP recognised by its first
    byte), and an HTTP server, at one address."""

    mllp_port: MllpReceiver
    other_port: MllpReceiver
    http: RecordingServer
    https: RecordingServer

    def mllp(self, on_mllp_port: bool) -> MllpReceiver:
        return self.mllp_port if on_mllp_port else self.other_port

    def close(self) -> None:
        self.mllp_port.close()
        self.other_port.close()
        self.http.close()
        self.https.close()


@dataclass
class TransparentWorld:
    client: Netns
    gateway: GatewayProcess
    domestic: Receivers
    foreign: Receivers
    servers: Netns
    pki: Pki


def _build_network(request: pytest.FixtureRequest) -> tuple[Netns, Netns, Netns]:
    remove_stale()
    namespaces = []
    for role in ("client", "router", "servers"):
        try:
            netns = Netns(role)
        except NetnsUnavailable as exc:
            pytest.skip(f"cannot create network namespaces here: {exc}")
        request.addfinalizer(netns.delete)  # deleting a namespace removes its links and rules
        namespaces.append(netns)
    client, router, servers = namespaces
    veth(client, "c-eth0", router, "r-client")
    veth(router, "r-servers", servers, "s-eth0")
    client.ip("addr", "add", f"{CLIENT_IP}/24", "dev", "c-eth0")
    client.ip("route", "add", "default", "via", ROUTER_CLIENT_SIDE)
    router.ip("addr", "add", f"{ROUTER_CLIENT_SIDE}/24", "dev", "r-client")
    router.ip("addr", "add", f"{ROUTER_SERVER_SIDE}/24", "dev", "r-servers")
    servers.ip("addr", "add", f"{DOMESTIC_IP}/24", "dev", "s-eth0")
    servers.ip("addr", "add", f"{FOREIGN_IP}/24", "dev", "s-eth0")
    # mitmproxy's recipe for a transparent proxy on a router (namespace-local sysctls).
    router.run(
        "sh",
        "-c",
        "echo 1 > /proc/sys/net/ipv4/ip_forward && "
        "echo 0 > /proc/sys/net/ipv4/conf/all/send_redirects",
    )
    return client, router, servers


def build_world(
    request: pytest.FixtureRequest,
    workdir: Path,
    args: list[str],
    started: Callable[[GatewayProcess], None] = lambda gateway: None,
) -> TransparentWorld:
    """The namespaces, a gateway on the router run with ``args`` (``started`` once it is
    up, before the firewall sends it anything), the REDIRECT rule and the receivers."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"transparent-mode test needs root, ip netns and iptables: {reason}")
    client, router, servers = _build_network(request)
    pki = make_pki(workdir, [DOMESTIC_IP, FOREIGN_IP])
    config = {
        "geo": {
            "databases": [
                {
                    "path": str(build_test_mmdb(workdir / "world.mmdb", WORLD)),
                    "answers_reserved": True,
                }
            ],
            "overrides": [],
        },
        "proxy": {"upstream_ca_bundle": str(pki.ca_pem)},
    }
    gateway = GatewayProcess(
        workdir / "gateway",
        config,
        args,
        netns=router,
        listen_host=ROUTER_CLIENT_SIDE,
    )
    request.addfinalizer(gateway.stop)
    started(gateway)
    try:
        router.run(
            "iptables",
            *("-t", "nat", "-A", "PREROUTING", "-i", "r-client", "-p", "tcp"),
            *("-j", "REDIRECT", "--to-ports", str(gateway.port)),
        )
    except NetnsUnavailable as exc:
        pytest.skip(f"cannot install the iptables REDIRECT rule: {exc}")

    def receivers(address: str) -> Receivers:
        return Receivers(
            MllpReceiver(address, port=MLLP_PORT),
            MllpReceiver(address),
            RecordingServer(address),
            RecordingServer(address, tls=pki.server_context),
        )

    domestic = servers.call(lambda: receivers(DOMESTIC_IP))
    request.addfinalizer(domestic.close)
    foreign = servers.call(lambda: receivers(FOREIGN_IP))
    request.addfinalizer(foreign.close)
    return TransparentWorld(client, gateway, domestic, foreign, servers, pki)


@pytest.fixture(scope="module")
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TransparentWorld]:
    yield build_world(request, tmp_path_factory.mktemp("transparent"), ["--mode", "transparent"])


ON_PORTS = pytest.mark.parametrize(
    "on_mllp_port",
    [pytest.param(True, id="port-2575"), pytest.param(False, id="other-port-by-content")],
)


def send_mllp(
    world: TransparentWorld, receiver: MllpReceiver, messages: list[bytes]
) -> list[bytes]:
    """From the client's namespace, straight to the receiver's address (no proxy configured)."""

    async def talk() -> list[bytes]:
        sender = await MllpSender.open(receiver.port, host=receiver.host)
        acks = [await sender.exchange(m) for m in messages]
        await sender.close()
        return acks

    return world.client.call(lambda: run(talk()))


@ON_PORTS
def test_domestic_mllp_arrives_byte_identical_with_acks_back(
    world: TransparentWorld, on_mllp_port: bool
) -> None:
    receiver = world.domestic.mllp(on_mllp_port)
    before = len(receiver.data)
    decided = world.gateway.metric("phi_gateway_decisions_total", protocol="mllp", rule="domestic")

    acks = send_mllp(world, receiver, MESSAGES)

    expected = b"".join(mllp(m) for m in MESSAGES)
    assert digest(bytes(receiver.data[before:])) == digest(expected)
    assert [msa(a)[1:3] for a in acks] == [[b"AA", b"TRN%05d" % n] for n in range(len(MESSAGES))]
    # It came through the gateway on the router (the servers cannot even reach the client).
    assert receiver.peers[-1] == ROUTER_SERVER_SIDE
    after = world.gateway.metric("phi_gateway_decisions_total", protocol="mllp", rule="domestic")
    assert after == decided + 1  # one decision per domestic connection


@ON_PORTS
def test_foreign_mllp_gets_reject_acks_and_the_receiver_nothing(
    world: TransparentWorld, on_mllp_port: bool
) -> None:
    receiver = world.foreign.mllp(on_mllp_port)
    messages = MESSAGES[:3]

    acks = send_mllp(world, receiver, messages)

    assert receiver.data == b"", "bytes of a refused message reached the foreign receiver"
    for n, ack in enumerate(acks):
        assert msa(ack)[1:3] == [b"AR", b"TRN%05d" % n]
        assert b"\rERR|" in ack
    match = INCIDENT.search(acks[0].decode())
    assert match is not None, "the refusal ACK names no incident"
    row = world.gateway.audit_row(match.group(0))
    assert (row["protocol"], row["rule"], row["format"]) == ("mllp", "foreign-phi", "hl7v2")
    assert (row["country"], row["ip"], row["port"]) == ("DE", FOREIGN_IP, receiver.port)
    assert_no_identifiers(str(row).encode() + b"".join(acks) + world.gateway.output().encode())


def post_hl7(world: TransparentWorld, server: RecordingServer, body: bytes) -> httpx.Response:
    """An HTTP POST from the client's namespace straight to the server's address."""

    def post() -> httpx.Response:
        with httpx.Client(trust_env=False, timeout=10) as client:
            return client.post(
                f"http://{server.host}:{server.port}/hl7/adt",
                content=body,
                headers={"content-type": "x-application/hl7-v2+er7"},
            )

    return world.client.call(post)


def test_http_hl7_to_a_foreign_address_gets_451_and_nothing_arrives(
    world: TransparentWorld,
) -> None:
    response = post_hl7(world, world.foreign.http, MESSAGES[0])

    assert response.status_code == 451
    assert world.foreign.http.received == []
    assert msa(response.content.replace(b"\n", b"\r"))[1:3] == [b"AR", b"TRN00000"]
    row = world.gateway.audit_row(response.headers["x-phi-gateway-incident"])
    assert (row["protocol"], row["country"], row["ip"]) == ("http/1", "DE", FOREIGN_IP)
    assert_no_identifiers(response.content + str(row).encode())


def test_http_hl7_to_a_domestic_address_arrives_byte_identical(
    world: TransparentWorld,
) -> None:
    before = len(world.domestic.http.received)

    response = post_hl7(world, world.domestic.http, MESSAGES[1])

    assert response.status_code == 200
    assert response.json() == {"ok": True}
    received = world.domestic.http.received[before:]
    assert [(r.method, r.path) for r in received] == [("POST", "/hl7/adt")]
    assert digest(received[0].body) == digest(MESSAGES[1])


def post_tls(
    world: TransparentWorld, server: RecordingServer, cafile: Path, hostname: str, body: bytes
) -> tuple[str, int]:
    """HTTPS from the client's namespace straight to the server's address: the issuer of the
    certificate it was shown, and the answer's status."""

    def post() -> tuple[str, int]:
        raw = socket.create_connection((server.host, server.port), timeout=10)
        tunnel = wrap(raw, cafile, hostname)
        try:
            return tunnel.issuer, tunnel.post("/tls/adt", body)[0]
        finally:
            tunnel.close()

    return world.client.call(post)


def test_https_at_home_is_relayed_and_abroad_decrypted(world: TransparentWorld) -> None:
    """The original destination is an address; the SNI (here ``localhost``, which the servers'
    certificate names) is matched by the lists but never located."""
    gateway = world.gateway
    before = gateway.metric("phi_gateway_tls_relayed_total", reason="domestic")
    home = world.domestic.https
    assert post_tls(world, home, world.pki.ca_pem, "localhost", MESSAGES[2]) == (TEST_CA, 200)
    assert digest(home.received[-1].body) == digest(MESSAGES[2])
    assert gateway.metric("phi_gateway_tls_relayed_total", reason="domestic") == before + 1
    abroad = world.foreign.https
    assert post_tls(world, abroad, gateway.ca_pem, FOREIGN_IP, MESSAGES[3]) == (GATEWAY_CA, 451)
    assert abroad.received == []


def test_http_looking_stream_to_the_mllp_port_abroad_is_not_parsed_as_http(
    world: TransparentWorld,
) -> None:
    """On an MLLP port the stream is framed from the first byte, also in transparent mode (the
    addon's ``next_layer``): a harmless-looking HTTP request there is "not MLLP after all", so
    the connection abroad is closed. Parsed as HTTP, this body-less GET would have gone out."""
    receiver = world.foreign.mllp_port
    gateway = world.gateway
    counted = gateway.metric("phi_gateway_flows_not_inspected_total", reason="unreadable")

    async def talk() -> bool:
        sender = await MllpSender.open(receiver.port, host=receiver.host)
        await sender.write(b"GET /status HTTP/1.1\r\nHost: receiver\r\n\r\n")
        closed = await sender.closed_by_peer()
        await sender.close()
        return closed

    assert world.client.call(lambda: run(talk())), "the gateway kept the connection open"
    assert receiver.data == b""
    rows = gateway.audit_rows_where(protocol="mllp", rule="uninspectable", ip=FOREIGN_IP)
    assert len(rows) == 1 and rows[0]["port"] == MLLP_PORT
    after = gateway.metric("phi_gateway_flows_not_inspected_total", reason="unreadable")
    assert after == counted + 1


def test_dicom_associations_are_judged_in_transparent_mode(
    world: TransparentWorld, servers_dicom: dict[str, StoreScp]
) -> None:
    """DIMSE on an arbitrary port, recognised by its A-ASSOCIATE-RQ: abroad each C-STORE is
    refused with 0124H and nothing arrives; at home every data set arrives as sent."""
    patient = PATIENTS[0]
    study = [dicom.dataset(patient, instance=1), dicom.dataset(patient, instance=2)]
    abroad, home = servers_dicom["foreign"], servers_dicom["domestic"]
    refused = world.client.call(lambda: c_store(FOREIGN_IP, abroad.port, study))
    assert [r.status for r in refused] == [0x0124, 0x0124]
    assert abroad.received == []
    stored = world.client.call(lambda: c_store(DOMESTIC_IP, home.port, study))
    assert [r.status for r in stored] == [0, 0]
    expected = [digest(dicom.bare(ds, ImplicitVRLittleEndian)) for ds in study]
    assert [digest(data) for data in home.received] == expected
    rows = world.gateway.audit_rows_where(protocol="dicom", rule="foreign-phi", ip=FOREIGN_IP)
    assert len(rows) >= 2


@pytest.fixture(scope="module")
def servers_dicom(world: TransparentWorld, request: pytest.FixtureRequest) -> dict[str, StoreScp]:
    servers = world.servers
    scps = {
        "foreign": servers.call(lambda: StoreScp(FOREIGN_IP)),
        "domestic": servers.call(lambda: StoreScp(DOMESTIC_IP)),
    }
    for scp in scps.values():
        request.addfinalizer(scp.close)
    return scps
