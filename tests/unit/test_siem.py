"""SIEM streaming: the formats (CEF, OCSF checked against the pinned class definition,
HEC, JSON), the trail reader and cursor, and delivery that loses nothing through outages."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest

from gateway import entry_expiry, metrics
from gateway.audit import AuditEvent, AuditStore
from gateway.audit.event import access_event
from gateway.audit.sqlite_backend import SqliteBackend
from gateway.audit.store import ChainSettings
from gateway.config import FileOutput, SyslogOutput, parse_config
from gateway.errors import ConfigError
from gateway.siem import formats
from gateway.siem.forwarder import Forwarder
from gateway.siem.trail import Cursor, TrailReader
from gateway.siem.transport import DeliveryError, SyslogTransport, Transport
from tests.support.ocsf.check import problems
from tests.support.patients import fhir_patient_json, make_patient
from tests.unit.test_audit import decision_for
from tests.unit.test_audit_chain import SECRET


def _trail(
    path: Path, decisions: int = 3, chain: str = "gw-a", *, entry_expired: bool = False
) -> AuditStore:
    store = AuditStore(path, ChainSettings(instance_id=chain, secret=SECRET))
    store.start()
    patient = make_patient(7)
    body = fhir_patient_json(patient)
    for _ in range(decisions):
        store.append(AuditEvent.from_decision(decision_for(body), chain, "v1"))
    store.append(
        access_event(
            instance_id=chain,
            policy_version="v1",
            client="127.0.0.1:4000",
            method="GET",
            path="/api/v1/incidents",
            status=200,
            token="alice",
            role="auditor",
        )
    )
    if entry_expired:
        store.append(
            entry_expiry.expiry_event(
                instance_id=chain,
                policy_version="v1",
                key="allow_destinations[0]",
                rule=parse_config(
                    {"policy": {"allow_destinations": [EXPIRED_ENTRY]}}
                ).policy.allow_destinations[0],
            )
        )
    store.flush()
    return store


EXPIRED_ENTRY = {
    "host": "coder.example",
    "reason": "BAA 2026-14",
    "expires": "2026-01-01",
    "ticket": "CHG-1",
}


def _rows(path: Path) -> list[dict[str, object]]:
    reader = TrailReader(SqliteBackend(path))
    rows = [row for chain in reader.chains() for row in reader.after(chain, 0, 1000)]
    reader.close()
    return rows


def _workflow_row(row: dict[str, object]) -> dict[str, object]:
    detail = {"incident_id": row["incident_id"], "from": "new", "to": "resolved"}
    return row | {
        "kind": "workflow",
        "incident_id": "WF-1",
        "action": "workflow",
        "detail": orjson.dumps(detail | {"comment": "patient Jane Roe called back"}).decode(),
    }


def test_every_event_is_a_valid_ocsf_event_of_its_class(tmp_path: Path) -> None:
    _trail(tmp_path / "a.db", entry_expired=True).close()
    rows = _rows(tmp_path / "a.db")
    assert len(rows) >= 4
    for row in [*rows, _workflow_row(rows[0])]:
        event = formats.ocsf(row)
        assert problems(event) == [], (row["kind"], problems(event))
    finding = formats.ocsf(rows[0])
    assert finding["class_uid"] == 2006 and finding["type_uid"] == 200601
    assert finding["metadata"]["uid"] == rows[0]["incident_id"]
    assert finding["dst_endpoint"] == {
        "name": "coder.example",
        "hostname": "coder.example",
        "ip": "203.0.113.7",
        "port": 443,
        "location": {"country": "IN"},
    }
    assert finding["src_endpoint"] == {"name": "10.1.2.3", "ip": "10.1.2.3", "port": 5555}
    assert finding["disposition"] == "Blocked" and finding["severity"] == "High"
    access = next(r for r in rows if r["kind"] == "access")
    assert formats.ocsf(access)["class_uid"] == 0
    expired = next(r for r in rows if r["kind"] == "entry-expiry")
    assert formats.ocsf(expired)["class_uid"] == 0
    assert "|policy entry expired|" in formats.cef(expired)


def test_the_checker_catches_a_broken_event(tmp_path: Path) -> None:
    _trail(tmp_path / "a.db", decisions=1).close()
    event = formats.ocsf(_rows(tmp_path / "a.db")[0])
    broken = dict(event, severity_id=42, colour="red")
    del broken["finding_info"]
    found = problems(broken)
    assert any("severity_id" in p for p in found)
    assert any("colour" in p for p in found)
    assert any("finding_info: required" in p for p in found)


def test_no_value_and_no_workflow_comment_reaches_any_format(tmp_path: Path) -> None:
    _trail(tmp_path / "a.db", decisions=1).close()
    decision = _rows(tmp_path / "a.db")[0]
    assert orjson.loads(str(decision["categories"]))  # the patient's identifiers were found
    row = _workflow_row(decision)
    values = [v.encode() for v in make_patient(7).all_identifiers() if len(v) > 3]
    for name in ("cef", "ocsf", "json", "splunk-hec"):
        for encoded in (formats.encode(name)(decision), formats.encode(name)(row)):
            assert not [v for v in values if v in encoded], name
        text = formats.encode(name)(row)
        assert b"Jane" not in text and b"called back" not in text, name
    ocsf = formats.ocsf(row)
    assert ocsf["activity_id"] == 3 and ocsf["status"] == "Resolved"
    assert "new->resolved" in formats.cef(row)


def test_cef_escapes_and_names_the_event(tmp_path: Path) -> None:
    _trail(tmp_path / "a.db", decisions=1).close()
    row = _rows(tmp_path / "a.db")[0] | {"reason": "a=b | c\\d\nx"}
    text = formats.cef(row)
    header = text.split("|")
    assert header[:4] == ["CEF:0", "phi-gateway", "PHI egress gateway", formats.PRODUCT_VERSION]
    assert header[4] == "decision:block:foreign-phi" and header[6] == "8"
    assert "reason=a\\=b | c\\\\d\\nx" in text
    assert f"externalId={row['incident_id']}" in text
    assert "\n" not in text


def test_hec_events_carry_the_row_and_its_time(tmp_path: Path) -> None:
    _trail(tmp_path / "a.db", decisions=1).close()
    row = _rows(tmp_path / "a.db")[0]
    event = formats.hec(row)
    assert event["sourcetype"] == "phi_gateway:audit" and event["host"] == "gw-a"
    assert event["event"]["incident_id"] == row["incident_id"]
    assert event["event"]["categories"] == orjson.loads(str(row["categories"]))
    assert abs(event["time"] - time.time()) < 60


class _Recording(Transport):
    def __init__(self, fail_first: int = 0, confirm: float = 0.0) -> None:
        self.got: list[str] = []
        self.fail_first = fail_first
        self.confirm_seconds = confirm
        self.up = True

    def send(self, messages: Sequence[tuple[int, str, bytes]]) -> None:
        if self.fail_first > 0:
            self.fail_first -= 1
            raise DeliveryError("receiver down")
        self.got += [eid for _, eid, _ in messages]

    def alive(self) -> bool:
        return self.up

    def close(self) -> None:
        pass


def _output(tmp_path: Path, **options: object) -> FileOutput:
    return FileOutput(type="file", name="out", path=tmp_path / "x.jsonl", **options)  # type: ignore[arg-type]


def test_delivery_resumes_from_the_cursor_after_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    store = _trail(db, decisions=5)
    cursor = tmp_path / "out.cursor"
    first = _Recording()
    forwarder = Forwarder(_output(tmp_path, batch_events=2), store.backend, cursor, transport=first)
    forwarder.open()
    while forwarder.step():
        pass
    assert len(first.got) == 6 and len(set(first.got)) == 6
    assert Cursor(cursor).path.exists()
    for _ in range(2):
        store.append(AuditEvent.from_decision(decision_for(b"{}"), "gw-a", "v1"))
    store.flush()
    second = _Recording()
    again = Forwarder(_output(tmp_path), store.backend, cursor, transport=second)
    again.open()
    while again.step():
        pass
    assert len(second.got) == 2 and not set(second.got) & set(first.got)
    store.close()


def test_a_new_output_may_start_at_the_end_of_the_trail(tmp_path: Path) -> None:
    store = _trail(tmp_path / "a.db", decisions=3)
    got = _Recording()
    forwarder = Forwarder(
        _output(tmp_path, start_at="end"), store.backend, tmp_path / "c", transport=got
    )
    forwarder.open()
    assert not forwarder.step() and got.got == []
    store.append(AuditEvent.from_decision(decision_for(b"{}"), "gw-a", "v1"))
    store.flush()
    assert forwarder.step() and len(got.got) == 1
    store.close()


def test_every_chain_is_delivered_in_its_order(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    _trail(db, decisions=2, chain="gw-a").close()
    _trail(db, decisions=3, chain="gw-a-w1").close()
    got = _Recording()
    forwarder = Forwarder(_output(tmp_path), SqliteBackend(db), tmp_path / "c", transport=got)
    forwarder.open()
    while forwarder.step():
        pass
    rows = _rows(db)
    assert sorted(got.got) == sorted(str(r["incident_id"]) for r in rows)
    for chain in ("gw-a", "gw-a-w1"):
        order = [str(r["incident_id"]) for r in rows if r["instance_id"] == chain]
        assert [e for e in got.got if e in order] == order
    assert Cursor(tmp_path / "c").path.read_bytes().count(b"gw-a") == 2


def test_failed_sends_are_retried_and_nothing_is_lost(tmp_path: Path) -> None:
    store = _trail(tmp_path / "a.db", decisions=4)
    got = _Recording(fail_first=3)
    forwarder = Forwarder(
        _output(tmp_path, batch_events=2, retry_max_seconds=1),
        store.backend,
        tmp_path / "c",
        poll_seconds=0.05,
        transport=got,
    )
    forwarder.open()
    failures = metrics.SIEM_FAILURES.labels("out")._value.get()
    forwarder.start()
    deadline = time.monotonic() + 15
    while len(set(got.got)) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    forwarder.stop()
    store.close()
    assert len(set(got.got)) == 5
    assert metrics.SIEM_FAILURES.labels("out")._value.get() - failures == 3


def test_an_unconfirmed_batch_is_sent_again_when_the_connection_closes(tmp_path: Path) -> None:
    store = _trail(tmp_path / "a.db", decisions=2)
    got = _Recording(confirm=60)
    forwarder = Forwarder(_output(tmp_path), store.backend, tmp_path / "c", transport=got)
    forwarder.open()
    assert forwarder.step()
    assert not Cursor(tmp_path / "c").path.exists()  # sent, not confirmed
    got.up = False
    with pytest.raises(DeliveryError):
        forwarder.step()
    forwarder._failed("closed")
    got.up, got.confirm_seconds = True, 0
    assert forwarder.step()
    assert len(got.got) == 6 and len(set(got.got)) == 3
    store.close()


def test_a_damaged_cursor_is_refused_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "c"
    path.write_bytes(b'{"chains": {"gw-a": "seven"}}')
    with pytest.raises(ValueError, match="not a SIEM cursor"):
        Cursor(path).load()


def test_syslog_frames_are_octet_counted_rfc5424(tmp_path: Path) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    received = bytearray()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while chunk := conn.recv(65536):
                received.extend(chunk)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    output = SyslogOutput(type="syslog", address=f"127.0.0.1:{port}", format="cef")
    sender = SyslogTransport(output)
    sender.send([(4, "INC-1", b"CEF:0|a"), (6, "API-2", "caf\u00e9".encode())])
    assert sender.alive()
    sender.close()
    thread.join(5)
    server.close()
    first_len, _, rest = bytes(received).partition(b" ")
    first, second = rest[: int(first_len)], rest[int(first_len) :]
    assert first.startswith(b"<108>1 ") and first.endswith(b'[phi@32473 id="INC-1"] CEF:0|a')
    length, _, message = second.partition(b" ")
    assert int(length) == len(message) and message.startswith(b"<110>1 ")


def test_a_receiver_that_closes_is_noticed_before_its_batch_is_confirmed() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    sender = SyslogTransport(SyslogOutput(type="syslog", address=f"127.0.0.1:{port}"))
    sender.send([(4, "INC-1", b"x")])
    conn, _ = server.accept()
    conn.close()
    server.close()
    time.sleep(0.1)
    assert not sender.alive()


def test_outputs_are_checked_and_named_in_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "siem": {
                    "outputs": [
                        {"type": "syslog", "address": "x:1", "tls": True, "transport": "udp"}
                    ]
                }
            }
        )
    assert "siem.outputs[0].syslog" in str(caught.value)
    with pytest.raises(ConfigError, match="unique"):
        parse_config(
            {
                "siem": {
                    "outputs": [
                        {"type": "file", "path": "a", "name": "x"},
                        {"type": "file", "path": "b", "name": "x"},
                    ]
                }
            }
        )
    config = parse_config({"siem": {"outputs": [{"type": "http", "url": "https://h:8088/x"}]}})
    assert config.siem.outputs[0].name == "http-1"
    assert dataclasses.is_dataclass(AuditEvent)
