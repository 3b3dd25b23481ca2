"""PHI egress gateway."""

# First: decides whether the compiled hot-path modules may be loaded (see native.py).
from gateway import native as _native  # noqa: F401
