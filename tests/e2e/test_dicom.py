"""DICOM through the real gateway: files by HTTP upload and STOW-RS, and DIMSE C-STORE from
pynetdicom (an independent sender and receiver) through ``reverse:tcp`` listeners. Abroad,
nothing identifying reaches the receiver: a C-STORE is refused with a failure status the
sender reports, an upload with a STOW-RS style failure; de-identified studies arrive; at
home everything arrives byte for byte; in redact mode the receiver gets a valid,
de-identified object (read back by pydicom)."""

from __future__ import annotations

import re
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from gateway.dimse.pdu import command_uint, pdvs, read_command
from tests.e2e.conftest import Upstreams, gateway_config
from tests.support.dicom import CT, MR, SC, US, bare, dataset, deidentified, leaked, part10, read
from tests.support.dimse import StoreScp, associate, c_store, c_store_rq, p_data
from tests.support.gateway_process import GatewayProcess, free_port
from tests.support.mmdb import DOMESTIC_IP, FOREIGN_IP
from tests.support.patients import make_patient
from tests.support.upstream import Pki

pytestmark = pytest.mark.e2e
PATIENTS = [make_patient(1700 + n) for n in range(4)]
INCIDENT = re.compile(r"INC-\d{8}T\d{6}Z-[0-9a-f]{8}")
REFUSED = 0x0124


def _study(n: int = 0) -> list[Dataset]:
    patient = PATIENTS[n]
    return [
        dataset(patient, sop_class=CT, instance=1),
        dataset(patient, sop_class=MR, instance=2, frames=3),
        dataset(patient, sop_class=US, instance=3, sequences=False),
        dataset(patient, sop_class=SC, instance=4, rows=64),
    ]


def _no_phi(data: bytes) -> None:
    for patient in PATIENTS:
        assert leaked(data, patient) == [], "a synthetic identifier reached the receiver"


class Site:
    """A gateway with ``reverse:tcp`` listeners in front of DICOM receivers abroad (one on a
    port only its A-ASSOCIATE-RQ reveals, one on a configured DICOM port) and at home."""

    def __init__(self, workdir: Path, test_mmdb: Path, pki: Pki, action: str) -> None:
        self.abroad = StoreScp(FOREIGN_IP)
        self.abroad_configured = StoreScp(FOREIGN_IP)
        self.home = StoreScp(DOMESTIC_IP)
        self.listeners = {name: free_port() for name in ("abroad", "configured", "home")}
        config = gateway_config(
            test_mmdb,
            pki,
            policy={"foreign_phi_action": action},
            proxy={"dicom_ports": [self.abroad_configured.port]},
        )
        targets = {
            "abroad": (FOREIGN_IP, self.abroad.port),
            "configured": (FOREIGN_IP, self.abroad_configured.port),
            "home": (DOMESTIC_IP, self.home.port),
        }
        modes = ["regular"] + [
            f"reverse:tcp://{ip}:{port}@{self.listeners[name]}"
            for name, (ip, port) in targets.items()
        ]
        self.gateway = GatewayProcess(
            workdir, config, [arg for mode in modes for arg in ("--mode", mode)]
        )

    def close(self) -> None:
        self.gateway.stop()
        for scp in (self.abroad, self.abroad_configured, self.home):
            scp.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, test_mmdb: Path, pki: Pki) -> Iterator[Site]:
    s = Site(tmp_path_factory.mktemp("dicom-site"), test_mmdb, pki, "block")
    yield s
    s.close()


@pytest.fixture(scope="module")
def redacting(
    tmp_path_factory: pytest.TempPathFactory, test_mmdb: Path, pki: Pki
) -> Iterator[Site]:
    s = Site(tmp_path_factory.mktemp("dicom-redact"), test_mmdb, pki, "redact")
    yield s
    s.close()


# -- DIMSE -------------------------------------------------------------------------------


@pytest.mark.parametrize("listener", ["abroad", "configured"])
def test_c_store_abroad_is_refused_with_a_failure_status(site: Site, listener: str) -> None:
    before = len(site.abroad.received) + len(site.abroad_configured.received)
    results = c_store("127.0.0.1", site.listeners[listener], _study())
    assert [r.status for r in results] == [REFUSED] * 4
    assert all(INCIDENT.search(r.comment) for r in results)
    assert len(site.abroad.received) + len(site.abroad_configured.received) == before
    incident = INCIDENT.search(results[0].comment).group(0)  # type: ignore[union-attr]
    row = site.gateway.audit_row(incident)
    assert row["protocol"] == "dicom" and row["format"] == "dicom"
    assert "PatientName" in row["locations"] and PATIENTS[0].family not in str(row)
    refused = site.gateway.metric("phi_gateway_decisions_total", protocol="dicom", action="block")
    assert refused >= 4


