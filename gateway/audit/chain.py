"""The hash chain and its keyed checkpoints: pure functions, no storage.

Every event of one gateway instance records ``prev_hash`` (the previous event's ``hash``) and
its own ``hash``: SHA-256 over a canonical serialisation of all its fields plus its place in the
chain. Changing, inserting or deleting a row breaks the chain at that row. A *checkpoint*
records (instance, seq, hash) with an HMAC keyed by the site secret: whoever rewrites the chain
from some point on, or drops its last rows, cannot produce a checkpoint that agrees.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, fields

import orjson

from gateway.audit.event import AuditEvent

GENESIS = "0" * 64
EVENT_FIELDS = tuple(f.name for f in fields(AuditEvent))
# Fields added after chains were first written: hashed only when set, so the events written
# before they existed keep their hashes.
LATER_FIELDS = frozenset({"run_seq", "subject"})


def canonical(record: Mapping[str, object]) -> bytes:
    """One byte string per record: sorted keys, no spaces, UTF-8 (the bytes that are hashed).
    Byte for byte what ``json.dumps(record, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False).encode()`` writes, which chains were first hashed with (a test
    holds the two together)."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def event_hash(row: Mapping[str, object], chain_seq: int, prev_hash: str) -> str:
    """Hash of an event (a row holding at least every AuditEvent field) at its chain place."""
    record = {name: row[name] for name in EVENT_FIELDS if name not in LATER_FIELDS or row[name]}
    record["chain_seq"] = chain_seq
    record["prev_hash"] = prev_hash
    return hashlib.sha256(canonical(record)).hexdigest()


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A separate key per use of the one site secret (checkpoints, payload fingerprints)."""
    return hmac.new(secret, f"phi-gateway/audit/{purpose}".encode(), hashlib.sha256).digest()


def key_id(key: bytes) -> str:
    """Names a key without revealing it, so verification can say "made with another key"."""
    return hmac.new(key, b"key-id", hashlib.sha256).hexdigest()[:16]


def fingerprint(key: bytes, payload: bytes) -> str:
    """Keyed fingerprint of a payload: matchable by whoever holds the message and the key."""
    return hmac.digest(key, payload, "sha256").hex()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    instance_id: str
    time: str
    chain_seq: int
    hash: str
    reason: str  # startup | interval | shutdown | expiry
    key_id: str
    mac: str
    # "<run>/<n>": the writing run had numbered n events (AuditEvent.run_seq), each written
    # or lost; empty in checkpoints written before tallies existed.
    tally: str = ""


def checkpoint_mac(
    key: bytes, instance_id: str, chain_seq: int, head: str, time: str, *, tally: str = ""
) -> str:
    sealed: dict[str, object] = {
        "instance_id": instance_id,
        "chain_seq": chain_seq,
        "hash": head,
        "time": time,
    }
    if tally:  # older checkpoints were sealed without it
        sealed["tally"] = tally
    return hmac.new(key, canonical(sealed), hashlib.sha256).hexdigest()


def make_checkpoint(
    key: bytes,
    *,
    instance_id: str,
    chain_seq: int,
    head: str,
    time: str,
    reason: str,
    tally: str = "",
) -> Checkpoint:
    mac = checkpoint_mac(key, instance_id, chain_seq, head, time, tally=tally)
    return Checkpoint(instance_id, time, chain_seq, head, reason, key_id(key), mac, tally)


def checkpoint_valid(key: bytes, checkpoint: Checkpoint) -> bool:
    expected = checkpoint_mac(
        key,
        checkpoint.instance_id,
        checkpoint.chain_seq,
        checkpoint.hash,
        checkpoint.time,
        tally=checkpoint.tally,
    )
    return hmac.compare_digest(expected, checkpoint.mac)
