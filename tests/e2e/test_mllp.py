"""HL7 v2 over MLLP through the real gateway: an interface engine's sender on one side, a
receiver on loopback "at home" or "abroad" on the other."""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Upstreams, gateway_config, trusting
from tests.support.gateway_process import GatewayProcess, free_port
from tests.support.mllp import MllpReceiver, MllpSender, mllp, msa, run
from tests.support.mmdb import DOMESTIC_IP, FOREIGN_IP
from tests.support.patients import hl7_adt, make_patient
from tests.support.upstream import Pki

pytestmark = pytest.mark.e2e
PATIENTS = [make_patient(400 + n) for n in range(20)]
INCIDENT = re.compile(r"INC-\d{8}T\d{6}Z-[0-9a-f]{8}")
MESSAGES = [hl7_adt(p, control_id=f"CTL{n:05d}").encode() for n, p in enumerate(PATIENTS)]


@pytest.fixture(scope="module")
def home() -> Iterator[MllpReceiver]:
    receiver = MllpReceiver(DOMESTIC_IP)
    yield receiver
    receiver.close()


@pytest.fixture
def abroad() -> Iterator[MllpReceiver]:
    receiver = MllpReceiver(FOREIGN_IP)
    yield receiver
    receiver.close()


def assert_no_phi(data: bytes) -> None:
    for patient in PATIENTS:
        for value in patient.identifiers():
            assert value.encode() not in data, "a synthetic identifier reached the receiver"


def test_domestic_flow_is_byte_identical_with_acks_back(
    gateway: GatewayProcess, home: MllpReceiver
) -> None:
    before = len(home.data)

    async def talk() -> list[bytes]:
        sender = await MllpSender.open(gateway.port, tunnel_to=(DOMESTIC_IP, home.port))
        acks = [await sender.exchange(m) for m in MESSAGES]
        await sender.close()
        return acks

    acks = run(talk())
    assert bytes(home.data[before:]) == b"".join(mllp(m) for m in MESSAGES)
    assert [msa(a)[1:3] for a in acks] == [[b"AA", b"CTL%05d" % n] for n in range(20)]


def test_foreign_flow_gets_reject_acks_and_the_receiver_nothing(
    gateway: GatewayProcess, abroad: MllpReceiver
) -> None:
    async def talk() -> list[bytes]:
        sender = await MllpSender.open(gateway.port, tunnel_to=(FOREIGN_IP, abroad.port))
        acks = [await sender.exchange(m) for m in MESSAGES[:5]]
        await sender.close()
        return acks

    acks = run(talk())
    assert abroad.data == b""
    for n, ack in enumerate(acks):
        fields = msa(ack)
        assert fields[1:3] == [b"AR", b"CTL%05d" % n]
        assert b"\rERR|" in ack and b"INC-" in ack
    incident = INCIDENT.search(acks[0].decode()).group(0)  # type: ignore[union-attr]
    row = gateway.audit_row(incident)
    assert (row["protocol"], row["rule"], row["format"]) == ("mllp", "foreign-phi", "hl7v2")
    assert row["country"] == "IN"
    assert_no_phi(str(row).encode() + b"".join(acks) + gateway.output().encode())
    assert (
        gateway.metric("phi_gateway_decisions_total", protocol="mllp", action="block", country="IN")
        >= 5
    )


@pytest.mark.parametrize(
    "cuts",
    [
        pytest.param([1], id="after-start-byte"),
        pytest.param([-2], id="inside-end-marker"),
        pytest.param([-1], id="before-last-cr"),
        pytest.param(list(range(7, 2000, 97)), id="every-97-bytes"),
    ],
)
def test_split_frames_are_reassembled(
    gateway: GatewayProcess, home: MllpReceiver, abroad: MllpReceiver, cuts: list[int]
) -> None:
    """Two messages in one stream, cut into pieces sent with pauses, both ways."""
    clean = b"MSH|^~\\&|LAB|H|X|Y|20240101||ORU^R01|CLEAN1|P|2.5\rOBX|1|NM|8867-4||72|/min\r"
    stream = mllp(MESSAGES[0]) + mllp(clean)
    points = sorted({c % len(stream) for c in cuts} - {0})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]

    async def talk(receiver: MllpReceiver) -> list[bytes]:
        sender = await MllpSender.open(gateway.port, tunnel_to=(receiver.host, receiver.port))
        for piece in pieces:
            await sender.write(piece)
            await asyncio.sleep(0.01)
        replies = [await sender.read_frame(), await sender.read_frame()]
        await sender.close()
        return replies

    before = len(home.data)
    replies = run(talk(home))
    assert bytes(home.data[before:]) == stream
    assert [msa(r)[1] for r in replies] == [b"AA", b"AA"]
    replies = run(talk(abroad))
    # The PHI message is refused, the clean one arrives whole: the order of replies is the
    # gateway's ACK (sent at once) and the receiver's ACK.
    assert sorted(msa(r)[1:3] for r in replies) == [[b"AA", b"CLEAN1"], [b"AR", b"CTL00000"]]
    assert bytes(abroad.data) == mllp(clean)


