"""The DIMSE session without a proxy, fed what pynetdicom really sends (recorded once through
a loopback tap in front of a pynetdicom receiver): PHI refused with a failure response on
the association, clean data sets forwarded as sent, domestic relayed byte for byte, any
split of the stream giving the same decisions, and hostile streams aborted abroad."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from gateway.dimse import DimseSession, starts_like_associate_rq
from gateway.dimse.pdu import (
    P_DATA_TF,
    PduFramer,
    abort,
    command_text,
    command_uint,
    pdvs,
    read_command,
)
from gateway.dimse.session import State
from gateway.engine import Gateway
from gateway.model import Action, Decision
from tests.support.dicom import CT, MR, bare, dataset, deidentified, leaked, read
from tests.support.dimse import StoreScp, Tap, associate, c_store, c_store_rq, p_data
from tests.support.mmdb import DOMESTIC_IP, FOREIGN_IP
from tests.support.patients import make_patient
from tests.unit.test_mllp_session import make_gateway

PATIENT = make_patient(1750)
IMPLICIT = "1.2.840.10008.1.2"
CLIENT = "10.0.0.9:5000"


@pytest.fixture(scope="module")
def exchange() -> Tap:
    """A real association: two images naming the patient, then a de-identified one."""
    scp = StoreScp("127.0.0.1")
    tap = Tap(("127.0.0.1", scp.port))
    studies = [dataset(PATIENT, sop_class=CT), dataset(PATIENT, sop_class=MR, instance=2)]
    statuses = c_store("127.0.0.1", tap.port, [*studies, deidentified(CT)], max_pdu=4096)
    assert [s.status for s in statuses] == [0, 0, 0]
    deadline = time.monotonic() + 5
    while len(tap.sent) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    scp.close()
    return tap


@pytest.fixture
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("dimse")
    from tests.support.mmdb import build_test_mmdb

    gw = make_gateway(build_test_mmdb(tmp / "world.mmdb"), tmp)
    yield gw
    gw.close()


def _session(gateway: Gateway, ip: str) -> DimseSession:
    destination = gateway.judge(ip, 104, [ip])
    return DimseSession(gateway, destination, CLIENT)


def _run(
    gateway: Gateway, session: DimseSession, chunks: list[bytes], replies: list[bytes]
) -> tuple[bytes, bytes, list[Decision], bool]:
    forward, reply, closed = b"", b"", False
    decisions: list[Decision] = []
    for number, chunk in enumerate(chunks):
        out = session.feed(gateway, chunk)
        forward, reply = forward + out.forward, reply + out.reply
        decisions += out.decisions
        closed = closed or out.close
        if number == 0:
            for answer in replies[:1]:  # the A-ASSOCIATE-AC
                session.observe_reply(answer)
    return forward, reply, decisions, closed


def _statuses(reply: bytes) -> list[int]:
    framer = PduFramer(1 << 20)
    found = []
    for unit in framer.feed(reply):
        assert unit.kind == P_DATA_TF
        for item in pdvs(unit.body):
            command = read_command(item.data)
            assert command_uint(command, 0x0100) == 0x8001  # C-STORE-RSP
            assert "incident INC-" in command_text(command, 0x0902)
            found.append(command_uint(command, 0x0900) or 0)
    return found


def test_recognised_by_its_associate_rq(exchange: Tap) -> None:
    assert starts_like_associate_rq(exchange.sent[0])
    assert not starts_like_associate_rq(b"\x0bMSH|^~\\&|")
    assert not starts_like_associate_rq(b"GET / HTTP/1.1\r\n")


def test_phi_is_refused_on_the_association_and_clean_data_sets_pass(
    gateway: Gateway, exchange: Tap
) -> None:
    session = _session(gateway, FOREIGN_IP)
    forward, reply, decisions, closed = _run(gateway, session, exchange.sent, exchange.replied)
    assert not closed and session.state is State.FOLLOWING
    assert [d.verdict.action for d in decisions] == [Action.BLOCK, Action.BLOCK, Action.ALLOW]
    assert _statuses(reply) == [0x0124, 0x0124]
    assert leaked(forward, PATIENT) == []
    assert forward.startswith(exchange.sent[0])  # the A-ASSOCIATE-RQ, as sent
    assert b"SUBJ-0042" in forward  # the de-identified data set went on
    assert all(d.message.protocol.value == "dicom" for d in decisions)


def test_domestic_is_relayed_byte_for_byte(gateway: Gateway, exchange: Tap) -> None:
    session = _session(gateway, DOMESTIC_IP)
    forward, reply, _, closed = _run(gateway, session, exchange.sent, exchange.replied)
    assert forward == b"".join(exchange.sent) and reply == b"" and not closed


@pytest.mark.parametrize("size", [1, 7, 333])
def test_any_split_of_the_stream_gives_the_same_decisions(
    gateway: Gateway, exchange: Tap, size: int
) -> None:
    stream = b"".join(exchange.sent)
    association = len(exchange.sent[0])
    chunks = [exchange.sent[0]] + [
        stream[at : at + size] for at in range(association, len(stream), size)
    ]
    session = _session(gateway, FOREIGN_IP)
    forward, reply, decisions, _ = _run(gateway, session, chunks, exchange.replied)
    assert [d.verdict.action for d in decisions] == [Action.BLOCK, Action.BLOCK, Action.ALLOW]
    assert _statuses(reply) == [0x0124, 0x0124] and leaked(forward, PATIENT) == []


def test_redaction_forwards_a_de_identified_data_set_in_pdus_that_fit(
    tmp_path_factory: pytest.TempPathFactory, exchange: Tap
) -> None:
    from tests.support.mmdb import build_test_mmdb

    tmp = tmp_path_factory.mktemp("dimse-redact")
    gateway = make_gateway(
        build_test_mmdb(tmp / "world.mmdb"), tmp, policy={"foreign_phi_action": "redact"}
    )
    try:
        session = _session(gateway, FOREIGN_IP)
        forward, reply, decisions, _ = _run(gateway, session, exchange.sent, exchange.replied)
    finally:
        gateway.close()
    assert [d.verdict.action for d in decisions][:2] == [Action.REDACT, Action.REDACT]
    assert reply == b"" and leaked(forward, PATIENT) == []
    limit = session.association.acceptor_max_pdu
    datasets, current = [], b""
    for unit in PduFramer(1 << 24).feed(forward):
        assert not limit or len(unit.raw) - 6 <= limit
        if unit.kind != P_DATA_TF:
            continue
        for item in pdvs(unit.body):
            if not item.command:
                current += item.data
                if item.last:
                    datasets.append(current)
                    current = b""
    assert len(datasets) == 3
    first = read(datasets[0])
    assert first.PatientIdentityRemoved == "YES" and first.SOPClassUID == CT


def test_hostile_streams_are_aborted_abroad(gateway: Gateway, exchange: Tap) -> None:
    rq = exchange.sent[0]
    cases = {
        "no association first": struct.pack(">BBI", 4, 0, 8) + b"\x00" * 8,
        "garbage after it": rq + b"\x09" + b"\x00" * 20,
        "a PDU past the limit": rq + struct.pack(">BBI", 4, 0, 0x7FFFFFFF),
        "a data set without a command": rq
        + struct.pack(">BBI", 4, 0, 10)
        + struct.pack(">IBB", 4, 1, 2)
        + b"\x08\x00\x05\x00",
        "a PDV longer than its PDU": rq
        + struct.pack(">BBI", 4, 0, 6)
        + struct.pack(">IBB", 99, 1, 3),
    }
    for name, stream in cases.items():
        session = _session(gateway, FOREIGN_IP)
        out = session.feed(gateway, stream)
        assert out.close and session.state is State.CLOSED, name
        assert out.reply.endswith(abort()), name
        assert out.decisions and out.decisions[-1].verdict.action is Action.BLOCK, name
        assert session.feed(gateway, rq).close  # and it stays closed


def test_an_explicit_vr_association_is_judged_in_its_syntax(gateway: Gateway) -> None:
    scp = StoreScp("127.0.0.1")
    tap = Tap(("127.0.0.1", scp.port))
    c_store("127.0.0.1", tap.port, [dataset(PATIENT)], syntax=ExplicitVRLittleEndian)
    time.sleep(0.2)
    scp.close()
    session = _session(gateway, FOREIGN_IP)
    _, reply, decisions, _ = _run(gateway, session, tap.sent, tap.replied)
    assert session.association.accepted and decisions[0].inspection.format == "dicom"
    assert _statuses(reply) == [0x0124]


def _store(dataset_bytes: bytes, instance: str, message: int = 1, piece: int = 1000) -> bytes:
    """A C-STORE written by hand: its command, then the data set in ``piece``-byte PDVs."""
    command = p_data(True, c_store_rq(message, CT, instance))
    chunks = [dataset_bytes[at : at + piece] for at in range(0, len(dataset_bytes), piece)]
    out = b""
    for number, chunk in enumerate(chunks):
        last = number == len(chunks) - 1
        item = struct.pack(">IBB", len(chunk) + 2, 1, 2 if last else 0) + chunk
        out += struct.pack(">BBI", 4, 0, len(item)) + item
    return command + out


def test_a_redacted_c_store_names_the_remapped_instance_in_its_command(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from tests.support.mmdb import build_test_mmdb

    tmp = tmp_path_factory.mktemp("dimse-uid")
    gateway = make_gateway(
        build_test_mmdb(tmp / "world.mmdb"), tmp, policy={"foreign_phi_action": "redact"}
    )
    try:
        session = _session(gateway, FOREIGN_IP)
        session.feed(gateway, associate(1, CT, IMPLICIT))
        session.observe_reply(associate(2, CT, IMPLICIT))
        original = dataset(PATIENT)
        out = session.feed(gateway, _store(bare(original), str(original.SOPInstanceUID)))
    finally:
        gateway.close()
    command_uid, data = "", b""
    for unit in PduFramer(1 << 24).feed(out.forward):
        for item in pdvs(unit.body):
            if item.command:
                command_uid = command_text(read_command(item.data), 0x1000)
            else:
                data += item.data
    assert command_uid == read(data).SOPInstanceUID != original.SOPInstanceUID


def test_an_association_not_followed_at_an_allowed_destination_is_relayed_whole(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from tests.support.mmdb import build_test_mmdb

    tmp = tmp_path_factory.mktemp("dimse-relay")
    gateway = make_gateway(
        build_test_mmdb(tmp / "world.mmdb"),
        tmp,
        policy={"allow_destinations": [{"cidr": f"{DOMESTIC_IP}/32", "reason": "our PACS"}]},
        limits={"max_body_bytes": 4096, "max_buffered_body_bytes": 1 << 20},
    )
    try:
        session = _session(gateway, DOMESTIC_IP)
        big, clean = dataset(PATIENT, rows=64), deidentified()
        stream = (
            associate(1, CT, IMPLICIT)
            + _store(bare(big), "2.25.7")
            + _store(bare(clean), "2.25.8", 2)
            + struct.pack(">BBI", 5, 0, 4)
            + bytes(4)
        )
        out = session.feed(gateway, stream)
    finally:
        gateway.close()
    assert out.forward == stream and not out.close and session.state is State.RELAY


def test_empty_pdvs_count_against_the_limit(gateway: Gateway) -> None:
    session = _session(gateway, FOREIGN_IP)
    session.feed(gateway, associate(1, CT, IMPLICIT))
    endless = struct.pack(">IBB", 2, 1, 1)  # a command fragment that is never the last
    pdu = struct.pack(">BBI", 4, 0, len(endless) * 10_000) + endless * 10_000
    closed = False
    for _ in range(100):
        out = session.feed(gateway, pdu)
        if out.close:
            closed = True
            break
    assert closed and out.decisions[-1].inspection.limit == "max_body_bytes"
