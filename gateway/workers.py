"""Document readers that run outside the proxy's process: PDFium (and later OCR) parse hostile
documents in native code, so a crash, a hang or a memory blow-up must cost one worker, never
the gateway. Each worker is ``python -m gateway.workers``: it limits its own address space,
then answers jobs read from stdin, one at a time, on stdout.

A job is a JSON header and the payload bytes, each length-prefixed; the answer is JSON only
(bytes base64-encoded), never pickle: a worker that a document subverted must not be able to
run code in the gateway by what it answers. A job that outlives its deadline has its worker
killed (and a fresh one started for the next job); so has a worker that dies. Both come back
as a ``PayloadError`` (an unreadable payload: blocked abroad), with no text of the worker's.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import queue
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from gateway import metrics
from gateway.errors import PayloadError

log = logging.getLogger(__name__)
_LENGTH = struct.Struct(">I")
MAX_ANSWER_BYTES = 256 * 1024 * 1024


Job = Callable[[bytes, dict[str, Any]], Any]


class WorkerError(PayloadError):
    """A document reader failed, timed out or is not available."""


def _jobs() -> dict[str, Job]:
    """The jobs a worker runs, imported in the worker only (the gateway never loads them)."""
    from gateway.formats.media import image_metadata
    from gateway.formats.ocr import ocr_image, ocr_pdf_pages
    from gateway.formats.pdf.extract import extract_pdf

    return {
        "pdf": extract_pdf,
        "image": image_metadata,
        "ocr-image": ocr_image,
        "ocr-pdf": ocr_pdf_pages,
    }


# -- the worker side --------------------------------------------------------------------------
def _read_exact(stream: Any, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return bytes(data)


def serve(memory_bytes: int, extra: dict[str, Job] | None = None) -> None:
    """Answer jobs until stdin closes (``extra``: more jobs, for tests)."""
    if memory_bytes > 0:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    jobs = {**_jobs(), **(extra or {})}
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            header = orjson.loads(_read_exact(stdin, _LENGTH.unpack(_read_exact(stdin, 4))[0]))
            payload = _read_exact(stdin, _LENGTH.unpack(_read_exact(stdin, 4))[0])
        except EOFError:
            return
        answer: dict[str, object]
        try:
            answer = {"ok": jobs[header["job"]](payload, header["args"])}
        except MemoryError:
            answer = {"error": "document needs more memory than max_document_memory_bytes"}
        except PayloadError as exc:  # a fixed sentence, never the document's content
            answer = {"error": exc.reason, "limit": exc.limit}
        except Exception as exc:  # the type only: the text may quote the document
            answer = {"error": f"document reader failed ({type(exc).__name__})"}
        out = orjson.dumps(answer, default=_encode)
        stdout.write(_LENGTH.pack(len(out)) + out)
        stdout.flush()


def _encode(value: object) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError


# -- the gateway side -------------------------------------------------------------------------
WORKER_MODULE = "gateway.workers"


class _Worker:
    def __init__(self, memory_bytes: int, module: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, str(memory_bytes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )

    def ask(self, header: dict[str, Any], payload: bytes, deadline: float) -> dict[str, Any]:
        self.send(header, payload)
        return self.receive(deadline)

    def send(self, header: dict[str, Any], payload: bytes) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        head = orjson.dumps(header)
        stdin.write(_LENGTH.pack(len(head)) + head + _LENGTH.pack(len(payload)) + payload)
        stdin.flush()

    def receive(self, deadline: float) -> dict[str, Any]:
        stdout = self.process.stdout
        assert stdout is not None
        size = _LENGTH.unpack(self._read(stdout.fileno(), 4, deadline))[0]
        if size > MAX_ANSWER_BYTES:
            raise WorkerError("document reader answered too much")
        answer = orjson.loads(self._read(stdout.fileno(), size, deadline))
        if not isinstance(answer, dict):
            raise WorkerError("document reader answered nonsense")
        return answer

    @staticmethod
    def _read(fd: int, size: int, deadline: float) -> bytes:
        chunks: list[bytes] = []
        left = size
        while left:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(Exception):
            self.process.wait(timeout=5)
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.close()


class DocumentWorkers:
    """A bounded pool of worker processes. ``run`` waits (within the job's deadline) for an
    idle worker: concurrent documents beyond the pool's size queue rather than fork more."""

    def __init__(self, size: int, memory_bytes: int, module: str = WORKER_MODULE) -> None:
        self.size = size
        self.memory_bytes = memory_bytes
        self.module = module
        self._idle: queue.Queue[_Worker | None] = queue.Queue()
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._closed = False
        for _ in range(size):
            self._idle.put(None)  # a slot; the worker starts when first needed

    def start(self) -> None:
        """Start every worker now (so the first documents do not wait for an import)."""
        slots = [self._idle.get() for _ in range(self.size)]
        for slot in slots:
            self._idle.put(slot if slot is not None and slot.alive() else self._spawn())

    def _spawn(self) -> _Worker:
        worker = _Worker(self.memory_bytes, self.module)
        with self._lock:
            self._workers.append(worker)
        return worker

    def run(self, job: str, payload: bytes, args: dict[str, Any], seconds: float) -> Any:
        """The job's answer; WorkerError when it failed, timed out or no worker was free."""
        return self.run_split(job, payload, args, seconds, 1)[0]

    def run_split(
        self, job: str, payload: bytes, args: dict[str, Any], seconds: float, most: int
    ) -> list[Any]:
        """A job shared among as many workers as are idle now, at most ``most`` (at least
        one, waited for): worker k of n reads its share, ``args["shard"] = [k, n]`` (the
        pages k, k + n, ... of a long PDF). The n answers in order. Under load no worker is
        idle beside the first, and the job runs whole, as ``run``."""
        if self._closed:
            raise WorkerError("document readers are shut down")
        deadline = time.monotonic() + max(seconds, 0.0)
        try:
            slots = [self._idle.get(timeout=max(seconds, 0.001))]
        except queue.Empty:
            metrics.DOCUMENT_WORKERS.labels("busy").inc()
            raise WorkerError(
                "no document reader was free within max_inspection_seconds",
                "max_inspection_seconds",
            ) from None
        while len(slots) < most:
            try:
                slots.append(self._idle.get_nowait())
            except queue.Empty:
                break
        workers = [s if s is not None and s.alive() else self._spawn() for s in slots]
        shares = len(workers)
        answers: list[Any] = []
        failure: WorkerError | None = None
        sent: list[_Worker] = []
        for number, worker in enumerate(workers):
            try:
                worker.send({"job": job, "args": {**args, "shard": [number, shares]}}, payload)
            except (OSError, ValueError):
                self._retire(worker)
                metrics.DOCUMENT_WORKERS.labels("crashed").inc()
                failure = WorkerError("document reader stopped on this document")
                break
            sent.append(worker)
        for worker in sent:  # every job sent is answered (or its worker retired)
            try:
                answers.append(self._answer(worker, deadline))
            except WorkerError as exc:
                failure = failure or exc
        for worker in workers:
            if worker.alive():  # a retired worker's slot went back with _retire
                self._idle.put(worker)
        if failure is not None:
            raise failure
        return answers

    def _answer(self, worker: _Worker, deadline: float) -> Any:
        try:
            answer = worker.receive(deadline)
        except TimeoutError:
            self._retire(worker)
            metrics.DOCUMENT_WORKERS.labels("timeout").inc()
            raise WorkerError(
                "document reading took longer than max_inspection_seconds",
                "max_inspection_seconds",
            ) from None
        except (EOFError, OSError, ValueError, struct.error):
            self._retire(worker)
            metrics.DOCUMENT_WORKERS.labels("crashed").inc()
            raise WorkerError("document reader stopped on this document") from None
        if "error" in answer:
            metrics.DOCUMENT_WORKERS.labels("refused").inc()
            raise WorkerError(str(answer["error"])[:200], str(answer.get("limit", ""))[:64])
        metrics.DOCUMENT_WORKERS.labels("read").inc()
        return answer.get("ok")

    def _retire(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)
        self._idle.put(None)  # the slot, for a fresh worker

    def close(self) -> None:
        self._closed = True
        with self._lock:
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.kill()


def run_in_process(job: str, payload: bytes, args: dict[str, Any]) -> Any:
    """A job run here, for tools and tests without a pool (never the proxy: a reader's crash
    would be the gateway's). Answers as ``DocumentWorkers.run`` does."""
    try:
        return _jobs()[job](payload, args)
    except MemoryError:
        raise WorkerError("document needs more memory than it may have") from None
    except Exception as exc:
        raise WorkerError(f"document reader failed ({type(exc).__name__})") from None


def decode_bytes(value: object) -> bytes:
    """Bytes a worker sent (base64 in its JSON answer)."""
    if not isinstance(value, str):
        raise WorkerError("document reader answered nonsense")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise WorkerError("document reader answered nonsense") from None


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
