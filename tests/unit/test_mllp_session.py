"""One MLLP connection judged frame by frame, without a proxy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hl7apy.parser import parse_message

from gateway.config import parse_config
from gateway.engine import Gateway
from gateway.mllp import MllpSession, frame
from gateway.mllp.session import State
from tests.support.mmdb import DOMESTIC_IP, FOREIGN_IP, build_test_mmdb
from tests.support.patients import hl7_adt, make_patient

PATIENT = make_patient(31)
ADT = hl7_adt(PATIENT, control_id="CTL-31").encode()
NO_PHI = b"MSH|^~\\&|LAB|H|X|Y|20240101||ORU^R01|CTL-9|P|2.5\rOBX|1|NM|8867-4||72|/min\r"


@pytest.fixture(scope="module")
def mmdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_mmdb(tmp_path_factory.mktemp("geo") / "world.mmdb")


def make_gateway(mmdb: Path, tmp: Path, **sections: dict[str, Any]) -> Gateway:
    data: dict[str, Any] = {
        "geo": {"databases": [{"path": str(mmdb), "answers_reserved": True}]},
        "audit": {"database": str(tmp / "audit.db")},
        **sections,
    }
    return Gateway.from_config(parse_config(data))


@pytest.fixture
def gateway(mmdb: Path, tmp_path: Path) -> Iterator[Gateway]:
    gw = make_gateway(mmdb, tmp_path)
    yield gw
    gw.close()


def session(gateway: Gateway, ip: str, first: bytes, port: int = 2575) -> MllpSession:
    return MllpSession(gateway, gateway.judge(ip, port, [ip]), "10.0.0.9:5000", first)


def test_domestic_is_relayed_as_sent(gateway: Gateway) -> None:
    stream = frame(ADT) + frame(ADT)[:10]
    s = session(gateway, DOMESTIC_IP, stream)
    assert s.state is State.RELAY
    out = s.feed(gateway, stream)
    assert (out.forward, out.reply, out.close) == (stream, b"", False)


def test_foreign_phi_is_refused_with_an_ack_and_nothing_forwarded(gateway: Gateway) -> None:
    s = session(gateway, FOREIGN_IP, frame(ADT))
    out = s.feed(gateway, frame(ADT) + frame(NO_PHI))
    assert out.forward == frame(NO_PHI)  # the clean message still goes
    assert not out.close
    assert out.reply.startswith(b"\x0b") and out.reply.endswith(b"\x1c\r")
    ack = parse_message(out.reply[1:-2].decode(), find_groups=False)
    assert ack.msa.msa_1.to_er7() == "AR"
    assert ack.msa.msa_2.to_er7() == "CTL-31"
    incident = out.decisions[0].incident_id
    assert incident and incident in ack.err.to_er7()
    for value in PATIENT.identifiers():
        assert value.encode() not in out.reply
    assert [d.message.protocol.value for d in out.decisions] == ["mllp", "mllp"]


@pytest.mark.parametrize("code", ["AE", "CR"])
def test_ack_code_is_configurable(mmdb: Path, tmp_path: Path, code: str) -> None:
    gw = make_gateway(mmdb, tmp_path, policy={"mllp_ack_code": code})
    try:
        out = session(gw, FOREIGN_IP, frame(ADT)).feed(gw, frame(ADT))
        ack = parse_message(out.reply[1:-2].decode(), find_groups=False)
        assert ack.msa.msa_1.to_er7() == code
    finally:
        gw.close()


def test_redact_forwards_a_reframed_redacted_message(mmdb: Path, tmp_path: Path) -> None:
    gw = make_gateway(mmdb, tmp_path, policy={"foreign_phi_action": "redact"})
    try:
        out = session(gw, FOREIGN_IP, frame(ADT)).feed(gw, frame(ADT))
        assert out.reply == b""
        assert out.forward.startswith(b"\x0bMSH|") and out.forward.endswith(b"\x1c\r")
        assert out.forward.count(b"\x1c\r") == 1
        for value in PATIENT.identifiers():
            assert value.encode() not in out.forward
        assert b"CTL-31" in out.forward  # MSH-10 kept: the receiver can ACK
    finally:
        gw.close()


def test_not_mllp_abroad_closes(gateway: Gateway) -> None:
    s = session(gateway, FOREIGN_IP, b"MSH|^~\\&|no envelope")
    out = s.feed(gateway, b"MSH|^~\\&|no envelope")
    assert (out.forward, out.close) == (b"", True)
    assert out.decisions[0].verdict.rule == "uninspectable"
    assert out.decisions[0].message.protocol.value == "tcp"
    assert s.feed(gateway, frame(NO_PHI)).close  # stays closed


def test_garbage_mid_stream_abroad_closes_after_the_good_frames(gateway: Gateway) -> None:
    s = session(gateway, FOREIGN_IP, frame(NO_PHI))
    out = s.feed(gateway, frame(NO_PHI) + b"junk" + frame(NO_PHI))
    assert out.forward == frame(NO_PHI)
    assert out.close
    assert out.decisions[-1].message.protocol.value == "mllp"


def test_oversized_frame_abroad_closes(mmdb: Path, tmp_path: Path) -> None:
    gw = make_gateway(mmdb, tmp_path, limits={"max_mllp_frame_bytes": 1024})
    try:
        s = session(gw, FOREIGN_IP, b"\x0b")
        out = s.feed(gw, b"\x0b" + b"MSH|" + b"x" * 2000)
        assert (out.forward, out.close) == (b"", True)
        assert out.decisions[0].inspection.limit == "max_mllp_frame_bytes"
    finally:
        gw.close()


def test_listed_domestic_stream_that_is_not_mllp_is_relayed(mmdb: Path, tmp_path: Path) -> None:
    """A deny-listed destination is inspected; a stream that turns out not to be MLLP there
    follows the policy (deny-list: closed), an allow-listed one is relayed from then on."""
    allow = {"allow_destinations": [{"cidr": f"{FOREIGN_IP}/32", "reason": "BAA"}]}
    gw = make_gateway(mmdb, tmp_path, policy=allow)
    try:
        s = session(gw, FOREIGN_IP, frame(NO_PHI))
        out = s.feed(gw, frame(NO_PHI) + b"junk")
        assert (out.forward, out.close) == (frame(NO_PHI) + b"junk", False)
        assert s.feed(gw, b"more").forward == b"more"
    finally:
        gw.close()


def test_monitor_mode_forwards_and_records(mmdb: Path, tmp_path: Path) -> None:
    gw = make_gateway(mmdb, tmp_path, policy={"mode": "monitor"})
    try:
        out = session(gw, FOREIGN_IP, frame(ADT)).feed(gw, frame(ADT))
        assert (out.forward, out.reply) == (frame(ADT), b"")
        assert out.decisions[0].incident_id
    finally:
        gw.close()
