"""Build the audit store a config asks for: backend, chain name, keys."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

from gateway import metrics
from gateway.audit.backend import AuditBackend
from gateway.audit.chain import derive_key
from gateway.audit.checkpoint_log import open_checkpoint_log
from gateway.audit.journal import Journal, journal_path
from gateway.audit.spool import Spool
from gateway.audit.sqlite_backend import SqliteBackend
from gateway.audit.store import AuditStore, ChainSettings
from gateway.config import Audit


def instance_name(settings: Audit) -> str:
    return settings.instance_id or socket.gethostname().split(".")[0] or "gateway"


def audit_secret(settings: Audit) -> bytes | None:
    """The site secret from the environment, or None when it is not set."""
    value = os.environ.get(settings.secret_env, "")
    return value.encode() if value else None


def checkpoint_key(settings: Audit) -> bytes | None:
    secret = audit_secret(settings)
    return None if secret is None else derive_key(secret, "checkpoint")


def fingerprint_key(secret: bytes) -> bytes:
    return derive_key(secret, "fingerprint")


def location(settings: Audit) -> str:
    """What the store is, comparable across reloads (a path or a DSN)."""
    if settings.backend == "postgresql":
        return f"postgresql:{settings.postgresql_dsn}"
    return str(settings.database)


def _beside_database(settings: Audit, given: Path | None, suffix: str) -> Path:
    """A file of this instance's next to its database (``given`` when configured):
    <database>.<suffix>, or audit-<instance_id>.<suffix> with PostgreSQL (one per gateway)."""
    if given is not None:
        return given
    if settings.backend == "postgresql":
        return settings.database.parent / f"audit-{instance_name(settings)}.{suffix}"
    return settings.database.with_name(f"{settings.database.name}.{suffix}")


def worker_suffix(worker: int) -> str:
    """What names worker ``worker``'s chain and files beside the supervisor's (run --workers)."""
    return f"-w{worker}"


def for_worker(settings: Audit, worker: int) -> Audit:
    """The audit settings of proxy worker ``worker``: the same store, a chain of its own
    (``<instance>-w<K>``), and its own checkpoint log and spool beside the supervisor's
    (two processes never append to one file)."""
    suffix = worker_suffix(worker)
    return settings.model_copy(
        update={
            "instance_id": f"{instance_name(settings)}{suffix}",
            "checkpoint_log": _suffixed(checkpoint_log_path(settings), suffix),
            "spool": _suffixed(spool_path(settings), suffix),
        }
    )


def _suffixed(path: Path, suffix: str) -> Path:
    return path.with_name(f"{path.stem}{suffix}{path.suffix}")


def _worker_siblings(own: Path) -> list[Path]:
    """The files of the proxy workers beside this instance's ``own`` (run --workers)."""
    return sorted(own.parent.glob(f"{own.stem}-w[0-9]*{own.suffix}"))


def worker_checkpoint_logs(settings: Audit) -> list[Path]:
    """The checkpoint logs of the proxy workers beside this instance's (run --workers)."""
    return _worker_siblings(checkpoint_log_path(settings))


def pending_files(settings: Audit) -> tuple[list[Path], list[Path]]:
    """(spools, journals) of this instance and its workers: where decided events wait for
    the trail (a journal's events are usually in it already)."""
    spools = [spool_path(settings), *_worker_siblings(spool_path(settings))]
    journals: list[Path] = []
    for spool in spools:
        journal = Journal(journal_path(spool))
        journals += [journal.previous, journal.path]
    return spools, journals


def checkpoint_log_path(settings: Audit) -> Path:
    """Where this instance appends its checkpoints outside the database."""
    return _beside_database(settings, settings.checkpoint_log, "checkpoints")


def spool_path(settings: Audit) -> Path:
    """Where this instance spools events while its database fails."""
    return _beside_database(settings, settings.spool, "spool")


def open_backend(settings: Audit) -> AuditBackend:
    """Raises AuditError when the database cannot be opened (a PostgreSQL server that does
    not answer yet is not an error: the store spools until it does)."""
    if settings.backend == "postgresql":
        from gateway.audit.postgres_backend import PostgresBackend

        return PostgresBackend(settings.postgresql_dsn, settings.write_timeout_seconds)
    return SqliteBackend(settings.database)


def open_store(settings: Audit) -> AuditStore:
    """The store; without the site secret in the environment its key is random (this process)."""
    secret = audit_secret(settings)
    chain = ChainSettings(
        instance_id=instance_name(settings),
        secret=secret if secret is not None else secrets.token_bytes(32),
        secret_from_environment=secret is not None,
        checkpoint_seconds=settings.checkpoint_interval_seconds,
        retention_days=settings.retention_days,
        checkpoint_log=open_checkpoint_log(checkpoint_log_path(settings)),
    )
    spool = Spool(spool_path(settings), settings.spool_max_bytes)
    metrics.AUDIT_SPOOL_MAX_BYTES.set(settings.spool_max_bytes)
    return AuditStore(
        open_backend(settings),
        chain,
        max_held=settings.max_held_events,
        spool=spool,
        write_timeout=settings.write_timeout_seconds,
        forward_while_spooling=settings.forward_phi_while_spooling,
        journal=Journal(journal_path(spool.path)),
    )
