"""DICOM over TCP with pynetdicom, an independent implementation of the upper layer
protocol: a Storage SCP on a loopback address ("abroad" or "at home") that keeps every data
set as it arrived, and a Storage SCU sending C-STOREs and returning the statuses."""

from __future__ import annotations

import contextlib
import logging
import socket
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
