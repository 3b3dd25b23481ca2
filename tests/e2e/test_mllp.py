"""HL7 v2 over MLLP through the real gateway: an interface engine's sender on one side, a
receiver on loopback "at home" or "abroad" on the other."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import trusting
from tests.support.gateway_process import GatewayProcess
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
