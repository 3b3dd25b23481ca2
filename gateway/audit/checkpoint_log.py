"""The checkpoint log: every keyed checkpoint also appended to a file outside the database.

Checkpoints in the database's own table catch someone who deletes the last events, unless they
delete the checkpoint rows too. The log is a separate, append-only file (one JSON object per
line, fsync'd after each), by default next to the SQLite database; the admin can ship it
elsewhere as it grows (syslog, a log collector, a WORM bucket, ``chattr +a``). ``audit verify``
reads it and reports a chain that ends before a logged checkpoint.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from gateway.audit.backend import CHECKPOINT_COLUMNS
from gateway.audit.chain import Checkpoint, canonical
from gateway.errors import AuditError

_MODE = 0o640


def open_checkpoint_log(path: Path) -> Path:
    """Make sure the log can be appended to (creating it and its directory); raises AuditError.
    The gateway refuses to start without it rather than run with checkpoints nobody keeps."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _MODE)
        os.close(fd)
    except OSError as exc:
        raise AuditError(f"{path}: cannot open the checkpoint log: {exc.strerror}") from None
    return path


def append_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """One line, one write, fsync'd. Opened per checkpoint (every few minutes), so a log the
    admin rotated or moved away is simply started again. Raises OSError."""
    line = canonical(asdict(checkpoint)) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _MODE)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_checkpoint_logs(paths: Iterable[Path]) -> tuple[list[tuple[Checkpoint, str]], list[str]]:
    """Every checkpoint of the given logs with the log it came from, and the problems found
    (a line that is not a checkpoint). Raises OSError when a log cannot be read."""
    found: list[tuple[Checkpoint, str]] = []
    problems: list[str] = []
    for path in paths:
        with path.open("rb") as log:
            for number, line in enumerate(log, 1):
                if not line.strip():
                    continue
                checkpoint = _parse(line)
                if checkpoint is None:
                    problems.append(f"{path} line {number} is not a checkpoint")
                else:
                    found.append((checkpoint, str(path)))
    return found, problems


def _parse(line: bytes) -> Checkpoint | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    # Lines written before checkpoints had a tally lack it.
    if not isinstance(data, dict) or set(data) - {"tally"} != set(CHECKPOINT_COLUMNS) - {"tally"}:
        return None
    if not isinstance(data["chain_seq"], int) or not all(
        isinstance(data[c], str) for c in CHECKPOINT_COLUMNS if c != "chain_seq"
    ):
        return None
    return Checkpoint(**data)