def test_mllp_inside_tls_is_decrypted_and_judged(gateway: GatewayProcess, pki: Pki) -> None:
    tls_abroad = MllpReceiver(FOREIGN_IP, tls=pki.server_context)
    try:

        async def talk() -> tuple[bytes, bytes]:
            sender = await MllpSender.open(
                gateway.port, tunnel_to=(FOREIGN_IP, tls_abroad.port), tls=trusting(gateway)
            )
            refused = await sender.exchange(MESSAGES[1])
            clean = b"MSH|^~\\&|LAB|H|X|Y|20240101||ORU^R01|TLS1|P|2.5\rOBX|1|NM|x||1\r"
            passed = await sender.exchange(clean)
            await sender.close()
            return refused, passed

        refused, passed = run(talk())
        assert msa(refused)[1:3] == [b"AR", b"CTL00001"]
        assert msa(passed)[1:3] == [b"AA", b"TLS1"]
        assert b"PID" not in tls_abroad.data and len(tls_abroad.frames) == 1
    finally:
        tls_abroad.close()


def test_a_stream_that_is_not_mllp_abroad_is_closed_and_counted(
    gateway: GatewayProcess, abroad: MllpReceiver
) -> None:
    before = gateway.metric("phi_gateway_flows_not_inspected_total", reason="raw-tcp")

    async def talk() -> bool:
        sender = await MllpSender.open(gateway.port, tunnel_to=(FOREIGN_IP, abroad.port))
        await sender.write(b"\x00\x01binary protocol " + MESSAGES[2])
        closed = await sender.closed_by_peer()
        await sender.close()
        return closed

    assert run(talk())
    time.sleep(0.1)
    assert abroad.data == b""
    after = gateway.metric("phi_gateway_flows_not_inspected_total", reason="raw-tcp")
    assert after == before + 1


# -- reverse:tcp listeners (one per remote interface), redaction, size, long-lived flows -----
class Site:
    """A gateway with an explicit proxy and two ``reverse:tcp`` listeners, one per remote
    interface, under a redact policy; MLLP ports and TLS passthrough configured."""

    def __init__(self, workdir: Path, test_mmdb: Path, pki: Pki, upstreams: Upstreams) -> None:
        self.abroad = MllpReceiver(FOREIGN_IP)
        self.home = MllpReceiver(DOMESTIC_IP)
        self.abroad_port_2575 = MllpReceiver(FOREIGN_IP)  # "2575": a configured MLLP port
        self.home_port_2575 = MllpReceiver(DOMESTIC_IP)
        self.abroad_listener, self.home_listener = free_port(), free_port()
        config = gateway_config(
            test_mmdb,
            pki,
            policy={"foreign_phi_action": "redact"},
            proxy={
                "mllp_ports": [self.abroad_port_2575.port, self.home_port_2575.port],
                "tls_passthrough": [
                    {"cidr": f"{ip}/32", "port": server.port, "reason": "certificate pinned"}
                    for ip, server in (
                        (DOMESTIC_IP, upstreams.domestic_tls),
                        (FOREIGN_IP, upstreams.foreign_tls),
                    )
                ],
            },
        )
        modes = [
            "regular",
            f"reverse:tcp://{FOREIGN_IP}:{self.abroad.port}@{self.abroad_listener}",
            f"reverse:tcp://{DOMESTIC_IP}:{self.home.port}@{self.home_listener}",
        ]
        self.gateway = GatewayProcess(
            workdir, config, [arg for mode in modes for arg in ("--mode", mode)]
        )

    def close(self) -> None:
        self.gateway.stop()
        for receiver in (self.abroad, self.home, self.abroad_port_2575, self.home_port_2575):
            receiver.close()


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, test_mmdb: Path, pki: Pki, upstreams: Upstreams
) -> Iterator[Site]:
    s = Site(tmp_path_factory.mktemp("mllp-site"), test_mmdb, pki, upstreams)
    yield s
    s.close()


def test_reverse_listener_delivers_redacted_frames(site: Site) -> None:
    async def talk() -> list[bytes]:
        sender = await MllpSender.open(site.abroad_listener)
        acks = [await sender.exchange(m) for m in MESSAGES[:5]]
        await sender.close()
        return acks

    before = len(site.abroad.frames)
    acks = run(talk())
    # Redacted messages keep MSH-10: the receiver's own ACKs come back to the sender.
    assert [msa(a)[1:3] for a in acks] == [[b"AA", b"CTL%05d" % n] for n in range(5)]
    frames = site.abroad.frames[before:]
    assert len(frames) == 5
    assert all(f.startswith(b"MSH|") and b"\rPID|" in f for f in frames)
    assert_no_phi(bytes(site.abroad.data))
    assert site.gateway.metric("phi_gateway_redactions_total", format="hl7v2") >= 5


