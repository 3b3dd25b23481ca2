"""One PostgreSQL database for several gateways: each instance appends to its own chain under a
transaction-scoped advisory lock on the chain's name; rows are append-only by trigger except
for events a retention row has expired. ``audit verify`` checks every chain together."""

from __future__ import annotations

import logging
import os
import re
import socket

import psycopg

from gateway.audit.backend import (
    CHAIN_COLUMNS,
    INTEGER_COLUMNS,
    AuditBackend,
    Connection,
    Cursor,
)
from gateway.audit.chain import EVENT_FIELDS
from gateway.errors import AuditError


def _column(name: str, required: bool = True) -> str:
    kind = "BIGINT" if name in INTEGER_COLUMNS else "TEXT"
    return f"{name} {kind}" + (" NOT NULL DEFAULT ''" if required and kind == "TEXT" else "")


# Our table and column names only; no values.
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS audit_events (
    seq BIGSERIAL PRIMARY KEY,
    {", ".join(_column(c) for c in EVENT_FIELDS)},
    {", ".join(_column(c, required=False) for c in CHAIN_COLUMNS)}
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_events_incident ON audit_events(incident_id);
CREATE UNIQUE INDEX IF NOT EXISTS audit_events_chain ON audit_events(instance_id, chain_seq);
CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events(time);
{"".join(f"ALTER TABLE audit_events ADD COLUMN IF NOT EXISTS {_column(c)};" for c in EVENT_FIELDS)}
CREATE INDEX IF NOT EXISTS audit_events_subject ON audit_events(subject);
CREATE INDEX IF NOT EXISTS audit_events_fingerprint ON audit_events(payload_fingerprint);
CREATE INDEX IF NOT EXISTS audit_events_host ON audit_events(host, time);
CREATE INDEX IF NOT EXISTS audit_events_country ON audit_events(country, time);
CREATE INDEX IF NOT EXISTS audit_events_action ON audit_events(action, time);
CREATE INDEX IF NOT EXISTS audit_events_rule ON audit_events(rule, time);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    id BIGSERIAL PRIMARY KEY,
    instance_id TEXT NOT NULL, time TEXT NOT NULL, chain_seq BIGINT NOT NULL,
    hash TEXT NOT NULL, reason TEXT NOT NULL, key_id TEXT NOT NULL, mac TEXT NOT NULL
);
ALTER TABLE audit_checkpoints ADD COLUMN IF NOT EXISTS tally TEXT NOT NULL DEFAULT '';
CREATE TABLE IF NOT EXISTS audit_retention (
    id BIGSERIAL PRIMARY KEY,
    instance_id TEXT NOT NULL, time TEXT NOT NULL, through_seq BIGINT NOT NULL,
    through_hash TEXT NOT NULL, expired BIGINT NOT NULL, before TEXT NOT NULL
);
CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_events' AND OLD.chain_seq <= COALESCE(
        (SELECT MAX(through_seq) FROM audit_retention WHERE instance_id = OLD.instance_id), 0)
    THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit events are append-only';
END $$;
CREATE OR REPLACE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE OR REPLACE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE
    ON audit_checkpoints FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE OR REPLACE TRIGGER audit_retention_append_only BEFORE UPDATE OR DELETE
    ON audit_retention FOR EACH ROW EXECUTE FUNCTION audit_append_only();
"""  # noqa: S608
# Several gateways may create the schema at once: serialise that too.
_SCHEMA_LOCK = 0x5048_4947  # "PHIG"
log = logging.getLogger(__name__)


def _redacted(dsn: str) -> str:
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", dsn)


class PostgresBackend(AuditBackend):
    errors = (psycopg.Error,)

    def __init__(self, dsn: str, connect_timeout: float = 10.0) -> None:
        """A database that does not answer yet is not fatal: the schema is made at the first
        connection, and the store spools meanwhile. A connection string libpq cannot read is
        (AuditError)."""
        self.dsn = dsn
        self.location = f"postgresql:{dsn}"
        self.connect_timeout = max(1, round(connect_timeout))
        self._schema_ready = False
        try:
            psycopg.conninfo.conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise AuditError(f"postgresql {_redacted(dsn)}: {exc}") from None
        try:
            self.connect().close()
        except psycopg.OperationalError as exc:
            # A warning: mitmproxy ends a start-up that logs an error (the store spools).
            log.warning("audit database %s not reachable yet: %s", self.location, exc)
        except psycopg.Error as exc:
            raise AuditError(
                f"postgresql {_redacted(dsn)}: cannot open audit database: {exc}"
            ) from None

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=self.connect_timeout)
        if not self._schema_ready:
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                    conn.execute(_SCHEMA)
            except BaseException:
                conn.close()
                raise
            self._schema_ready = True
        return conn

    def interrupt(self, conn: Connection) -> None:
        # A stopped server still has its socket acknowledged by the kernel: only shutting the
        # socket down ends a read that waits for its answer.
        if isinstance(conn, psycopg.Connection):
            try:
                fd = conn.pgconn.socket
                with socket.socket(fileno=os.dup(fd)) as sock:
                    sock.shutdown(socket.SHUT_RDWR)
            except (OSError, psycopg.Error):
                pass

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def begin_chain(self, cur: Cursor, instance_id: str) -> None:
        cur.execute("BEGIN")
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (instance_id,))
