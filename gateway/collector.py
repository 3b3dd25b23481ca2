"""The cyclic garbage collector, paused while an X12 or JSON payload is read, a FHIR
resource walked or a payload redacted:
short, bounded work that makes many objects (never a whole inspection, which may wait
seconds for a document reader or OCR while the proxy goes on allocating).

A parsed payload is a tree (an X12 batch: tens of thousands of segments and element lists;
a FHIR Bundle: as many dicts) with no cycles to find, yet its fresh containers trigger
collection after collection, each walking all of them again (more in a proxy with a large
heap): for a 1 MB claims batch the collector took as long as the reading. Reference counting
still frees acyclic garbage at once; anything cyclic waits for the next collection.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """Only the caller that paused the collector resumes it, so concurrent callers (the
    proxy's thread pool) cannot leave it off."""
    pausing = gc.isenabled()
    if pausing:
        gc.disable()
    try:
        yield
    finally:
        if pausing:
            gc.enable()
