"""A document worker with extra jobs that misbehave on purpose (sleep past the deadline, die,
allocate past the memory limit), for the pool's tests. Run as ``python -m
tests.support.worker_jobs MEMORY_BYTES``, the way gateway.workers runs."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from gateway import workers


def _sleep(payload: bytes, args: dict[str, Any]) -> dict[str, Any]:
    time.sleep(float(args["seconds"]))
    return {"slept": True}


def _die(payload: bytes, args: dict[str, Any]) -> dict[str, Any]:
    os._exit(3)


def _allocate(payload: bytes, args: dict[str, Any]) -> dict[str, Any]:
    block = bytearray(int(args["bytes"]))
    return {"allocated": len(block)}


def _quote(payload: bytes, args: dict[str, Any]) -> dict[str, Any]:
    raise ValueError(payload.decode())  # an exception that quotes the document


if __name__ == "__main__":
    jobs: dict[str, workers.Job] = {
        "sleep": _sleep,
        "die": _die,
        "allocate": _allocate,
        "quote": _quote,
    }
    workers.serve(int(sys.argv[1]), jobs)