def test_reverse_listener_home_is_byte_identical(site: Site) -> None:
    async def talk() -> list[bytes]:
        sender = await MllpSender.open(site.home_listener)
        acks = [await sender.exchange(m) for m in MESSAGES]
        await sender.close()
        return acks

    before = len(site.home.data)
    acks = run(talk())
    assert bytes(site.home.data[before:]) == b"".join(mllp(m) for m in MESSAGES)
    assert all(msa(a)[1] == b"AA" for a in acks)


def big_message(size: int) -> bytes:
    """An ORU with PHI in PID and ~``size`` bytes of observations."""
    head = hl7_adt(PATIENTS[3], control_id="BIG1").encode()
    line = b"OBX|1|TX|11502-2^Lab report^LN||" + b"Result within normal limits. " * 8 + b"\r"
    return head + line * (size // len(line) + 1)


def test_one_megabyte_message(site: Site) -> None:
    message = big_message(1 << 20)
    assert len(message) > 1 << 20

    async def talk(port: int) -> bytes:
        sender = await MllpSender.open(port)
        ack = await sender.exchange(message)
        await sender.close()
        return ack

    before = len(site.home.data)
    assert msa(run(talk(site.home_listener)))[1:3] == [b"AA", b"BIG1"]
    assert bytes(site.home.data[before:]) == mllp(message)
    before = len(site.abroad.data)
    assert msa(run(talk(site.abroad_listener)))[1:3] == [b"AA", b"BIG1"]
    delivered = bytes(site.abroad.data[before:])
    assert delivered.startswith(b"\x0bMSH|") and delivered.endswith(b"\x1c\r")
    assert len(delivered) > 1 << 20
    assert_no_phi(delivered)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_thousand_messages_on_one_connection_keep_memory_flat(site: Site) -> None:
    """Every message redacted and audited; the gateway's RSS after 1,000 more messages stays
    within a small bound of what it was after a warm-up on the same connection."""
    pid = site.gateway.proc.pid

    async def talk() -> tuple[int, int, float]:
        sender = await MllpSender.open(site.abroad_listener)

        async def batch(count: int) -> None:
            for start in range(0, count, 50):
                n = min(50, count - start)
                await sender.write(b"".join(mllp(MESSAGES[i % 20]) for i in range(n)))
                for _ in range(n):
                    assert msa(await sender.read_frame())[1] == b"AA"

        await batch(200)
        warm = rss_bytes(pid)
        started = time.perf_counter()
        await batch(1000)
        seconds = time.perf_counter() - started
        after = rss_bytes(pid)
        await sender.close()
        return warm, after, seconds

    warm, after, seconds = run(talk())
    growth = after - warm
    assert growth < 8 * 1024 * 1024, f"RSS grew {growth / 1e6:.1f} MB over 1,000 messages"
    print(
        f"\nMLLP 1,000 redacted messages: {seconds:.2f} s, RSS {warm / 1e6:.1f} -> "
        f"{after / 1e6:.1f} MB"
    )


def test_configured_mllp_port_is_never_parsed_as_http(site: Site) -> None:
    """An HTTP-looking stream to an MLLP port is not MLLP: closed abroad, relayed at home."""
    request = b"GET /harmless HTTP/1.1\r\nHost: x\r\n\r\n"

    async def talk(receiver: MllpReceiver) -> bool:
        sender = await MllpSender.open(site.gateway.port, tunnel_to=(receiver.host, receiver.port))
        await sender.write(request)
        closed = await sender.closed_by_peer(timeout=1)
        await sender.close()
        return closed

    assert run(talk(site.abroad_port_2575))
    time.sleep(0.1)
    assert site.abroad_port_2575.data == b""
    assert not run(talk(site.home_port_2575))
    assert bytes(site.home_port_2575.data) == request


def test_tls_passthrough_is_judged_by_destination(
    site: Site, pki: Pki, upstreams: Upstreams
) -> None:
    gw = site.gateway
    # The client trusts only the servers' own CA: a handshake that succeeds was not intercepted.
    with httpx.Client(
        proxy=gw.proxy_url, verify=ssl.create_default_context(cafile=str(pki.ca_pem)), timeout=10
    ) as c:
        assert (
            c.post(f"{upstreams.domestic_tls.url}/passthrough", content=MESSAGES[0]).status_code
            == 200
        )
        with pytest.raises(httpx.HTTPError):
            c.post(f"{upstreams.foreign_tls.url}/passthrough-abroad", content=b"hello")
    assert "/passthrough-abroad" not in upstreams.foreign_tls.paths()
    assert (
        gw.metric(
            "phi_gateway_decisions_total", protocol="tls-passthrough", rule="domestic", country="US"
        )
        >= 1
    )
    assert (
        gw.metric(
            "phi_gateway_decisions_total",
            protocol="tls-passthrough",
            rule="uninspectable",
            country="IN",
        )
        >= 1
    )
    assert gw.metric("phi_gateway_flows_not_inspected_total", reason="tls-passthrough") >= 1