def test_one_association_refuses_some_and_forwards_the_rest(site: Site) -> None:
    clean = deidentified(CT)
    before = len(site.abroad.received)
    results = c_store("127.0.0.1", site.listeners["abroad"], [_study()[0], clean, _study(1)[0]])
    assert [r.status for r in results] == [REFUSED, 0x0000, REFUSED]
    arrived = site.abroad.received[before:]
    assert arrived == [bare(clean, ImplicitVRLittleEndian)]
    _no_phi(b"".join(arrived))


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
def test_home_arrives_byte_identical(site: Site, syntax: str) -> None:
    study = _study(2)
    before = len(site.home.received)
    results = c_store("127.0.0.1", site.listeners["home"], study, syntax=syntax, max_pdu=4096)
    assert [r.status for r in results] == [0] * 4
    assert site.home.received[before:] == [bare(ds, syntax) for ds in study]


def test_fragmented_data_sets_are_judged_whole(site: Site) -> None:
    """Small PDUs split each data set over many P-DATA-TF PDUs: still refused."""
    results = c_store(
        "127.0.0.1",
        site.listeners["abroad"],
        _study(3),
        syntax=ExplicitVRLittleEndian,
        max_pdu=1024,
    )
    assert [r.status for r in results] == [REFUSED] * 4


def test_a_stream_that_is_no_association_is_closed_abroad(site: Site) -> None:
    """Bytes that start like an A-ASSOCIATE-RQ and then are not: aborted, never forwarded."""
    before = len(site.abroad.received)
    pdu = struct.pack(">BBI", 1, 0, 200) + b"\x00\x01" + b"\x00" * 60
    with socket.create_connection(("127.0.0.1", site.listeners["abroad"]), timeout=5) as s:
        s.sendall(pdu + b"\x00" * 140 + b"\x09garbage that is no PDU")
        deadline, answer = time.monotonic() + 5, b""
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(4096)
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
    assert len(site.abroad.received) == before
    assert answer in (b"", struct.pack(">BBIBBBB", 7, 0, 4, 0, 0, 2, 0))


def test_c_store_abroad_in_redact_mode_arrives_de_identified(redacting: Site) -> None:
    study = _study()
    results = c_store("127.0.0.1", redacting.listeners["abroad"], study, max_pdu=8192)
    assert [r.status for r in results] == [0] * 4
    arrived = redacting.abroad.received[-4:]
    _no_phi(b"".join(arrived))
    for original, data in zip(study, arrived, strict=True):
        written = read(data)
        assert written.PatientIdentityRemoved == "YES"
        assert written.SOPClassUID == original.SOPClassUID
        assert written.PixelData == original.PixelData
    studies = {read(data).StudyInstanceUID for data in arrived}
    assert len(studies) == 1 and studies != {study[0].StudyInstanceUID}
    assert redacting.gateway.metric("phi_gateway_redactions_total", format="dicom") >= 4


# -- HTTP: uploads and STOW-RS ------------------------------------------------------------


def test_an_upload_abroad_is_refused_and_at_home_arrives(
    client: httpx.Client, upstreams: Upstreams, gateway: GatewayProcess
) -> None:
    study = _study()
    for ds in study:
        data = part10(ds, preamble=b"II*\x00\x08\x00\x00\x00")  # DICOM-TIFF style
        answer = client.post(
            f"{upstreams.foreign.url}/studies/upload",
            content=data,
            headers={"content-type": "application/dicom"},
        )
        assert answer.status_code == 451
        body = orjson.loads(answer.content)
        (failed,) = body["00081198"]["Value"]
        assert failed["00081155"]["Value"] == [str(ds.SOPInstanceUID)]
        assert failed["00081197"]["Value"] == [0x0110]
        _no_phi(answer.content)
        home = client.post(f"{upstreams.domestic.url}/studies/upload", content=data)
        assert home.status_code == 200 and upstreams.domestic.received[-1].body == data
    assert "/studies/upload" not in upstreams.foreign.paths()
    row = gateway.audit_row(answer.headers["x-phi-gateway-incident"])
    assert row["format"] == "dicom" and "PatientBirthDate" in row["locations"]


