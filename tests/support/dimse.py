"""DICOM over TCP with pynetdicom, an independent implementation of the upper layer
protocol: a Storage SCP on a loopback address ("abroad" or "at home") that keeps every data
set as it arrived, and a Storage SCU sending C-STOREs and returning the statuses."""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ImplicitVRLittleEndian
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt

from tests.support.gateway_process import free_port

logging.getLogger("pynetdicom").setLevel(logging.WARNING)


class StoreScp:
    """A Storage SCP keeping the encoded data sets it received (the bytes on the wire)."""

    def __init__(self, ip: str, title: str = "ARCHIVE") -> None:
        self.port = free_port()
        self.received: list[bytes] = []
        self.lock = threading.Lock()
        ae = AE(ae_title=title)
        for context in StoragePresentationContexts:
            assert context.abstract_syntax is not None
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context("1.2.840.10008.1.1")  # Verification
        self.server = ae.start_server(
            (ip, self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )

    def _store(self, event: evt.Event) -> int:
        with self.lock:
            self.received.append(event.encoded_dataset(include_meta=False))
        return 0x0000

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()


@dataclass(frozen=True)
class Stored:
    status: int
    comment: str


def c_store(
    host: str,
    port: int,
    datasets: Sequence[Dataset],
    syntax: str = ImplicitVRLittleEndian,
    max_pdu: int = 16382,
) -> list[Stored]:
    """One association, a C-STORE per data set, released: each response's status."""
    ae = AE(ae_title="HOSPITAL")
    ae.maximum_pdu_size = max_pdu
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(sop_class, [syntax])
    assoc = ae.associate(host, port, ae_title="ARCHIVE", max_pdu=max_pdu)
    if not assoc.is_established:
        raise ConnectionError("association not established")
    results = []
    for original in datasets:
        ds = Dataset(original)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = UID(syntax)
        status = assoc.send_c_store(ds)
        if "Status" not in status:
            results.append(Stored(-1, "no response"))
            continue
        results.append(Stored(int(status.Status), str(status.get("ErrorComment", ""))))
    if assoc.is_established:
        assoc.release()
    return results


@dataclass
class Tap:
    """A TCP relay on loopback recording each side's reads: what a sender and a receiver
    really exchange, for feeding the session without a proxy."""

    target: tuple[str, int]
    port: int = 0
    sent: list[bytes] = field(default_factory=list)  # client -> server reads
    replied: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection(self.target)
        threads = [
            threading.Thread(target=self._pump, args=(client, server, self.sent)),
            threading.Thread(target=self._pump, args=(server, client, self.replied)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        client.close()
        server.close()
        self.listener.close()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, into: list[bytes]) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            into.append(data)
            sink.sendall(data)


# -- PDUs written by hand (the benchmark's sender and receiver; no pynetdicom in the loop) ---


def _item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(body)) + body


def _uid(value: str) -> bytes:
    return value.encode()


def associate(kind: int, sop_class: str, syntax: str, max_pdu: int = 65536) -> bytes:
    """An A-ASSOCIATE-RQ (kind 1) proposing, or -AC (kind 2) accepting, context 1."""
    fixed = b"\x00\x01\x00\x00" + b"ARCHIVE".ljust(16) + b"HOSPITAL".ljust(16) + bytes(32)
    app = _item(0x10, _uid("1.2.840.10008.3.1.1.1"))
    if kind == 1:
        context = _item(
            0x20, b"\x01\x00\x00\x00" + _item(0x30, _uid(sop_class)) + _item(0x40, _uid(syntax))
        )
    else:
        context = _item(0x21, b"\x01\x00\x00\x00" + _item(0x40, _uid(syntax)))
    user = _item(0x50, _item(0x51, struct.pack(">I", max_pdu)))
    body = fixed + app + context + user
    return struct.pack(">BBI", kind, 0, len(body)) + body


def _element(number: int, value: bytes) -> bytes:
    if len(value) & 1:
        value += b"\x00"
    return struct.pack("<HHI", 0, number, len(value)) + value


def _command(elements: bytes) -> bytes:
    return _element(0, struct.pack("<I", len(elements))) + elements


def c_store_rq(message_id: int, sop_class: str, instance: str) -> bytes:
    return _command(
        _element(0x0002, _uid(sop_class))
        + _element(0x0100, struct.pack("<H", 0x0001))
        + _element(0x0110, struct.pack("<H", message_id))
        + _element(0x0700, struct.pack("<H", 0))
        + _element(0x0800, struct.pack("<H", 0x0000))
        + _element(0x1000, _uid(instance))
    )


def c_store_rsp(message_id: int, sop_class: str, status: int = 0) -> bytes:
    return _command(
        _element(0x0002, _uid(sop_class))
        + _element(0x0100, struct.pack("<H", 0x8001))
        + _element(0x0120, struct.pack("<H", message_id))
        + _element(0x0800, struct.pack("<H", 0x0101))
        + _element(0x0900, struct.pack("<H", status))
    )


def p_data(command: bool, data: bytes, context: int = 1) -> bytes:
    pdv = struct.pack(">IBB", len(data) + 2, context, 3 if command else 2) + data
    return struct.pack(">BBI", 4, 0, len(pdv)) + pdv
