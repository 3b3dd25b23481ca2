"""Containers: what wraps payloads without being a format of its own — Content-Encoding
(``encoding.py``), archives and compressed files, multipart bodies and forms, base64, UTF-16/32
text. Each hands every member back to the registry through the inspector's ``scan``, under
one ``Budget``; what cannot be unwrapped raises ContainerError, which fails closed abroad."""

from __future__ import annotations

from gateway.containers.archives import is_archive, unpack_archive
from gateway.containers.budget import Budget, Combined, Scan
from gateway.containers.encoded import looks_base64, unpack_base64
from gateway.containers.multipart import is_form, is_multipart, unpack_form, unpack_multipart
from gateway.model import Inspection

__all__ = ["Budget", "Combined", "Scan", "carries_encoded_document", "starts_container", "unwrap"]


def starts_container(head: bytes) -> bool:
    """Do these first bytes start a container (archive, multipart body, base64 of a binary
    document)? A cheap test on the head alone: the proxy inspects such bodies off its loop."""
    return is_archive(head) or head.startswith(b"--") or head[:4] in _BASE64_BINARY


# base64 of "%PDF", of a zip and of a gzip stream: binary documents sent as text.
_BASE64_BINARY = frozenset({b"JVBE", b"UEsD", b"H4sI"})
# ... and anywhere in a body (a FHIR Binary, a SOAP attachment): PDF, zip, gzip, PNG, JPEG.
_BASE64_DOCUMENTS = (b"JVBERi0", b"UEsDB", b"H4sIA", b"iVBORw0KGgo", b"/9j/")


def carries_encoded_document(body: bytes) -> bool:
    """Does the body hold base64 of a document a reader process reads (a PDF in a FHIR
    Binary, an image in a SOAP call)? A substring search, made for every body."""
    return any(start in body for start in _BASE64_DOCUMENTS)


def unwrap(data: bytes, depth: int, scan: Scan, budget: Budget) -> Inspection | None:
    """The inspection of a container and its members, or None when ``data`` is no container
    (or base64 that decodes to nothing recognisable)."""
    if is_archive(data):
        return unpack_archive(data, depth, scan, budget)
    if is_multipart(data):
        return unpack_multipart(data, depth, scan, budget)
    if is_form(data):
        return unpack_form(data, depth, scan, budget)
    if looks_base64(data):
        return unpack_base64(data, depth, scan, budget)
    return None