def test_stow_rs_abroad_is_refused_and_de_identified_studies_pass(
    client: httpx.Client, upstreams: Upstreams
) -> None:
    boundary = "DICOMwebBoundary"

    def stow(datasets: list[Dataset]) -> bytes:
        parts = [
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part10(ds)
            for ds in datasets
        ]
        return b"\r\n".join(parts) + f"\r\n--{boundary}--\r\n".encode()

    headers = {"content-type": f'multipart/related; type="application/dicom"; boundary={boundary}'}
    study = _study()
    refused = client.post(
        f"{upstreams.foreign.url}/dicomweb/studies", content=stow(study), headers=headers
    )
    assert refused.status_code == 451
    assert refused.headers["content-type"] == "application/dicom+json"
    failed = orjson.loads(refused.content)["00081198"]["Value"]
    assert [f["00081155"]["Value"][0] for f in failed] == [str(d.SOPInstanceUID) for d in study]
    _no_phi(refused.content)
    assert "/dicomweb/studies" not in upstreams.foreign.paths()
    clean = stow([deidentified(CT), deidentified(MR)])
    passed = client.post(f"{upstreams.foreign.url}/dicomweb/clean", content=clean, headers=headers)
    assert passed.status_code == 200
    assert upstreams.foreign.first_at("/dicomweb/clean").body == clean


def test_stow_rs_abroad_in_redact_mode_arrives_de_identified(
    redacting: Site, upstreams: Upstreams
) -> None:
    boundary = b"RedactedStow"
    study = _study(1)
    body = (
        b"".join(
            b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n" + part10(ds) + b"\r\n"
            for ds in study
        )
        + b"--"
        + boundary
        + b"--\r\n"
    )
    headers = {"content-type": 'multipart/related; type="application/dicom"; boundary=RedactedStow'}
    with httpx.Client(proxy=redacting.gateway.proxy_url, timeout=10) as plain:
        answer = plain.post(f"{upstreams.foreign.url}/redacted/stow", content=body, headers=headers)
    assert answer.status_code == 200
    arrived = upstreams.foreign.first_at("/redacted/stow").body
    _no_phi(arrived)
    parts = arrived.split(b"\r\n--" + boundary)[:-1]
    assert len(parts) == 4
    for original, part in zip(study, parts, strict=True):
        written = read(part.split(b"\r\n\r\n", 1)[1])
        assert written.PatientIdentityRemoved == "YES"
        assert written.PixelData == original.PixelData


def test_an_upload_abroad_in_redact_mode_arrives_valid(
    redacting: Site, upstreams: Upstreams
) -> None:
    original = dataset(PATIENTS[1], frames=2)
    data = part10(original, ExplicitVRLittleEndian)
    with httpx.Client(proxy=redacting.gateway.proxy_url, timeout=10) as plain:
        answer = plain.post(
            f"{upstreams.foreign.url}/redacted/upload",
            content=data,
            headers={"content-type": "application/dicom"},
        )
    assert answer.status_code == 200
    arrived = upstreams.foreign.first_at("/redacted/upload").body
    _no_phi(arrived)
    written = read(arrived)
    assert written.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert written.PixelData == original.PixelData and written.PatientIdentityRemoved == "YES"


def _read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    head = b""
    while len(head) < 6:
        chunk = sock.recv(6 - len(head))
        if not chunk:
            raise ConnectionError("closed")
        head += chunk
    length = struct.unpack_from(">I", head, 2)[0]
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return head[0], body


def _status(body: bytes) -> int:
    (item,) = pdvs(body)
    return command_uint(read_command(item.data), 0x0900) or 0


def test_an_association_in_a_connect_tunnel_is_judged(gateway: GatewayProcess) -> None:
    """The explicit proxy: CONNECT to a receiver abroad, then DIMSE on a port the gateway
    knows only from the A-ASSOCIATE-RQ (written by hand; the receiver is pynetdicom)."""
    scp = StoreScp(FOREIGN_IP)
    clean = deidentified(CT)
    try:
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
            target = f"{FOREIGN_IP}:{scp.port}"
            sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            reply = b""
            while b"\r\n\r\n" not in reply:
                reply += sock.recv(4096)
            assert reply.startswith(b"HTTP/1.1 200")
            sock.sendall(associate(1, CT, ImplicitVRLittleEndian))
            assert _read_pdu(sock)[0] == 2  # the receiver's A-ASSOCIATE-AC
            phi = bare(dataset(PATIENTS[2]), ImplicitVRLittleEndian)
            sock.sendall(p_data(True, c_store_rq(1, CT, "2.25.1")) + p_data(False, phi))
            kind, body = _read_pdu(sock)
            assert kind == 4 and _status(body) == REFUSED
            sock.sendall(
                p_data(True, c_store_rq(2, CT, str(clean.SOPInstanceUID)))
                + p_data(False, bare(clean, ImplicitVRLittleEndian))
            )
            kind, body = _read_pdu(sock)
            assert kind == 4 and _status(body) == 0x0000  # the receiver's own answer
        deadline = time.monotonic() + 5
        while not scp.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert scp.received == [bare(clean, ImplicitVRLittleEndian)]
    finally:
        scp.close()
