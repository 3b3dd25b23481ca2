"""Inspect stage: undo transport encodings, sniff the format, find identifiers."""

from gateway.inspect.inspector import Inspector

__all__ = ["Inspector"]
